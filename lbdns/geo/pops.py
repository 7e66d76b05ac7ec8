"""PoP (data centre) identity and the PoP catalogue (pure).

A PoP is what answers a query: its code keys ``pop_pools``, its region feeds ``region_pools`` and
``cf.load_balancer.region`` (Cloudflare docs: Load Balancing › Geo › Region steering; Load
Balancing › Supported fields and operators), its country and coordinates are the "PoP location" of
``location_strategy.mode: pop`` (Cloudflare API docs: Load Balancer Details ›
``location_strategy``). The catalogue maps code → ``{region, country, latitude, longitude}``: the
shipped ``geo/pops.csv`` (read by ``lbdns.geo.data``), or the file of the server setting
``pops_file``.

This module never reads files: :meth:`PopCatalogue.from_rows` takes parsed CSV rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from lbdns.geo.regions import REGION_CODES, RegionMap

__all__ = ["Pop", "PopCatalogue", "make_pop"]


@dataclass(frozen=True, slots=True)
class Pop:
    """One PoP.

    ``code``: PoP code, normally the upper-case IATA code (``"IAD"``). ``region``: one of the 13
    region codes. ``country``: ISO-3166-1 alpha-2, upper case. ``latitude`` / ``longitude``:
    decimal degrees (WGS84), −90…90 / −180…180. ``city``: display name or None.
    ``subdivision``: ISO-3166-2 suffix for US/CA PoPs (``"VA"``) or None.

    Raises ValueError on construction if a field is out of range (empty code, unknown region,
    country not two upper-case letters, coordinates out of range or not finite).
    """

    code: str
    region: str
    country: str
    latitude: float
    longitude: float
    city: str | None = None
    subdivision: str | None = None

    def __post_init__(self) -> None:
        if not self.code or self.code != self.code.strip():
            raise ValueError(f"PoP code {self.code!r}: must be a non-empty code without spaces")
        if self.region not in REGION_CODES:
            allowed = ", ".join(sorted(REGION_CODES))
            raise ValueError(f"PoP {self.code}: unknown region {self.region!r} (allowed: {allowed})")
        c = self.country
        if not (len(c) == 2 and c.isascii() and c.isalpha() and c.isupper()):
            raise ValueError(f"PoP {self.code}: country {c!r} is not an upper-case ISO-3166-1 alpha-2 code")
        if not (math.isfinite(self.latitude) and -90.0 <= self.latitude <= 90.0):
            raise ValueError(f"PoP {self.code}: latitude {self.latitude!r} out of range (-90..90 degrees)")
        if not (math.isfinite(self.longitude) and -180.0 <= self.longitude <= 180.0):
            raise ValueError(
                f"PoP {self.code}: longitude {self.longitude!r} out of range (-180..180 degrees)"
            )


def make_pop(
    code: str,
    *,
    country: str,
    latitude: float,
    longitude: float,
    region: str | None = None,
    subdivision: str | None = None,
    city: str | None = None,
    regions: RegionMap | None = None,
) -> Pop:
    """Build a :class:`Pop`, deriving ``region`` from the country (and US/CA subdivision) when it
    is not given, through the proposed country / subdivision → region mapping of
    ``geo/tables/regions.csv`` (modelled on Cloudflare docs: Load Balancing › Regions API).

    Takes coordinates in decimal degrees and the region table ``regions`` (needed only when
    ``region`` is not given; the caller builds it, e.g. ``lbdns.geo.data.default_regions()``).
    Returns the PoP. Raises ValueError if no region is given and none can be derived (no table, or
    the country is not in it), or if a field is invalid (see :class:`Pop`).
    """
    if region is None:
        if regions is None:
            raise ValueError(f"PoP {code}: no region given and no region table to derive it from")
        region = regions.region_of(country, subdivision)
        if region is None:
            raise ValueError(f"PoP {code}: no region given and none known for country {country!r}")
    return Pop(
        code=code,
        region=region,
        country=country,
        latitude=float(latitude),
        longitude=float(longitude),
        city=city or None,
        subdivision=subdivision or None,
    )


class PopCatalogue(Mapping[str, Pop]):
    """Immutable mapping PoP code → :class:`Pop` (a ``collections.abc.Mapping``).

    Lookups are exact (codes are stored as given, normally upper case); :meth:`get` returns None
    for an unknown code.
    """

    __slots__ = ("_pops",)

    def __init__(self, pops: Iterable[Pop] = ()) -> None:
        """Take the PoPs; raises ValueError if two share a code."""
        table: dict[str, Pop] = {}
        for pop in pops:
            if pop.code in table:
                raise ValueError(f"duplicate PoP code {pop.code!r}")
            table[pop.code] = pop
        self._pops = table

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, str]], regions: RegionMap) -> PopCatalogue:
        """Build a catalogue from CSV rows in the ``geo/pops.csv`` layout.

        Columns: ``iata``, ``city``, ``country``, ``subdivision`` (optional), ``region`` (optional:
        derived with the region table ``regions`` when empty), ``latitude``, ``longitude``
        (decimal degrees). Returns the catalogue. Raises ValueError naming the PoP on a bad row.
        """
        pops: list[Pop] = []
        for row in rows:
            code = (row.get("iata") or row.get("code") or "").strip()
            try:
                pops.append(
                    make_pop(
                        code,
                        country=(row.get("country") or "").strip(),
                        latitude=float(row.get("latitude") or "nan"),
                        longitude=float(row.get("longitude") or "nan"),
                        region=(row.get("region") or "").strip() or None,
                        subdivision=(row.get("subdivision") or "").strip() or None,
                        city=(row.get("city") or "").strip() or None,
                        regions=regions,
                    )
                )
            except ValueError as exc:
                raise ValueError(f"PoP row {code or '?'}: {exc}") from exc
        return cls(pops)

    def with_pops(self, pops: Iterable[Pop]) -> PopCatalogue:
        """Return a new catalogue with ``pops`` added, replacing entries with the same code (e.g.
        the server setting ``pops`` layered over the shipped catalogue). ``self`` is unchanged."""
        merged = dict(self._pops)
        for pop in pops:
            merged[pop.code] = pop
        return PopCatalogue(merged.values())

    def get(self, code: str, default: Pop | None = None) -> Pop | None:  # type: ignore[override]
        """Return the PoP with this code, or ``default`` (None) if there is none."""
        return self._pops.get(code, default)

    def __getitem__(self, code: str) -> Pop:
        return self._pops[code]

    def __contains__(self, code: object) -> bool:
        return code in self._pops

    def __iter__(self) -> Iterator[str]:
        return iter(self._pops)

    def __len__(self) -> int:
        return len(self._pops)

    def __repr__(self) -> str:
        return f"PopCatalogue({len(self._pops)} PoPs)"
