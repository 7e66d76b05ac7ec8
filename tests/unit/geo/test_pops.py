"""PoP dataclass and the shipped PoP catalogue (SPEC.md R-LOC-01, R-LOC-02, R-LOC-11, §2.1 ``pops``)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lbdns.geo import data
from lbdns.geo.pops import Pop, PopCatalogue, make_pop
from lbdns.geo.regions import REGION_CODES
from tests.fixtures.geo import BASE_POPS


def test_shipped_catalogue_loads_and_every_pop_is_valid() -> None:
    pops = data.load_pops()
    assert len(pops) > 300
    regions = data.default_regions()
    for code, pop in pops.items():
        assert code == pop.code
        assert len(code) == 3 and code.isupper()
        assert pop.region in REGION_CODES
        assert regions.is_country(pop.country)
        assert -90 <= pop.latitude <= 90 and -180 <= pop.longitude <= 180
        assert pop.city
        # region is consistent with the shipped mapping
        assert pop.region == regions.region_of(pop.country, pop.subdivision)
        assert (pop.subdivision is not None) == (pop.country in {"US", "CA"})
    assert {p.region for p in pops.values()} == REGION_CODES  # every region has a PoP


@pytest.mark.parametrize(
    ("code", "region", "country", "lat", "lon"),
    [
        ("IAD", "ENAM", "US", 38.94, -77.46),
        ("SJC", "WNAM", "US", 37.36, -121.93),
        ("LHR", "WEU", "GB", 51.47, -0.45),
        ("FRA", "WEU", "DE", 50.03, 8.56),
        ("NRT", "NEAS", "JP", 35.76, 140.39),
        ("SIN", "SEAS", "SG", 1.35, 103.99),
        ("GRU", "SSAM", "BR", -23.43, -46.47),
        ("JNB", "SAF", "ZA", -26.14, 28.25),
        ("SYD", "OC", "AU", -33.95, 151.18),
        ("BOM", "SAS", "IN", 19.09, 72.87),
        ("DXB", "ME", "AE", 25.25, 55.36),
    ],
)
def test_well_known_pops(code: str, region: str, country: str, lat: float, lon: float) -> None:
    pop = data.default_pops().get(code)
    assert pop is not None
    assert (pop.region, pop.country) == (region, country)
    assert math.isclose(pop.latitude, lat, abs_tol=0.1)
    assert math.isclose(pop.longitude, lon, abs_tol=0.1)


def test_base_fixture_pops_agree_with_catalogue() -> None:
    catalogue = data.default_pops()
    for code, pop in BASE_POPS.items():
        shipped = catalogue[code]
        assert (shipped.region, shipped.country) == (pop.region, pop.country)
        assert abs(shipped.latitude - pop.latitude) < 0.05
        assert abs(shipped.longitude - pop.longitude) < 0.05


def test_catalogue_mapping_api() -> None:
    pops = PopCatalogue([Pop("IAD", "ENAM", "US", 38.94, -77.46)])
    assert pops.get("IAD") == Pop("IAD", "ENAM", "US", 38.94, -77.46)
    assert pops.get("XXX") is None
    assert "IAD" in pops and "iad" not in pops
    assert list(pops) == ["IAD"] and len(pops) == 1
    with pytest.raises(KeyError):
        pops["XXX"]
    with pytest.raises(ValueError, match="duplicate"):
        PopCatalogue([pops["IAD"], pops["IAD"]])


def test_with_pops_overrides_and_adds() -> None:
    base = PopCatalogue([Pop("IAD", "ENAM", "US", 38.94, -77.46)])
    merged = base.with_pops([Pop("IAD", "WNAM", "US", 1.0, 2.0), Pop("LAB", "WEU", "FR", 48.0, 2.0)])
    assert merged["IAD"].region == "WNAM"
    assert merged["LAB"].country == "FR"
    assert base["IAD"].region == "ENAM"


def test_make_pop_derives_region() -> None:
    regions = data.default_regions()
    assert make_pop("X1", country="US", subdivision="CA", latitude=37, longitude=-122, regions=regions).region == "WNAM"
    assert make_pop("X2", country="US", latitude=37, longitude=-122, regions=regions).region == "ENAM"
    assert make_pop("X3", country="DE", latitude=50, longitude=8, regions=regions).region == "WEU"
    assert make_pop("X4", country="DE", region="EEU", latitude=50, longitude=8).region == "EEU"
    with pytest.raises(ValueError, match="no region"):
        make_pop("X5", country="ZZ", latitude=0, longitude=0, regions=regions)


def test_make_pop_without_region_needs_the_region_table() -> None:
    # the table is passed in: nothing reads the shipped one behind the caller's back
    with pytest.raises(ValueError, match="no region table"):
        make_pop("X6", country="DE", latitude=50, longitude=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"code": ""}, "non-empty"),
        ({"region": "EUROPE"}, "unknown region"),
        ({"country": "us"}, "alpha-2"),
        ({"country": "USA"}, "alpha-2"),
        ({"latitude": 91.0}, "latitude"),
        ({"longitude": -181.0}, "longitude"),
        ({"latitude": float("nan")}, "latitude"),
    ],
)
def test_pop_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "code": "IAD",
        "region": "ENAM",
        "country": "US",
        "latitude": 1.0,
        "longitude": 2.0,
    }
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Pop(**fields)  # type: ignore[arg-type]


def test_load_pops_bad_row_names_file_and_pop(tmp_path: Path) -> None:
    f = tmp_path / "pops.csv"
    f.write_text(
        "# c\niata,city,country,subdivision,region,latitude,longitude\n"
        "AAA,X,FR,,WEU,48,2\nBBB,Y,FR,,WEU,95,2\n",
        encoding="utf-8",
    )
    with pytest.raises(data.GeoDataError, match=r"pops\.csv.*BBB.*latitude"):
        data.load_pops(f)


def test_load_pops_derives_missing_region(tmp_path: Path) -> None:
    f = tmp_path / "pops.csv"
    f.write_text(
        "iata,city,country,subdivision,region,latitude,longitude\nAAA,X,US,OR,,45.6,-122.6\nBBB,Y,JP,,,35,139\n",
        encoding="utf-8",
    )
    pops = data.load_pops(f)
    assert pops["AAA"].region == "WNAM"
    assert pops["BBB"].region == "NEAS"
