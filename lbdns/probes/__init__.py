"""Health probes (edge): http/https/tcp/udp_icmp/icmp_ping/smtp checks that never raise, the
probe scheduler, the probe worker process, the recorder that turns results into health views,
and health notifications (docs/operations.md › Health monitoring; docs/architecture.md › One
probe result).
"""

from lbdns.probes.result import FAILURE_REASONS, ProbeResult
from lbdns.probes.scheduler import ProbeContext, ProbeScheduler, run_check
from lbdns.probes.sink import JobKey, ProbeSink
from lbdns.probes.targets import ProbeTarget, build_targets

__all__ = [
    "FAILURE_REASONS",
    "JobKey",
    "ProbeContext",
    "ProbeResult",
    "ProbeScheduler",
    "ProbeSink",
    "ProbeTarget",
    "build_targets",
    "run_check",
]
