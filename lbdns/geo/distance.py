"""Great-circle distance (pure).

Proximity steering orders pools by great-circle distance (Cloudflare docs: Load Balancing ›
Proximity). The formula is lbdns's choice, the docs name none: haversine on a sphere of radius
6371.0088 km (the IUGG mean Earth radius R1).
"""

from __future__ import annotations

from math import asin, cos, radians, sin, sqrt

__all__ = ["EARTH_RADIUS_KM", "haversine_km"]

#: Mean Earth radius in km used for all distances (IUGG R1).
EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance in km between two points.

    Takes latitudes and longitudes in decimal degrees (latitude −90…90, longitude −180…180; other
    values are used as given by the trigonometry). Returns a non-negative float, at most
    π × 6371.0088 km. Never raises for finite inputs.
    """
    p1 = radians(lat1)
    p2 = radians(lat2)
    h = sin((p2 - p1) * 0.5) ** 2 + cos(p1) * cos(p2) * sin(radians(lon2 - lon1) * 0.5) ** 2
    # Rounding can push h a hair above 1 for antipodal points.
    return 2.0 * EARTH_RADIUS_KM * asin(sqrt(min(1.0, h)))
