"""Reading the zone directory: every ``*.yaml`` file parsed with locations, the file shape
and its top-level keys checked."""

from __future__ import annotations

from pathlib import Path

from lbdns.config.source import SourceFile, load_yaml, zone_files
from lbdns.config.validate.issues import Collector, hint
from lbdns.errors import ConfigError, Issue, Location

TOP_LEVEL_KEYS = ("zone", "soa", "ns", "records", "load_balancers", "monitors", "monitor_groups", "pools")
"""The keys a zone file may hold (zone part and account-level objects alike)."""


def read_zone_files(col: Collector, directory: Path, display_root: Path | None) -> list[SourceFile]:
    """The YAML files under ``directory`` that parsed to a mapping, in :func:`zone_files` order.

    File names in issues are shown relative to ``display_root`` when given, else as the
    caller named them (``directory`` joined with the file's path below it). YAML errors, a
    file that is not a mapping and unknown top-level keys are recorded in ``col``. Raises
    :class:`ConfigError` when ``directory`` is not a directory.
    """
    if not directory.is_dir():
        raise ConfigError([Issue(Location(str(directory)), "", "E-ZONE", "zones directory does not exist")])
    root = display_root if display_root is not None else directory
    sources: list[SourceFile] = []
    for path in zone_files(directory):
        try:
            shown = str(path) if display_root is None else str(path.relative_to(root))  # as the caller named it
        except ValueError:
            shown = str(path)
        src, issues = load_yaml(path, shown)
        col.issues.extend(issues)
        if src is None:
            continue
        if not isinstance(src.data, dict):
            col.add(src, (), "E-TYPE", "a zone file must be a mapping (zone:, soa:, ns:, records:, …)")
            continue
        for key in src.data:
            if key not in TOP_LEVEL_KEYS:
                col.add(src, (key,), "E-FIELD", f"unknown top-level key {key!r}{hint(key, TOP_LEVEL_KEYS)} "
                        f"(allowed: {', '.join(TOP_LEVEL_KEYS)})")
        sources.append(src)
    return sources
