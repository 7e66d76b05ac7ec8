"""The shared store of probe results: Redis (or Valkey) through redis-py's asyncio client
(docs/scaling.md › Keys in the store).

Keys, under the cluster's ``key_prefix`` P (so several clusters share one store), for a
vantage V:

* ``P:vantages`` — a set of vantage ids that have published;
* ``P:v:V`` — the vantage's region and PoP as JSON, expiring 3 × the longest monitor
  interval after its last refresh (an instance that stops refreshing leaves the vote);
* ``P:r:V:J`` — a hash per probe job J (pool id and monitor id as a JSON list): origin name →
  the newest result as JSON ``[passed 0|1, rtt_ms|null, at, failure_reason, code|null]``,
  the key expiring 3 × that monitor's interval after the last write (read in full when a
  reader first meets V, or rejoins);
* ``P:f:V`` — the vantage's change feed, a stream with one entry per write (fields ``J␟origin``
  → result): readers tail it with one ``XREAD`` for all vantages, so the read load follows
  the write rate, not the number of results;
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
class Identities:
    """One read of the live vantages: vantage id → (region, pop) and vantage → job →
    (ewma_ms, at) of its pool RTTs."""

    vantages: dict[str, tuple[str, str]] = field(default_factory=dict)
    rtts: dict[str, dict[JobKey, tuple[float, float]]] = field(default_factory=dict)


Entry = tuple[JobKey, str, bytes]
"""(job, origin name, encoded result)."""


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


_SEP = "\x1f"
"""Separates the job token and the origin name in a change-feed field."""


class ResultStore:
    """Reads and writes one cluster's keys (prefix ``prefix``) as vantage ``vantage`` through
    ``client``. ``feed_len`` bounds each vantage's change feed (approximate MAXLEN)."""

    def __init__(self, client: Redis, prefix: str, vantage: str, *, feed_len: int = 1_000) -> None:
        self.client = client
        self.prefix = prefix
        self.vantage = vantage
        self.feed_len = feed_len

    def _rkey(self, vantage: str, job: JobKey) -> str:
        return f"{self.prefix}:r:{vantage}:{job_token(job)}"

    def _feed(self, vantage: str) -> str:
        return f"{self.prefix}:f:{vantage}"

    async def publish(self, results: Mapping[JobKey, Mapping[str, bytes]], ttl_ms: Mapping[JobKey, int],
                      feed_ttl_ms: int) -> int:
        """Write this vantage's new ``results`` (job → origin → encoded result): into each
        job's hash (expiring after ``ttl_ms[job]``) and as one entry of the vantage's change
        feed (a stream expiring after ``feed_ttl_ms``); one pipelined round trip. Returns the
        number of commands sent."""
        pipe = self.client.pipeline(transaction=False)
        entry: dict[Any, Any] = {}
        for job, fields in results.items():
            if fields:
                key = self._rkey(self.vantage, job)
                mapping: dict[Any, Any] = dict(fields)
                pipe.hset(key, mapping=mapping)
                pipe.pexpire(key, ttl_ms[job])
                tok = job_token(job)
                entry.update({f"{tok}{_SEP}{origin}": blob for origin, blob in fields.items()})
        if entry:
            feed = self._feed(self.vantage)
            pipe.xadd(feed, entry, maxlen=self.feed_len, approximate=True)
            pipe.pexpire(feed, feed_ttl_ms)
        n = len(pipe)
        if n:
            await pipe.execute()
        return n

    async def heartbeat(self, identity: tuple[str, str] | None, rtts: Mapping[JobKey, tuple[float, float]],
                        ttl_ms: int) -> Identities:
        """Refresh this vantage's ``identity`` (region, pop) and pool ``rtts`` (expiring after
        ``ttl_ms``) and read every other live vantage's identity and RTTs: two pipelined round
        trips. Vantage ids whose identity expired are removed from the set. With ``identity``
        None (a reader that does not probe) nothing is written, so a read-only replica serves."""
        pipe = self.client.pipeline(transaction=False)
        if identity is not None:
            pipe.sadd(f"{self.prefix}:vantages", self.vantage)
            pipe.set(f"{self.prefix}:v:{self.vantage}", json.dumps(list(identity)), px=ttl_ms)
        if rtts and identity is not None:
            tkey = f"{self.prefix}:t:{self.vantage}"
            enc: dict[Any, Any] = {job_token(j): json.dumps([round(v, 3), round(at, 3)]) for j, (v, at) in rtts.items()}
            pipe.hset(tkey, mapping=enc)
            pipe.pexpire(tkey, ttl_ms)
        pipe.smembers(f"{self.prefix}:vantages")
        members: set[bytes] = (await pipe.execute())[-1]
        others = sorted(m.decode() for m in members if m.decode() != self.vantage)
        out = Identities()
        if not others:
            return out
        pipe = self.client.pipeline(transaction=False)
        for v in others:
            pipe.get(f"{self.prefix}:v:{v}")
            pipe.hgetall(f"{self.prefix}:t:{v}")
        replies: list[Any] = await pipe.execute()
        gone: list[str] = []
        for i, v in enumerate(others):
            ident, rtt_raw = replies[2 * i], replies[2 * i + 1]
            if ident is None:
                gone.append(v)
                continue
            try:
                region, pop = json.loads(ident)
            except ValueError:
                continue
            out.vantages[v] = (str(region), str(pop))
            out.rtts[v] = _decode_rtts(rtt_raw)
        if gone and identity is not None:
            await self.client.srem(f"{self.prefix}:vantages", *gone)
        return out

    async def read_full(self, vantage: str, jobs: Sequence[JobKey]) -> tuple[str, dict[JobKey, dict[str, bytes]]]:
        """Everything ``vantage`` holds for ``jobs``: (the id of its feed's newest entry, read
        first, so that the feed replays whatever changed after this read; job → origin →
        encoded result). One pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        pipe.xrevrange(self._feed(vantage), "+", "-", count=1)
        for job in jobs:
            pipe.hgetall(self._rkey(vantage, job))
        replies: list[Any] = await pipe.execute()
        newest = replies[0]
        last = newest[0][0].decode() if newest else "0-0"
        out = {job: {k.decode(): v for k, v in raw.items()} for job, raw in zip(jobs, replies[1:], strict=True) if raw}
        return last, out

    async def read_feeds(self, last_ids: Mapping[str, str]) -> dict[str, tuple[str, list[Entry]]]:
        """The change-feed entries of each vantage after its id in ``last_ids``: vantage → (new
        last id, [(job, origin, encoded result), ...] oldest first). One command."""
        if not last_ids:
            return {}
        streams: dict[Any, Any] = {self._feed(v): i for v, i in last_ids.items()}
        reply: Any = await self.client.xread(streams)
        pairs = reply.items() if isinstance(reply, dict) else (reply or ())
        out: dict[str, tuple[str, list[Entry]]] = {}
        cut = len(self.prefix) + 3
        for name, entries in pairs:
            v = (name.decode() if isinstance(name, bytes) else name)[cut:]
            items: list[Entry] = []
            last = last_ids.get(v, "0-0")
            for eid, fields in entries:
                last = eid.decode() if isinstance(eid, bytes) else eid
                for f, blob in fields.items():
                    tok, _, origin = f.decode().partition(_SEP)
                    try:
                        pool, mon = json.loads(tok)
                    except ValueError:
                        continue
                    items.append(((str(pool), str(mon)), origin, blob))
            out[v] = (last, items)
        return out


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


__all__ = ["Entry", "Identities", "JobKey", "ResultStore", "connect", "decode_result", "encode_result", "job_token",
           "jobs_of"]
