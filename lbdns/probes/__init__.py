"""Health probes (edge): http/https/tcp/udp_icmp/icmp_ping/smtp checks that never raise, the
probe scheduler and health notifications (SPEC.md §10, §11; DESIGN.md "One probe result").
"""

from lbdns.probes.result import FAILURE_REASONS, ProbeResult
from lbdns.probes.scheduler import ProbeContext, ProbeScheduler, ProbeTarget, build_targets, run_check

__all__ = [
    "FAILURE_REASONS",
    "ProbeContext",
    "ProbeResult",
    "ProbeScheduler",
    "ProbeTarget",
    "build_targets",
    "run_check",
]
