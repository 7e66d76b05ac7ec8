"""Probe targets: one :class:`ProbeTarget` per (pool, enabled origin, monitor) of a
configuration, built by :func:`build_targets`. Targets are plain picklable data: the probe
worker process receives them over its pipe.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lbdns.config.model import Monitor, MonitorGroup, Origin, Pool
from lbdns.config.monitor_types import MONITOR_KINDS
from lbdns.health.book import MemberKey
from lbdns.health.expected_codes import ExpectedCodes, parse_expected_codes
from lbdns.health.tracker import MemberSpec, Thresholds


@dataclass(frozen=True, slots=True, eq=False)
class ProbeTarget:
    """One (pool, origin, monitor) to probe.

    ``group`` holds the pool's monitor-group members (None for a single ``monitor``);
    ``expected`` the pre-parsed ``expected_codes`` of an http/https monitor (None otherwise or
    when unparsable — the check then reports "Monitor Config Error"); ``local_ip`` the address
    lbdns itself answers for a hostname origin inside the zones it serves (None: the hostname
    is resolved before each probe), so such origins are probed without an upstream resolver,
    also during warm start.
    """

    pool: Pool
    origin: Origin
    monitor: Monitor
    group: tuple[MemberSpec, ...] | None = None
    expected: ExpectedCodes | None = None
    local_ip: str | None = None

    @property
    def key(self) -> MemberKey:
        """(pool id, origin name, monitor id): the identity carried over on reloads."""
        return (self.pool.id, self.origin.name, self.monitor.id)

    @property
    def job_key(self) -> tuple[str, str]:
        """(pool id, monitor id): targets probed together as one round."""
        return (self.pool.id, self.monitor.id)

    @property
    def thresholds(self) -> Thresholds:
        """The monitor's ``consecutive_up`` / ``consecutive_down``."""
        return Thresholds(self.monitor.consecutive_up, self.monitor.consecutive_down)

    @property
    def votes(self) -> bool:
        """True unless this is a disabled or monitoring-only group member (Cloudflare docs: Load
        Balancing › Monitor Groups: such members neither vote on health nor count for latency)."""
        if self.group is None:
            return True
        spec = next((m for m in self.group if m.monitor_id == self.monitor.id), None)
        return spec is None or spec.votes


def _expected(monitor: Monitor) -> ExpectedCodes | None:
    kind = MONITOR_KINDS.get(monitor.type)
    if kind is None or not kind.http:
        return None
    try:
        return parse_expected_codes(monitor.expected_codes)
    except ValueError:
        return None


def build_targets(
    pools: Mapping[str, Pool],
    monitors: Mapping[str, Monitor],
    monitor_groups: Mapping[str, MonitorGroup] | None = None,
) -> list[ProbeTarget]:
    """Every probe target of a configuration.

    Takes pools, monitors and monitor groups by id. Returns one target per enabled origin of every
    pool that has a ``monitor`` — disabled pools included (lbdns decision: their state is known
    when they are re-enabled), disabled origins excluded — and, for a ``monitor_group``, one per
    enabled member monitor. References to unknown monitors or groups are skipped (the validator
    rejects them, ``E-REF``).
    """
    groups = monitor_groups or {}
    out: list[ProbeTarget] = []
    for pool in pools.values():
        origins = [o for o in pool.origins if o.enabled]
        if pool.monitor is not None:
            mon = monitors.get(pool.monitor)
            if mon is not None:
                exp = _expected(mon)
                out.extend(ProbeTarget(pool, o, mon, None, exp) for o in origins)
        elif pool.monitor_group is not None:
            grp = groups.get(pool.monitor_group)
            if grp is None:
                continue
            specs = tuple(
                MemberSpec(m.monitor_id, m.enabled, m.monitoring_only, m.must_be_healthy)
                for m in grp.members
            )
            for member in grp.members:
                mon = monitors.get(member.monitor_id)
                if not member.enabled or mon is None:
                    continue
                exp = _expected(mon)
                out.extend(ProbeTarget(pool, o, mon, specs, exp) for o in origins)
    return out


def warm_start_bound(targets: Iterable[ProbeTarget]) -> float:
    """Seconds a warm-start round may take: the largest ``timeout × (retries + 1)`` of the
    targets' monitors plus 1 s for name resolution (1 s without targets)."""
    return max((t.monitor.timeout * (t.monitor.retries + 1) for t in targets), default=0) + 1.0
