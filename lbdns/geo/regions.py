"""Load Balancing regions and the country / subdivision → region mapping (pure).

Cloudflare docs: Load Balancing › Regions API (13 regions; countries map to regions, and "only
the U.S. and Canada are provided with these subdivisions", ISO-3166-2 codes) and Load Balancing ›
Geo › Country steering (``country_pools`` keys are ISO-3166-1 alpha-2 codes; lbdns rejects
subdivision keys).

This module never reads files and holds no table behind a global: :class:`RegionMap` is built from
already parsed CSV rows (``lbdns.geo.data`` reads ``geo/tables/regions.csv`` and
``geo/tables/countries.csv``) by the edge that starts the server, explains an answer or checks a
configuration, and is passed to whatever needs it.

The shipped mapping is a PROPOSED one (Cloudflare publishes its own only through the
authenticated Regions API); see ``geo/README.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

__all__ = [
    "REGION_CODES",
    "REGION_NAMES",
    "SUBDIVIDED_COUNTRIES",
    "RegionMap",
    "is_region",
]

#: Code → name of the 13 Load Balancing regions (Cloudflare docs: Load Balancing › Regions API).
REGION_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "EEU": "Eastern Europe",
        "ENAM": "Eastern North America",
        "ME": "Middle East",
        "NAF": "Northern Africa",
        "NEAS": "Northeast Asia",
        "NSAM": "Northern South America",
        "OC": "Oceania",
        "SAF": "Southern Africa",
        "SAS": "Southern Asia",
        "SEAS": "Southeast Asia",
        "SSAM": "Southern South America",
        "WEU": "Western Europe",
        "WNAM": "Western North America",
    }
)

#: The 13 Load Balancing region codes (Cloudflare docs: Load Balancing › Regions API).
#: ``ALL_REGIONS`` (accepted by monitors' ``check_regions``) is deliberately not a region.
REGION_CODES: frozenset[str] = frozenset(REGION_NAMES)

#: Countries whose rows may be refined by an ISO-3166-2 subdivision (Cloudflare docs:
#: Load Balancing › Regions API).
SUBDIVIDED_COUNTRIES: frozenset[str] = frozenset({"US", "CA"})


def is_region(code: str) -> bool:
    """Tell whether ``code`` is one of the 13 region codes (Cloudflare docs: Load Balancing ›
    Regions API).

    Takes the code exactly as written (region codes are upper case; ``"enam"`` is not a region).
    Returns True or False; never raises.
    """
    return code in REGION_CODES


def _is_alpha2(code: str) -> bool:
    return len(code) == 2 and code.isascii() and code.isalpha() and code.isupper()


class RegionMap:
    """Country and US/CA subdivision → region code, plus the set of valid country codes.

    Built from parsed rows by :meth:`from_rows`; immutable afterwards and cheap to query on the
    hot path (two dict probes at most). Cloudflare docs: Load Balancing › Regions API.
    """

    __slots__ = ("_countries", "_known", "_subdivisions")

    def __init__(
        self,
        countries: Mapping[str, str],
        subdivisions: Mapping[tuple[str, str], str],
        known_countries: Iterable[str] | None = None,
    ) -> None:
        """Take ``countries`` (alpha-2 → region), ``subdivisions`` ((alpha-2, ISO-3166-2 suffix)
        → region) and the valid country codes (default: the keys of ``countries``).

        Raises ValueError if a region is not one of :data:`REGION_CODES`, a country code is not
        two upper-case ASCII letters, or a subdivided country has no country-level row.
        """
        for key, region in (*countries.items(), *subdivisions.items()):
            if region not in REGION_CODES:
                raise ValueError(f"{key!r}: unknown region {region!r} (allowed: {sorted(REGION_CODES)})")
        for code in countries:
            if not _is_alpha2(code):
                raise ValueError(f"{code!r}: not an ISO-3166-1 alpha-2 code (two upper-case letters)")
        for country, sub in subdivisions:
            if country not in countries:
                raise ValueError(f"subdivision {country}-{sub} has no country row {country!r}")
        known = frozenset(countries if known_countries is None else known_countries)
        for code in known:
            if not _is_alpha2(code):
                raise ValueError(f"{code!r}: not an ISO-3166-1 alpha-2 code (two upper-case letters)")
        missing = sorted(set(countries) - known)
        if missing:
            raise ValueError(f"mapped countries missing from the country list: {', '.join(missing)}")
        self._countries: dict[str, str] = dict(countries)
        self._subdivisions: dict[tuple[str, str], str] = dict(subdivisions)
        self._known: frozenset[str] = known

    @classmethod
    def from_rows(
        cls,
        region_rows: Iterable[Mapping[str, str]],
        country_rows: Iterable[Mapping[str, str]] | None = None,
    ) -> RegionMap:
        """Build a map from CSV rows.

        ``region_rows`` carry ``code`` (``"FR"`` for a country, ``"US-CA"`` for a US state or
        Canadian province) and ``region`` (``geo/tables/regions.csv`` layout). ``country_rows`` carry
        ``alpha2`` (``geo/tables/countries.csv`` layout); when omitted, the mapped countries are the valid
        ones. Returns the map. Raises ValueError on a malformed or duplicate code, an unknown
        region, or a subdivision outside the US and Canada.
        """
        countries: dict[str, str] = {}
        subdivisions: dict[tuple[str, str], str] = {}
        for row in region_rows:
            code = (row.get("code") or "").strip()
            region = (row.get("region") or "").strip()
            country, sep, sub = code.partition("-")
            if sep:
                if country not in SUBDIVIDED_COUNTRIES or not sub or not sub.isalnum():
                    raise ValueError(f"{code!r}: subdivisions are only allowed for US and CA (e.g. US-CA)")
                if (country, sub) in subdivisions:
                    raise ValueError(f"{code!r}: duplicate row")
                subdivisions[(country, sub)] = region
            else:
                if code in countries:
                    raise ValueError(f"{code!r}: duplicate row")
                countries[code] = region
        known: list[str] | None = None
        if country_rows is not None:
            known = [(row.get("alpha2") or "").strip() for row in country_rows]
        return cls(countries, subdivisions, known)

    def region_of(self, country: str | None, subdivision: str | None = None) -> str | None:
        """Return the region code for a location, or None when the country is unknown.

        Takes an ISO-3166-1 alpha-2 ``country`` and, for the US and Canada, the ISO-3166-2
        ``subdivision`` either as the suffix (``"CA"``) or in full (``"US-CA"``). An unknown or
        absent subdivision falls back to the country's own row (the shipped ``US`` / ``CA`` rows
        give the region used when no subdivision is known). Lower-case input
        is accepted. Never raises.
        """
        if not country:
            return None
        countries = self._countries
        region = countries.get(country)
        if region is None:
            country = country.upper()
            region = countries.get(country)
            if region is None:
                return None
        if subdivision and country in SUBDIVIDED_COUNTRIES:
            exact = self._subdivisions.get((country, subdivision))
            if exact is not None:
                return exact
            head, sep, tail = subdivision.partition("-")
            sub = tail if sep and head.upper() == country else subdivision
            return self._subdivisions.get((country, sub.upper()), region)
        return region

    def is_country(self, code: str) -> bool:
        """Tell whether ``code`` is a valid ``country_pools`` key (Cloudflare docs: Load Balancing ›
        Geo › Country steering).

        Valid means an upper-case ISO-3166-1 alpha-2 code from the country list (the shipped list
        also accepts ``XK``, Kosovo, which GeoIP databases use). Subdivision keys such as
        ``"US-CA"`` and lower-case codes return False. Never raises.
        """
        return code in self._known

    @property
    def countries(self) -> frozenset[str]:
        """The valid country codes (upper-case ISO-3166-1 alpha-2)."""
        return self._known

    @property
    def mapped_countries(self) -> Mapping[str, str]:
        """Read-only view of country → region (country-level rows only)."""
        return MappingProxyType(self._countries)

    @property
    def mapped_subdivisions(self) -> Mapping[tuple[str, str], str]:
        """Read-only view of (country, subdivision suffix) → region."""
        return MappingProxyType(self._subdivisions)

    def __repr__(self) -> str:
        return (
            f"RegionMap({len(self._countries)} countries, {len(self._subdivisions)} subdivisions, "
            f"{len(self._known)} valid country codes)"
        )
