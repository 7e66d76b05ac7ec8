"""Regions, the country / subdivision → region mapping and the country list (SPEC.md R-LOC-10..12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbdns.geo import data
from lbdns.geo.regions import REGION_CODES, REGION_NAMES, RegionMap, is_region

SHIPPED = data.default_regions()

APPENDIX_A = {
    "EEU", "ENAM", "ME", "NAF", "NEAS", "NSAM", "OC", "SAF", "SAS", "SEAS", "SSAM", "WEU", "WNAM",
}  # fmt: skip


def test_thirteen_region_codes_match_appendix_a_and_shipped_file() -> None:
    assert REGION_CODES == APPENDIX_A
    assert len(REGION_CODES) == 13
    assert data.load_region_names() == dict(REGION_NAMES)


@pytest.mark.parametrize(
    ("country", "subdivision", "region"),
    [
        # countries
        ("FR", None, "WEU"),
        ("DE", None, "WEU"),
        ("GB", None, "WEU"),
        ("PL", None, "EEU"),
        ("RU", None, "EEU"),
        ("JP", None, "NEAS"),
        ("CN", None, "NEAS"),
        ("IN", None, "SAS"),
        ("SG", None, "SEAS"),
        ("AU", None, "OC"),
        ("NZ", None, "OC"),
        ("BR", None, "SSAM"),
        ("AR", None, "SSAM"),
        ("CO", None, "NSAM"),
        ("MX", None, "NSAM"),
        ("AE", None, "ME"),
        ("EG", None, "NAF"),
        ("ZA", None, "SAF"),
        ("XK", None, "EEU"),
        # US states (Census West → WNAM, else ENAM)
        ("US", "CA", "WNAM"),
        ("US", "WA", "WNAM"),
        ("US", "CO", "WNAM"),
        ("US", "HI", "WNAM"),
        ("US", "AK", "WNAM"),
        ("US", "NY", "ENAM"),
        ("US", "VA", "ENAM"),
        ("US", "TX", "ENAM"),
        ("US", "DC", "ENAM"),
        # Canadian provinces
        ("CA", "BC", "WNAM"),
        ("CA", "AB", "WNAM"),
        ("CA", "ON", "ENAM"),
        ("CA", "QC", "ENAM"),
        # no / unknown subdivision → the country row
        ("US", None, "ENAM"),
        ("CA", None, "ENAM"),
        ("US", "ZZ", "ENAM"),
        # full ISO-3166-2 form and lower case are accepted
        ("US", "US-CA", "WNAM"),
        ("us", "ca", "WNAM"),
        ("CA", "CA-BC", "WNAM"),
        # subdivisions are ignored outside US/CA
        ("FR", "CA", "WEU"),
    ],
)
def test_region_of(country: str, subdivision: str | None, region: str) -> None:
    assert SHIPPED.region_of(country, subdivision) == region


@pytest.mark.parametrize("country", ["ZZ", "", "USA", "EU", "U"])
def test_region_of_unknown_country_is_none(country: str) -> None:
    assert SHIPPED.region_of(country, None) is None
    assert SHIPPED.region_of(country, "CA") is None


def test_region_of_none_country() -> None:
    assert SHIPPED.region_of(None) is None


def test_every_us_state_and_ca_province_is_mapped() -> None:
    regions = data.default_regions()
    subs = regions.mapped_subdivisions
    us = {s for c, s in subs if c == "US"}
    ca = {s for c, s in subs if c == "CA"}
    assert len(us) == 51  # 50 states + DC
    assert ca == {"AB", "BC", "MB", "NB", "NL", "NS", "NT", "NU", "ON", "PE", "QC", "SK", "YT"}
    assert set(subs.values()) <= {"WNAM", "ENAM"}


def test_every_mapped_region_is_valid_and_every_valid_country_is_mapped() -> None:
    regions = data.default_regions()
    assert set(regions.mapped_countries.values()) <= REGION_CODES
    used = set(regions.mapped_countries.values()) | set(regions.mapped_subdivisions.values())
    assert used == REGION_CODES  # every region is used (WNAM only through US/CA subdivisions)
    assert set(regions.mapped_countries) == regions.countries


def test_country_list_is_iso_3166_1_plus_xk() -> None:
    rows = data.read_csv_rows(data.geo_dir() / "countries.csv")
    iso = {r["alpha2"] for r in rows if r["status"] == "iso"}
    assert len(iso) == 249  # ISO 3166-1 officially assigned alpha-2 codes
    assert {r["alpha2"] for r in rows if r["status"] != "iso"} == {"XK"}
    for code in iso:
        assert len(code) == 2 and code.isupper() and code.isalpha()


@pytest.mark.parametrize(("code", "valid"), [("US", True), ("JP", True), ("XK", True), ("GB", True)])
def test_is_country_valid(code: str, valid: bool) -> None:
    assert SHIPPED.is_country(code) is valid


@pytest.mark.parametrize("code", ["US-CA", "us", "UK", "EU", "ZZ", "", "USA", "ENAM"])
def test_is_country_rejects(code: str) -> None:
    # R-LOC-12: subdivision keys and non-ISO codes are not country_pools keys (E-COUNTRY)
    assert SHIPPED.is_country(code) is False


def test_is_region() -> None:
    assert is_region("ENAM")
    assert not is_region("enam")
    assert not is_region("ALL_REGIONS")


def test_region_map_from_rows() -> None:
    m = RegionMap.from_rows(
        [
            {"code": "US", "region": "ENAM"},
            {"code": "US-CA", "region": "WNAM"},
            {"code": "FR", "region": "WEU"},
        ],
        [{"alpha2": "US"}, {"alpha2": "FR"}, {"alpha2": "DE"}],
    )
    assert m.region_of("US", "CA") == "WNAM"
    assert m.region_of("DE", None) is None  # valid country, but not mapped
    assert m.is_country("DE")
    assert not m.is_country("JP")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"code": "FR", "region": "EUROPE"}], "unknown region"),
        ([{"code": "fr", "region": "WEU"}], "alpha-2"),
        ([{"code": "FR", "region": "WEU"}, {"code": "FR", "region": "WEU"}], "duplicate"),
        ([{"code": "FR-75", "region": "WEU"}], "only allowed for US and CA"),
        ([{"code": "US-CA", "region": "WNAM"}], "no country row"),
    ],
)
def test_region_map_rejects_bad_rows(rows: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RegionMap.from_rows(rows)


def test_region_map_rejects_mapped_country_missing_from_list() -> None:
    with pytest.raises(ValueError, match="missing from the country list"):
        RegionMap.from_rows([{"code": "FR", "region": "WEU"}], [{"alpha2": "DE"}])


def test_load_regions_reports_file(tmp_path: Path) -> None:
    bad = tmp_path / "regions.csv"
    bad.write_text("# header\ncode,name,region,basis\nFR,France,NOWHERE,x\n", encoding="utf-8")
    with pytest.raises(data.GeoDataError, match=r"regions\.csv.*unknown region"):
        data.load_regions(bad)
    with pytest.raises(data.GeoDataError, match="cannot read"):
        data.load_regions(tmp_path / "missing.csv")


def test_shipped_files_keep_source_and_licence_headers() -> None:
    for name, needles in {
        "regions.csv": ("PROPOSED", "NOT CLOUDFLARE'S MAPPING", "PDDL"),
        "region-codes.csv": ("Source:", "Licence"),
        "countries.csv": ("Source:", "PDDL-1.0"),
        "pops.csv": ("Source:", "licence MIT", "Netrvin", "LufsX"),
    }.items():
        head = "".join(
            line for line in (data.geo_dir() / name).read_text(encoding="utf-8").splitlines(True)
            if line.startswith("#")
        )  # fmt: skip
        for needle in needles:
            assert needle in head, (name, needle)
    readme = (data.geo_dir() / "README.md").read_text(encoding="utf-8")
    assert "proposed" in readme.lower()
    assert "CC BY-SA 4.0" in readme
