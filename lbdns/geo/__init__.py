"""Geography for lbdns: regions, countries, PoPs, distances and request location (pure).

Re-exports the pure API. The GeoIP database reader is the edge module ``lbdns.geo.mmdb``
(``GeoDatabase``) and is deliberately not imported here, so pure code importing ``lbdns.geo``
does not load ``maxminddb``. Shipped data lives in ``<repo>/geo/`` (see ``geo/README.md``) and
is read by ``lbdns.geo.data``.
"""

from lbdns.geo.data import GeoDataError, default_pops, default_regions, load_pops, load_regions
from lbdns.geo.distance import EARTH_RADIUS_KM, haversine_km
from lbdns.geo.location import (
    GeoRecord,
    ResolvedLocation,
    StaticGeoTable,
    location_ecs_scope,
    resolve_location,
    yields_need,
)
from lbdns.geo.pops import Pop, PopCatalogue, make_pop
from lbdns.geo.regions import REGION_CODES, REGION_NAMES, RegionMap, is_region

__all__ = [
    "EARTH_RADIUS_KM",
    "REGION_CODES",
    "REGION_NAMES",
    "GeoDataError",
    "GeoRecord",
    "Pop",
    "PopCatalogue",
    "RegionMap",
    "ResolvedLocation",
    "StaticGeoTable",
    "default_pops",
    "default_regions",
    "haversine_km",
    "is_region",
    "load_pops",
    "load_regions",
    "location_ecs_scope",
    "make_pop",
    "resolve_location",
    "yields_need",
]
