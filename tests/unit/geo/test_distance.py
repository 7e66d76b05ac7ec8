"""Great-circle distance (SPEC.md R-GTS-40) against the SPEC-EXAMPLES.md §0.1 distance table."""

from __future__ import annotations

import math

import pytest

from lbdns.geo.distance import EARTH_RADIUS_KM, haversine_km
from tests.fixtures.geo import BASE_GEO_TABLE, BASE_POPS

POOLS = {
    "p-us-east": (39.04, -77.49),
    "p-us-west": (37.37, -121.92),
    "p-eu": (50.11, 8.68),
    "p-asia": (35.68, 139.77),
}


def _geo(cidr: str) -> tuple[float, float]:
    row = BASE_GEO_TABLE[cidr]
    return float(row["latitude"]), float(row["longitude"])


def _pop(code: str) -> tuple[float, float]:
    pop = BASE_POPS[code]
    return pop.latitude, pop.longitude


# SPEC-EXAMPLES.md §0.1 "Great-circle distances used below (km, haversine R = 6371.0088)".
TABLE = [
    ("New York", _geo("198.51.100.0/26"), (350, 4103, 6203, 10847)),
    ("San Francisco", _geo("198.51.100.64/26"), (3877, 63, 9134, 8266)),
    ("Tokyo", _geo("198.51.100.128/26"), (10871, 8332, 9332, 7)),
    ("London", _geo("203.0.113.0/26"), (5917, 8630, 638, 9562)),
    ("PoP IAD", _pop("IAD"), (11, 3853, 6555, 10880)),
    ("PoP SJC", _pop("SJC"), (3849, 1, 9153, 8327)),
    ("PoP LHR", _pop("LHR"), (5898, 8618, 659, 9578)),
]


@pytest.mark.parametrize(("name", "origin", "expected"), TABLE, ids=[t[0] for t in TABLE])
def test_spec_examples_distance_table(
    name: str, origin: tuple[float, float], expected: tuple[int, ...]
) -> None:
    for (pool, (plat, plon)), km in zip(POOLS.items(), expected, strict=True):
        got = haversine_km(origin[0], origin[1], plat, plon)
        assert abs(got - km) <= 1.0, (name, pool, got, km)


def test_radius_is_spec_value() -> None:
    assert EARTH_RADIUS_KM == 6371.0088


def test_properties() -> None:
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    assert haversine_km(1.0, 2.0, 3.0, 4.0) == pytest.approx(haversine_km(3.0, 4.0, 1.0, 2.0))
    # a quarter of a great circle
    assert haversine_km(0.0, 0.0, 0.0, 90.0) == pytest.approx(EARTH_RADIUS_KM * math.pi / 2)
    # antipodes, including rounding at the edge
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(EARTH_RADIUS_KM * math.pi)
    assert haversine_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(EARTH_RADIUS_KM * math.pi)
    # the antimeridian is not a wall
    assert haversine_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(EARTH_RADIUS_KM * math.radians(1.0))
