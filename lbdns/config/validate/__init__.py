"""Zone YAML → validated configuration, collecting every problem with its location.

Structural checks (unknown keys, types, ranges) are pydantic's, run per object so one bad
pool does not hide problems in the others; DNS and cross-object checks are one module per
kind of object:

- :mod:`.pipeline` — :func:`load_config`, the order the steps run in;
- :mod:`.read` — the zone files and their top-level keys;
- :mod:`.issues` — the issue collector, pydantic errors → codes and messages;
- :mod:`.account` — the account-level tables (monitors, groups, pools by id);
- :mod:`.monitor`, :mod:`.pool` — monitors and groups, pools and their endpoints;
- :mod:`.zone`, :mod:`.records` — zone name, SOA, apex NS; static records and their placement;
- :mod:`.load_balancer`, :mod:`.rules` — load balancers, their custom rules;
- :mod:`.references` — pool references from load balancers and rules, unused pools;
- :mod:`.plan` — plan gating and quotas.

Every problem becomes an :class:`lbdns.errors.Issue` located at ``file:line:col`` with its
key path; see :func:`load_config`.
"""

from __future__ import annotations

from lbdns.config.loaded import Config, LoadedConfig, ZoneData
from lbdns.config.refs import pool_refs, resolve_policy
from lbdns.config.validate.monitor import MONITOR_RETRIES_MAX, MONITOR_TIMEOUT_MAX
from lbdns.config.validate.pipeline import load_config
from lbdns.config.validate.records import SUPPORTED_TYPES

__all__ = [  # app, explain, cli, the importers and the tests import these from here
    "MONITOR_RETRIES_MAX", "MONITOR_TIMEOUT_MAX", "SUPPORTED_TYPES", "Config", "LoadedConfig", "ZoneData",
    "load_config", "pool_refs", "resolve_policy",
]
