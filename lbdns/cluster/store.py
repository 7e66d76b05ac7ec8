"""The shared store of probe results: Redis (or Valkey) through redis-py's asyncio client
(docs/scaling.md › Keys in the store).

Keys, under the cluster's ``key_prefix`` P (so several clusters share one store), for a
vantage V:

* ``P:vantages`` — a set of vantage ids that have published;
* ``P:v:V`` — the vantage's region and PoP as JSON, expiring 3 × the longest monitor
  interval after its last refresh (an instance that stops refreshing leaves the vote);
* ``P:r:V:J`` — a hash per probe job J (pool id and monitor id as a JSON list): origin name →
  the newest result as JSON ``[passed 0|1, rtt_ms|null, at, failure_reason, code|null]``,
  the key expiring 3 × that monitor's interval after the last write;
* ``P:t:V`` — a hash J → the vantage's pool RTT EWMA ``[ewma_ms, at]`` (``rtt_scope:
  region``), expiring like ``P:v:V``.

Expiry is measured by the store's clock, and results of one vantage are compared only with
each other, never with another instance's clock. Every call raises
:class:`redis.exceptions.RedisError` or :class:`OSError` when the store is unreachable; the
caller (:class:`~lbdns.cluster.node.ClusterNode`) contains them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from lbdns.config.settings import ClusterSettings

JobKey = tuple[str, str]
"""(pool id, monitor id)."""


def job_token(job: JobKey) -> str:
    """The key component of a job: ``["pool","monitor"]`` (JSON, so any id is safe)."""
    return json.dumps(list(job), separators=(",", ":"))


def encode_result(passed: bool, rtt_ms: float | None, at: float, reason: str, code: int | None) -> bytes:
    """One result as stored (see the module docstring)."""
    rtt = None if rtt_ms is None else round(rtt_ms, 3)
    return json.dumps([1 if passed else 0, rtt, round(at, 3), reason, code], separators=(",", ":")).encode()


def decode_result(raw: bytes) -> tuple[bool, float | None, float, str, int | None] | None:
    """The stored result ``raw`` as (passed, rtt_ms, at, reason, code), or None when malformed."""
    try:
        p, rtt, at, reason, code = json.loads(raw)
        return (bool(p), None if rtt is None else float(rtt), float(at), str(reason),
                None if code is None else int(code))
    except (ValueError, TypeError):
        return None


@dataclass(slots=True)
class Snapshot:
    """What one read of the store returned: vantage id → (region, pop); (vantage, job) →
    origin → raw result; vantage → job → (ewma_ms, at)."""

    vantages: dict[str, tuple[str, str]] = field(default_factory=dict)
    results: dict[tuple[str, JobKey], dict[str, bytes]] = field(default_factory=dict)
    rtts: dict[str, dict[JobKey, tuple[float, float]]] = field(default_factory=dict)


def connect(cfg: ClusterSettings) -> Redis:
    """A redis-py asyncio client for ``cfg`` (URL, ACL user, password read from
    ``password_file``, TLS files for ``rediss://``, ``timeout`` for connect and every
    operation). Connects lazily. Raises OSError when the password file cannot be read."""
    from redis.asyncio import Redis

    kwargs: dict[str, Any] = {"socket_timeout": cfg.timeout, "socket_connect_timeout": cfg.timeout,
                              "retry_on_timeout": False, "health_check_interval": 0}
    if cfg.username is not None:
        kwargs["username"] = cfg.username
    if cfg.password_file is not None:
        kwargs["password"] = Path(cfg.password_file).read_text(encoding="utf-8").strip()
    if cfg.store_url.startswith("rediss://"):
        if cfg.tls_ca_file:
            kwargs["ssl_ca_certs"] = cfg.tls_ca_file
        if cfg.tls_cert_file:
            kwargs["ssl_certfile"] = cfg.tls_cert_file
        if cfg.tls_key_file:
            kwargs["ssl_keyfile"] = cfg.tls_key_file
    client: Redis = Redis.from_url(cfg.store_url, **kwargs)
    return client


class ResultStore:
    """Reads and writes one cluster's keys (prefix ``prefix``) as vantage ``vantage`` through
    ``client``."""

    def __init__(self, client: Redis, prefix: str, vantage: str) -> None:
        self.client = client
        self.prefix = prefix
        self.vantage = vantage

    def _rkey(self, vantage: str, job: JobKey) -> str:
        return f"{self.prefix}:r:{vantage}:{job_token(job)}"

    async def publish(
        self, results: Mapping[JobKey, Mapping[str, bytes]], ttl_ms: Mapping[JobKey, int],
        rtts: Mapping[JobKey, tuple[float, float]], identity: tuple[str, str], identity_ttl_ms: int,
    ) -> int:
        """Write this vantage's new ``results`` (job → origin → encoded result; each job's key
        expires after ``ttl_ms[job]``), its pool ``rtts`` (job → (ewma_ms, at)) and its
        ``identity`` (region, pop) expiring after ``identity_ttl_ms``; one pipelined round
        trip. Returns the number of commands sent."""
        pipe = self.client.pipeline(transaction=False)
        for job, fields in results.items():
            if fields:
                key = self._rkey(self.vantage, job)
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(key, mapping=mapping)
                pipe.pexpire(key, ttl_ms[job])
        if rtts:
            tkey = f"{self.prefix}:t:{self.vantage}"
            enc: dict[Any, Any] = {job_token(j): json.dumps([round(v, 3), round(at, 3)]) for j, (v, at) in rtts.items()}
            pipe.hset(tkey, mapping=enc)
            pipe.pexpire(tkey, identity_ttl_ms)
        pipe.sadd(f"{self.prefix}:vantages", self.vantage)
        pipe.set(f"{self.prefix}:v:{self.vantage}", json.dumps(list(identity)), px=identity_ttl_ms)
        n = len(pipe)
        await pipe.execute()
        return n

    async def read(self, jobs: Sequence[JobKey]) -> Snapshot:
        """Every other live vantage's results for ``jobs`` and its pool RTTs: two pipelined
        round trips. Vantage ids whose identity key expired are removed from the set."""
        members: set[bytes] = await self.client.smembers(f"{self.prefix}:vantages")  # type: ignore[assignment]
        others = sorted(m.decode() for m in members if m.decode() != self.vantage)
        snap = Snapshot()
        if not others:
            return snap
        pipe = self.client.pipeline(transaction=False)
        for v in others:
            pipe.get(f"{self.prefix}:v:{v}")
        for v in others:
            pipe.hgetall(f"{self.prefix}:t:{v}")
            for job in jobs:
                pipe.hgetall(self._rkey(v, job))
        replies: list[Any] = await pipe.execute()
        idents, rest = replies[: len(others)], iter(replies[len(others):])
        gone: list[str] = []
        for v, ident in zip(others, idents, strict=True):
            rtt_raw: dict[bytes, bytes] = next(rest)
            job_raws = [next(rest) for _ in jobs]
            if ident is None:
                gone.append(v)
                continue
            try:
                region, pop = json.loads(ident)
            except ValueError:
                continue
            snap.vantages[v] = (str(region), str(pop))
            snap.rtts[v] = _decode_rtts(rtt_raw)
            for job, raw in zip(jobs, job_raws, strict=True):
                if raw:
                    snap.results[(v, job)] = {k.decode(): val for k, val in raw.items()}
        if gone:
            await self.client.srem(f"{self.prefix}:vantages", *gone)
        return snap


def _decode_rtts(raw: Mapping[bytes, bytes]) -> dict[JobKey, tuple[float, float]]:
    out: dict[JobKey, tuple[float, float]] = {}
    for k, v in raw.items():
        try:
            pool, mon = json.loads(k)
            ewma, at = json.loads(v)
            out[(str(pool), str(mon))] = (float(ewma), float(at))
        except (ValueError, TypeError):
            continue
    return out


def jobs_of(keys: Iterable[tuple[str, str, str]]) -> list[JobKey]:
    """The distinct (pool, monitor) jobs of member keys (pool, origin, monitor), in order."""
    return list(dict.fromkeys((p, m) for p, _o, m in keys))


__all__ = ["JobKey", "ResultStore", "Snapshot", "connect", "decode_result", "encode_result", "job_token", "jobs_of"]
