"""``load_config``: zone directory → validated configuration, every problem reported at once.

The pipeline: read the files → account objects (monitors, groups, pools) → zones and their
records → monitors and pools checked → load balancers and their rules → pool references
nobody uses → origin hostnames leading back to their own load balancer → plan quotas →
issues sorted by position → :class:`LoadedConfig` or :class:`ConfigError`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

from lbdns.config.loaded import Config, LoadedConfig
from lbdns.config.settings import ServerSettings
from lbdns.config.source import SourceFile
from lbdns.config.validate import plan
from lbdns.config.validate.account import Account, read_account
from lbdns.config.validate.issues import Collector
from lbdns.config.validate.load_balancer import LoadBalancers, check_load_balancers
from lbdns.config.validate.monitor import check_monitors
from lbdns.config.validate.pool import check_pool
from lbdns.config.validate.read import read_zone_files
from lbdns.config.validate.references import check_hostname_loops, check_unused_pools, used_pools
from lbdns.config.validate.zone import read_zones
from lbdns.errors import ConfigError, Issue
from lbdns.geo.data import default_regions
from lbdns.geo.regions import RegionMap


def load_config(directory: Path, settings: ServerSettings | None = None,
                *, display_root: Path | None = None, regions: RegionMap | None = None,
                rule_errors: MutableMapping[str, int] | None = None) -> LoadedConfig:
    """Load and validate every YAML file under ``directory`` (``display_root``: what file
    names in issues are shown relative to; by default they are shown as the caller named them;
    ``regions``: the region table whose country list ``country_pools`` keys are checked against,
    by default the shipped one read by :func:`lbdns.geo.data.default_regions`; ``rule_errors``:
    the caller's counter of rule conditions failing at run time, per condition text, which the
    compiled conditions count into; None: not counted).

    Returns the :class:`LoadedConfig`; raises :class:`ConfigError` with every issue (errors
    and warnings, each sorted by file and position) when there is at least one error, or
    when ``directory`` does not exist. Warnings of a valid config are in ``config.warnings``.
    """
    settings = settings or ServerSettings()
    regions = regions if regions is not None else default_regions()
    col = Collector()
    sources = read_zone_files(col, directory, display_root)
    account = read_account(col, sources)
    check_monitors(col, account.monitors, account.groups, settings)
    parts, origins = read_zones(col, sources)
    for placed in account.pools.values():
        check_pool(col, placed, settings, account.monitors, account.groups, origins)
    lbs = check_load_balancers(col, parts, account.known_pools(), settings, regions, rule_errors)
    check_unused_pools(col, account.pools, used_pools(lb for z in lbs.zones for lb in z.load_balancers.values()))
    check_hostname_loops(col, {**account.pool_names, **account.pools}, lbs.zones)
    plan.check_quotas(col, sources, lbs.count, account.valid_pools(), account.monitors, settings)
    return _result(col, sources, account, lbs)


def _result(col: Collector, sources: list[SourceFile], account: Account, lbs: LoadBalancers) -> LoadedConfig:
    """Sort the issues by file order and position; raise when any is an error."""
    order = {s.name: n for n, s in enumerate(sources)}

    def position(i: Issue) -> tuple[int, str, int, int]:
        loc = i.location
        return order.get(loc.file, -1), loc.file, loc.line, loc.column

    errors = sorted((i for i in col.issues if i.is_error), key=position)
    warnings = sorted((i for i in col.issues if not i.is_error), key=position)
    if errors:
        raise ConfigError(errors + warnings)
    config = Config(
        zones=tuple(lbs.zones),
        pools=account.valid_pools(),
        monitors={k: p.obj for k, p in account.monitors.items() if p.obj is not None},
        monitor_groups={k: p.obj for k, p in account.groups.items() if p.obj is not None},
        warnings=tuple(warnings),
    )
    return LoadedConfig(config, lbs.rules)
