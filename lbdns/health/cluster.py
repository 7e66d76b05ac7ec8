"""Health from several vantages: the region-majority vote over the probe results that lbdns
instances share (Cloudflare docs: Load Balancing › Monitors › Health monitor regions;
docs/scaling.md).

Every instance of a cluster is one *vantage* (an id and its PoP's region). For one (pool,
origin, monitor) member it knows the newest result of each vantage that is still fresh; this
module turns them into the one aggregated probe result that the consecutive up/down state
machine (:mod:`lbdns.health.tracker`, :class:`~lbdns.health.book.HealthBook`) runs on:

* :func:`aggregate` — the vote: the pool's ``check_regions`` select the voting regions, a
  region is healthy iff strictly more than half of its vantages passed, the member passes iff
  strictly more than half of the regions are healthy ("If the majority of data centers for
  that region pass the health monitor requests, that region is considered healthy. If the
  majority of regions is healthy, then the endpoint itself will be considered healthy.");
  regions without a vantage do not vote, and with one vantage the vote is its result;
* :func:`fresh_entries` — which results of one vantage are still current, judged only
  against that vantage's own clock (so clock skew between instances never matters);
* :func:`region_rtt` — per-region RTT (the mean over a region's vantages), for
  ``rtt_scope: region``.

Pure: no I/O, no clock; times are passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lbdns.health.tracker import aggregate_round, select_vantages


@dataclass(frozen=True, slots=True)
class VantageResult:
    """The newest probe result of one member from one vantage.

    ``vantage``: instance id; ``region``: its PoP's region code; ``passed``; ``rtt_ms``
    (milliseconds, None when not measured); ``at``: the prober's wall-clock UNIX seconds;
    ``failure_reason`` (Cloudflare docs: Load Balancing › Common error codes) and
    ``response_code`` as the probe reported them.
    """

    vantage: str
    region: str
    passed: bool
    rtt_ms: float | None
    at: float
    failure_reason: str = ""
    response_code: int | None = None


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """One aggregated probe result (structurally a ``ProbeOutcome`` of the health book).

    ``passed`` is the vote; ``rtt_ms``, ``failure_reason``, ``response_code`` and ``at`` are
    the details shown for the origin: the local vantage's when it agrees with the vote, else
    those of the first vantage (in id order) that does. ``voters`` is ``region → (passed,
    total)`` of the regions that voted.
    """

    passed: bool
    rtt_ms: float | None
    failure_reason: str
    response_code: int | None
    at: float
    voters: Mapping[str, tuple[int, int]]


def aggregate(
    check_regions: Sequence[str] | None, results: Mapping[str, VantageResult], *, local: str | None = None
) -> AggregateResult | None:
    """The aggregated result of one member over the vantages of ``results`` (vantage id → its
    fresh result), for a pool with ``check_regions`` (``None``: all vantages vote as one "All
    Data Centers" group; ``ALL_REGIONS``: every region; else the listed region codes).

    Only selected regions with at least one vantage vote; when none has one, all vantages vote
    as one group. ``local`` is this instance's vantage id (its details are preferred). Returns
    None when ``results`` is empty.
    """
    if not results:
        return None
    ordered = dict(sorted(results.items()))
    groups = select_vantages(check_regions, {v: r.region for v, r in ordered.items()})
    by_region = {reg: [ordered[v].passed for v in vids] for reg, vids in groups.items()}
    passed = aggregate_round(by_region)
    voters = {reg: (sum(1 for p in res if p), len(res)) for reg, res in by_region.items()}
    voting = [ordered[v] for vids in groups.values() for v in vids]
    agreeing = [r for r in voting if r.passed is passed]
    mine = ordered.get(local) if local is not None else None
    detail = mine if mine is not None and mine.passed is passed else (agreeing[0] if agreeing else voting[0])
    if passed:
        reason = ""
    elif detail.passed:  # no vantage failed with a reason of its own: the regions' vote did
        reason = "Other Failure"
    else:
        reason = detail.failure_reason or "Other Failure"
    return AggregateResult(passed, detail.rtt_ms if passed else None, reason, detail.response_code,
                           max(r.at for r in voting), voters)


def fresh_entries(at_by_key: Mapping[str, float], max_age: float) -> set[str]:
    """The keys of one vantage's results that are current: those at most ``max_age`` seconds
    older than that vantage's newest result (all times from the same prober's clock, so no
    comparison between instances' clocks is made). Empty for an empty mapping."""
    if not at_by_key:
        return set()
    newest = max(at_by_key.values())
    return {k for k, at in at_by_key.items() if newest - at <= max_age}


def region_rtt(samples: Iterable[tuple[str, float]]) -> dict[str, float]:
    """Region code → mean RTT in milliseconds over (region, rtt_ms) samples of the vantages
    of that region (non-finite samples are skipped)."""
    acc: dict[str, list[float]] = {}
    for region, rtt in samples:
        if math.isfinite(rtt):
            acc.setdefault(region, []).append(rtt)
    return {reg: math.fsum(v) / len(v) for reg, v in acc.items()}


__all__ = ["AggregateResult", "VantageResult", "aggregate", "fresh_entries", "region_rtt"]
