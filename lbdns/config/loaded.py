"""The validated configuration: what :func:`lbdns.config.validate.load_config` returns.

Plain frozen data classes, apart from the loader so that the snapshot types and the query
path can name them without importing the validator (pydantic, dnspython, the YAML reader).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lbdns.errors import Issue

if TYPE_CHECKING:
    import dns.name
    import dns.rrset

    from lbdns.config.model import LoadBalancer, Monitor, MonitorGroup, Pool, Soa


@dataclass(frozen=True, slots=True)
class ZoneData:
    """One validated zone.

    ``origin`` is the apex; ``rrsets`` maps (owner, rdtype) to a dnspython RRset with
    lower-case absolute owner names; ``load_balancers`` maps the LB owner name to its model
    (``name`` filled in as a lower-case FQDN with trailing dot); ``file`` is the source.
    """

    origin: dns.name.Name
    soa: Soa
    rrsets: Mapping[tuple[dns.name.Name, int], dns.rrset.RRset]
    load_balancers: Mapping[dns.name.Name, LoadBalancer]
    file: str


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated configuration: every zone plus the account-level objects
    (pools by id, monitors by id, monitor groups by id) and the warnings found."""

    zones: tuple[ZoneData, ...]
    pools: Mapping[str, Pool]
    monitors: Mapping[str, Monitor]
    monitor_groups: Mapping[str, MonitorGroup]
    warnings: tuple[Issue, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated config plus the compiled rule conditions per LB
    (``rules[(zone origin, lb name)] = [CompiledCondition, …]`` in array order)."""

    config: Config
    rules: Mapping[tuple[dns.name.Name, dns.name.Name], tuple[Any, ...]]
