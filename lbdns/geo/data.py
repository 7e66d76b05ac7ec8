"""Loading the shipped geography data files (package data ``lbdns/geo/tables/``).

The only module of ``lbdns.geo`` that reads data files besides ``mmdb.py``. It parses the CSV
files (``#`` comment lines carry source and licence, see ``tables/README.md``) and hands the rows to
the pure builders :meth:`RegionMap.from_rows` and :meth:`PopCatalogue.from_rows`.

Files: ``region-codes.csv`` (the 13 regions of Cloudflare docs: Load Balancing › Regions API),
``regions.csv`` (country / US-CA subdivision → region, a PROPOSED mapping, since the Regions API
output is not public), ``countries.csv`` (valid ISO-3166-1 alpha-2 codes, the ``country_pools``
keys of Cloudflare docs: Load Balancing › Geo › Country steering), ``pops.csv`` (PoP catalogue,
replaced by the server setting ``pops_file``).
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from lbdns.errors import LbdnsError
from lbdns.geo.pops import PopCatalogue
from lbdns.geo.regions import RegionMap

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "GeoDataError",
    "default_pops",
    "default_regions",
    "geo_dir",
    "load_pops",
    "load_region_names",
    "load_regions",
    "read_csv_rows",
]


def geo_dir() -> Traversable:
    """Directory of the shipped data files: the package data ``lbdns/geo/tables`` (found through
    :mod:`importlib.resources`, so it works from a checkout, an editable install and a wheel).
    Imported on first use: importlib.resources
    loads ``tempfile`` (and with it ``random``), which the pure geo tables must not."""
    from importlib.resources import files

    return files("lbdns.geo") / "tables"


DataFile: TypeAlias = "Path | str | Traversable"
"""A data file: a filesystem path, or a :class:`~importlib.resources.abc.Traversable` (package data)."""


def _as_file(path: Path | str | Traversable) -> Traversable:
    return Path(path) if isinstance(path, str) else path


class GeoDataError(LbdnsError):
    """A geography data file or GeoIP database cannot be read or is malformed.

    The message names the file and, for CSV data, the offending row.
    """


def read_csv_rows(path: DataFile) -> list[dict[str, str]]:
    """Read a UTF-8 CSV file with a header row, skipping leading ``#`` comment lines.

    Takes a path. Returns one dict per data row (column → text; missing cells are ``""``).
    Raises GeoDataError if the file cannot be read or has no header row.
    """
    p = _as_file(path)
    try:
        lines = [line for line in p.read_text(encoding="utf-8").splitlines(keepends=True)
                 if not line.startswith("#")]
    except OSError as exc:
        raise GeoDataError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise GeoDataError(f"{p}: not UTF-8 ({exc})") from exc
    reader = csv.DictReader(lines)
    if not reader.fieldnames:
        raise GeoDataError(f"{p}: no CSV header row")
    return [{k: (v or "") for k, v in row.items() if k is not None} for row in reader]


def load_region_names(path: DataFile | None = None) -> dict[str, str]:
    """Return region code → name from ``region-codes.csv`` (default: the shipped ``region-codes.csv``).

    Raises GeoDataError if the file cannot be read or lacks ``code`` / ``name`` columns.
    """
    p = _as_file(path) if path is not None else geo_dir() / "region-codes.csv"
    rows = read_csv_rows(p)
    try:
        return {row["code"].strip(): row["name"].strip() for row in rows}
    except KeyError as exc:
        raise GeoDataError(f"{p}: missing column {exc}") from exc


def load_regions(path: DataFile | None = None, countries_path: DataFile | None = None) -> RegionMap:
    """Load the country / subdivision → region mapping and the valid-country list.

    Takes the mapping file (default: the shipped ``regions.csv``) and the country list (default:
    the shipped ``countries.csv``). Returns a :class:`RegionMap`. Raises GeoDataError naming the
    file if either cannot be read or is invalid (unknown region, malformed code, a mapped country
    missing from the country list).
    """
    rp = _as_file(path) if path is not None else geo_dir() / "regions.csv"
    cp = _as_file(countries_path) if countries_path is not None else geo_dir() / "countries.csv"
    region_rows = read_csv_rows(rp)
    country_rows = read_csv_rows(cp)
    try:
        return RegionMap.from_rows(region_rows, country_rows)
    except ValueError as exc:
        raise GeoDataError(f"{rp} / {cp}: {exc}") from exc


def load_pops(path: DataFile | None = None, regions: RegionMap | None = None) -> PopCatalogue:
    """Load the PoP catalogue (default: the shipped ``pops.csv``).

    Empty ``region`` cells are derived from country/subdivision with ``regions`` (default: the
    shipped mapping). Returns a :class:`PopCatalogue`. Raises GeoDataError naming the file and PoP
    on a bad row or an unreadable file.
    """
    p = _as_file(path) if path is not None else geo_dir() / "pops.csv"
    rows = read_csv_rows(p)
    try:
        return PopCatalogue.from_rows(rows, regions if regions is not None else default_regions())
    except ValueError as exc:
        raise GeoDataError(f"{p}: {exc}") from exc


@functools.cache
def default_regions() -> RegionMap:
    """Return the shipped region mapping, loaded once per process (see :func:`load_regions`).

    Raises GeoDataError if the shipped files are missing or broken.
    """
    return load_regions()


@functools.cache
def default_pops() -> PopCatalogue:
    """Return the shipped PoP catalogue, loaded once per process (see :func:`load_pops`).

    Raises GeoDataError if the shipped files are missing or broken.
    """
    return load_pops()
