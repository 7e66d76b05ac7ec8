"""One lbdns instance as a vantage of a cluster that shares health through a Redis-compatible
store (docs/scaling.md; Cloudflare docs: Load Balancing › Monitors › Health monitor regions).

A :class:`ClusterNode` sits between the probe scheduler and the
:class:`~lbdns.health_owner.HealthRecorder` (it is the scheduler's
:class:`~lbdns.probes.sink.ProbeSink`):

* each own probe result is kept as this vantage's newest result, queued for the store, and the
  member's aggregated result over all fresh vantages (:func:`lbdns.health.cluster.aggregate`)
  steps the state machine at once;
* a background task writes queued results (batched for ``FLUSH_S`` seconds) and, every
  ``sync_interval`` seconds, refreshes this vantage's identity and reads what the other
  vantages wrote since the last sync (their change feeds; in full when a vantage is new or
  after an outage); remote results not renewed for 3 × their interval age out; every member
  with a new, changed or vanished remote result is aggregated again;
* when the store is unreachable the node logs it once, drops the other vantages' results (it
  continues on its own vantage's results), probes every pool itself, and rejoins at the next
  successful sync. ``status()`` and ``metrics()`` expose it.

Nothing here runs on the query path: queries read only the published health view.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from lbdns.cluster.store import JobKey, ResultStore, decode_result, encode_result, jobs_of
from lbdns.health.book import MemberKey
from lbdns.health.cluster import VantageResult, aggregate, fresh_entries, region_rtt
from lbdns.health.tracker import ALL_REGIONS
from lbdns.health.view import PoolRtt
from lbdns.health_owner import HealthRecorder
from lbdns.probes.result import ProbeResult
from lbdns.probes.targets import ProbeTarget

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("lbdns.cluster")

FLUSH_S = 0.02
"""Seconds own results are gathered before one pipelined write."""
DOWN_AFTER = 2
"""Failed store operations in a row after which the store counts as unreachable."""
SETTLE_SYNCS = 3
"""Successful reads after (re)joining (the first one included) until the other vantages'
results count, i.e. two ``sync_interval``s: every instance reconnects within one
``sync_interval`` of the store's return and then publishes its newest results again, so a
vote never runs on part of the vantages. Until then the instance decides on its own results."""
TTL_FACTOR = 3
"""Results expire after this many monitor intervals (RTT data counts as current as long)."""


def probes_from(target: ProbeTarget, region: str) -> bool:
    """True when a vantage in ``region`` probes ``target``: its pool's ``check_regions`` is
    None (all data centers), contains ``ALL_REGIONS`` or ``region``."""
    regions = target.pool.check_regions
    return regions is None or ALL_REGIONS in regions or region in regions


class ClusterNode:
    """The cluster side of one instance (a :class:`~lbdns.probes.sink.ProbeSink`).

    Takes the redis-py asyncio ``client``, the ``key_prefix``, this instance's ``vantage`` id,
    its ``region`` and ``pop``, the ``recorder`` to feed, ``sync_interval`` and ``timeout``
    (seconds), ``rtt_by_region`` (keep :attr:`region_rtt`, for ``rtt_scope: region``),
    ``prober`` (False: a reader that probes and writes nothing while the store is reachable) and
    ``retarget(targets)``, called with the targets to probe here whenever that
    set changes (the region's pools while the store is reachable, every pool while it is not).
    ``wall`` / ``mono`` are the wall-clock and monotonic clocks (seconds).
    """

    def __init__(
        self, client: Redis, prefix: str, vantage: str, region: str, pop: str, recorder: HealthRecorder, *,
        sync_interval: float = 0.5, timeout: float = 1.0, rtt_by_region: bool = False, prober: bool = True,
        retarget: Callable[[list[ProbeTarget]], None] | None = None,
        wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.store = ResultStore(client, prefix, vantage)
        self.vantage, self.region, self.pop = vantage, region, pop
        self.recorder = recorder
        self.sync_interval, self.timeout = sync_interval, timeout
        self.rtt_by_region = rtt_by_region
        self.prober = prober
        self.retarget = retarget
        self.wall, self.mono = wall, mono
        self.store_up = False
        self.down_since: float | None = None
        self.store_errors = 0
        self.store_commands = 0
        self.syncs = 0
        self.last_sync_ms = 0.0
        self.region_rtt: dict[tuple[str, str], PoolRtt] = {}
        self._targets: dict[MemberKey, ProbeTarget] = {}
        self._jobs: list[JobKey] = []
        self._ttl: dict[JobKey, float] = {}
        self._mine: dict[MemberKey, VantageResult] = {}
        self._remote: dict[MemberKey, dict[str, VantageResult]] = {}
        self._recv: dict[tuple[str, MemberKey], float] = {}
        self._last_id: dict[str, str] = {}
        self._held: set[MemberKey] = set()
        self._settling = SETTLE_SYNCS
        self._failures = 0
        self._vantages: dict[str, tuple[str, str]] = {}
        self._outbox: dict[JobKey, dict[str, bytes]] = {}
        self._rtt_out: dict[JobKey, tuple[float, float]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._probing: list[ProbeTarget] | None = None

    # -- targets ---------------------------------------------------------------------------------

    def set_targets(self, targets: Sequence[ProbeTarget]) -> list[ProbeTarget]:
        """Switch to a (re)loaded configuration's targets; returns those to probe here."""
        self._targets = {t.key: t for t in targets}
        self._jobs = jobs_of(self._targets)
        self._ttl = {}
        for t in targets:
            self._ttl[t.job_key] = TTL_FACTOR * float(max(t.monitor.interval, 1))
        for key in [k for k in self._mine if k not in self._targets]:
            del self._mine[key]
        for key in [k for k in self._remote if k not in self._targets]:
            del self._remote[key]
        for vk in [vk for vk in self._recv if vk[1] not in self._targets]:
            del self._recv[vk]
        self._last_id.clear()  # new jobs: read every vantage in full once more
        self._probing = self.probe_targets()
        return self._probing

    def probe_targets(self) -> list[ProbeTarget]:
        """The targets this vantage probes: its region's pools while the store is reachable,
        every pool while it is not (it then decides on its own results alone). A reader probes
        nothing while the store is reachable and some vantage is live, else every pool."""
        every = list(self._targets.values())
        if not self.store_up:
            return every
        if not self.prober:
            return [] if self._vantages else every  # no vantage is live: probe as one
        return [t for t in every if probes_from(t, self.region)]

    @property
    def identity_ttl(self) -> float:
        """Seconds this vantage's identity lives without a refresh: 3 × the longest interval."""
        return max(self._ttl.values(), default=TTL_FACTOR * 60.0)

    # -- ProbeSink -------------------------------------------------------------------------------

    def probe_done(self, key: MemberKey, result: ProbeResult, lag: float | None) -> None:
        """An own probe finished: count it, keep and queue it, step the member's aggregate."""
        self.recorder.count_probe(result, lag)
        if key not in self._targets:
            return
        pool, origin, monitor = key
        self._mine[key] = VantageResult(self.vantage, self.region, result.passed, result.rtt_ms, result.at,
                                        result.failure_reason, result.response_code)
        if self.prober:
            self._outbox.setdefault((pool, monitor), {})[origin] = encode_result(
                result.passed, result.rtt_ms, result.at, result.failure_reason, result.response_code)
            self._wake.set()
        self._evaluate(key)

    def round_done(self, job: JobKey, rtts_ms: list[float]) -> None:
        """An own round finished: the pool RTT EWMA (this vantage's) is updated and queued."""
        self.recorder.round_done(job, rtts_ms)
        rtt = self.recorder.book.pool_rtt(job[0])
        if rtt is not None:
            self._rtt_out[job] = (rtt.ewma_ms, self.wall())

    # -- aggregation -----------------------------------------------------------------------------

    def _evaluate(self, key: MemberKey) -> None:
        target = self._targets.get(key)
        if target is None:
            return
        results = dict(self._remote.get(key, {})) if self._settling == 0 else {}
        mine = self._mine.get(key)
        if mine is not None and self.wall() - mine.at <= self._ttl.get(target.job_key, math.inf):
            results[self.vantage] = mine
        agg = aggregate(target.pool.check_regions, results, local=self.vantage)
        if agg is not None:
            self.recorder.record_result(key, agg)

    def _put(self, v: str, region: str, job: JobKey, origin: str, blob: bytes, now: float,
             dirty: set[MemberKey]) -> None:
        key = (job[0], origin, job[1])
        if key not in self._targets:
            return
        r = decode_result(blob)
        if r is None:
            return
        res = VantageResult(v, region, r[0], r[1], r[2], r[3], r[4])
        by_v = self._remote.setdefault(key, {})
        self._recv[(v, key)] = now
        if by_v.get(v) != res:
            by_v[v] = res
            dirty.add(key)

    def _drop(self, v: str, key: MemberKey, dirty: set[MemberKey]) -> None:
        self._recv.pop((v, key), None)
        by_v = self._remote.get(key)
        if by_v is not None and by_v.pop(v, None) is not None:
            dirty.add(key)

    def _apply_full(self, v: str, region: str, full: dict[JobKey, dict[str, bytes]], now: float,
                    dirty: set[MemberKey]) -> None:
        """Merge a full read of vantage ``v``: per job, only the results at most 3 × interval
        older than that vantage's newest one there (its own clock against itself)."""
        for job, raw in full.items():
            ats = {o: d[2] for o, b in raw.items() if (d := decode_result(b)) is not None}
            for origin in fresh_entries(ats, self._ttl.get(job, math.inf)):
                self._put(v, region, job, origin, raw[origin], now, dirty)

    def _age_out(self, now: float, dirty: set[MemberKey]) -> None:
        """Drop remote results not renewed for 3 × their monitor's interval (this process's
        monotonic clock: a vantage that stops publishing leaves the vote)."""
        for (v, key), at in list(self._recv.items()):
            if now - at > self._ttl.get((key[0], key[2]), math.inf):
                self._drop(v, key, dirty)

    def _merge_rtts(self, rtts: dict[str, dict[JobKey, tuple[float, float]]]) -> bool:
        """Recompute the per-region pool RTTs; True when they changed."""
        now = self.mono()
        samples: dict[str, list[tuple[str, float]]] = {}
        pools = {job[0] for job in self._jobs}
        for v, by_job in rtts.items():
            region = self._vantages[v][0]
            for (pool, _mon), (ewma, _at) in by_job.items():
                if pool in pools:
                    samples.setdefault(pool, []).append((region, ewma))
        for pool in pools:
            own = self.recorder.book.pool_rtt(pool)
            if own is not None and own.is_current(now):
                samples.setdefault(pool, []).append((self.region, own.ewma_ms))
        ttl = self.identity_ttl
        old = self.region_rtt
        new: dict[tuple[str, str], PoolRtt] = {}
        for pool, pairs in samples.items():
            for region, ms in region_rtt(pairs).items():
                prev = old.get((pool, region))
                new[(pool, region)] = prev if prev is not None and prev.ewma_ms == ms else PoolRtt(ms, now, ttl)
        self.region_rtt = new
        return new != old

    # -- the store -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and read the other vantages once (bounded by ``timeout``), then keep
        syncing in the background. An unreachable store is logged, not raised."""
        await self._sync()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lbdns-cluster-sync")

    async def stop(self) -> None:
        """Stop syncing and close the client."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.client.aclose()

    async def _run(self) -> None:
        next_sync = self.mono() + self.sync_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_sync - self.mono())):
                    await self._wake.wait()
                    await asyncio.sleep(FLUSH_S)
            self._wake.clear()
            if self.mono() >= next_sync:
                await self._sync()
                next_sync = self.mono() + self.sync_interval
            elif self._outbox and self.store_up:
                await self._guarded(self._publish)

    async def _publish(self) -> None:
        out, self._outbox = self._outbox, {}
        ttl_ms = {job: int(self._ttl.get(job, 180.0) * 1000) for job in out}
        self.store_commands += await self.store.publish(out, ttl_ms, int(self.identity_ttl * 1000))

    async def _read(self) -> None:
        rtts, self._rtt_out = self._rtt_out, {}
        ids = await self.store.heartbeat((self.region, self.pop) if self.prober else None, rtts,
                                         int(self.identity_ttl * 1000))
        self.store_commands += 3 + (2 if rtts else 0) + 2 * len(ids.vantages)
        now = self.mono()
        dirty: set[MemberKey] = set()
        had_vantages, self._vantages = bool(self._vantages), ids.vantages
        if not self.prober and had_vantages != bool(ids.vantages) and self.store_up:
            self._retarget()
        for v in [v for v in self._last_id if v not in ids.vantages]:
            del self._last_id[v]
        for v, key in [vk for vk in self._recv if vk[0] not in ids.vantages]:
            self._drop(v, key, dirty)
        known = {v: self._last_id[v] for v in ids.vantages if v in self._last_id}
        for v in ids.vantages:
            if v not in self._last_id:
                last, full = await self.store.read_full(v, self._jobs)
                self.store_commands += 1 + len(self._jobs)
                self._last_id[v] = last
                self._apply_full(v, ids.vantages[v][0], full, now, dirty)
        if known:
            feeds = await self.store.read_feeds(known)
            self.store_commands += 1
            for v, (last, entries) in feeds.items():
                self._last_id[v] = last
                region = ids.vantages[v][0]
                for job, origin, blob in entries:
                    self._put(v, region, job, origin, blob, now, dirty)
        self._age_out(now, dirty)
        if self._settling > 0:
            # (re)joining: the others may not have (re)published yet — a vote on part of the
            # vantages could flap, so remote results count from the SETTLE_SYNCS-th read on
            self._settling -= 1
            self._held |= dirty
            if self._settling > 0:
                return
        dirty |= self._held
        self._held.clear()
        for key in dirty:
            self._evaluate(key)
        if self.rtt_by_region and self._merge_rtts(ids.rtts):
            self.recorder.publish_now()

    async def _sync(self) -> None:
        start = self.mono()
        ok = (not self._outbox or await self._guarded(self._publish)) and await self._guarded(self._read)
        if ok:
            self.syncs += 1
            self.last_sync_ms = (self.mono() - start) * 1000.0

    async def _guarded(self, op: Callable[[], Any]) -> bool:
        try:
            async with asyncio.timeout(self.timeout * 2):
                await op()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis errors, OSError, timeouts: the store is unreachable
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def _mark_down(self, exc: BaseException) -> None:
        self.store_errors += 1
        self._failures += 1
        if self.store_up and self._failures < DOWN_AFTER:
            return  # one slow or lost operation is not an outage: retry at the next sync
        self._outbox.clear()
        if self.down_since is not None:
            return
        self.down_since = self.wall()
        was_up, self.store_up = self.store_up, False
        log.warning("cluster store unreachable (%s: %s); deciding health on this vantage's own probes "
                    "until it is back", type(exc).__name__, exc)
        self._remote.clear()
        self._recv.clear()
        self._last_id.clear()
        self._held.clear()
        self._settling = SETTLE_SYNCS
        self._failures = 0
        self._vantages = {}
        self.region_rtt = {}
        if was_up or self._probing is None or len(self._probing) != len(self._targets):
            self._retarget()

    def _mark_up(self) -> None:
        self._failures = 0
        if self.store_up:
            return
        if self.down_since is not None:
            log.warning("cluster store reachable again after %.1f s; rejoining the vote",
                        self.wall() - self.down_since)
        self.down_since = None
        self.store_up = True
        if not self.prober:  # a reader's own results counted only while the store was away
            self._mine.clear()
        # a restarted store lost everything: publish this vantage's newest results again
        for (pool, origin, monitor), r in self._mine.items():
            self._outbox.setdefault((pool, monitor), {})[origin] = encode_result(
                r.passed, r.rtt_ms, r.at, r.failure_reason, r.response_code)
        self._wake.set()
        self._retarget()

    def _retarget(self) -> None:
        probing = self.probe_targets()
        if self._probing is not None and [t.key for t in probing] == [t.key for t in self._probing]:
            return
        self._probing = probing
        if self.retarget is not None:
            self.retarget(probing)

    # -- reporting -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The ``cluster`` part of ``/status``: this vantage, the store state, the live vantages."""
        return {
            "instance": self.vantage, "region": self.region, "pop": self.pop, "probes": self.prober,
            "store": "up" if self.store_up else "unreachable",
            "store_down_since": self.down_since,
            "vantages": {v: {"region": r, "pop": p} for v, (r, p) in sorted(self._vantages.items())},
            "probing_targets": len(self._probing or ()), "targets": len(self._targets),
            "syncs": self.syncs, "last_sync_ms": round(self.last_sync_ms, 2), "store_errors": self.store_errors,
        }

    def metrics(self) -> dict[str, float]:
        """Figures for ``/metrics``: ``store_up`` (1/0), ``store_errors``, ``vantages`` (live,
        this one included), ``store_commands`` (sent), ``syncs``."""
        return {"store_up": 1.0 if self.store_up else 0.0, "store_errors": float(self.store_errors),
                "vantages": float(len(self._vantages) + (1 if self.prober else 0)),
                "store_commands": float(self.store_commands),
                "syncs": float(self.syncs)}


__all__ = ["DOWN_AFTER", "FLUSH_S", "SETTLE_SYNCS", "TTL_FACTOR", "ClusterNode", "probes_from"]
