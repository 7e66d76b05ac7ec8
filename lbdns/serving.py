"""The serving plan: what each (name, type, PoP, location class) answers under one published
state (docs/architecture.md › The serving plan).

A :class:`ServingPlan` belongs to one published ``(snapshot, origin states)`` pair and is filled
lazily: the first query for a name computes its answer on the strict path
(:func:`lbdns.answer.resolve`), and the plan keeps what the next queries need — the
pre-rendered sections of a static answer, or for a load balancer the *selection* its steering
decision produced (the answer records to rotate, or the weighted candidates to draw from) per
PoP and, when the client location decided, per location class (the GeoIP network record of
the ECS address). A query then costs a lower-cased key lookup, one draw and one join of
pre-rendered bytes: :meth:`ServingPlan.respond`. Anything the plan does not hold, or a query
shape it does not read (other opcodes and classes, EDNS versions > 0, options other than ECS and
COOKIE, truncation), returns None and the caller takes the strict path, which gives the same
bytes (tests compare them).

Pure: randomness, the GeoIP lookup, the server cookie and the counters come in through the
:class:`Io` the caller passes; nothing here reads a clock or the network. Every answer cache of the
query path lives in the plan, so publishing a new snapshot or new origin states drops them all.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Protocol

from lbdns.answer import Answer, NeedsEnv, find_zone, label_offsets, resolve
from lbdns.health.view import HealthView
from lbdns.snapshot_types import Node, Snapshot, ZoneIndex
from lbdns.steering.origins import Rng
from lbdns.wire.codec import CLASS_IN, QTYPE_ANY, QTYPE_AXFR, QTYPE_CNAME, QTYPE_DS, QTYPE_IXFR
from lbdns.wire.scan import scan

__all__ = ["MAX_NAMES", "MAX_PACKETS", "MAX_SELECTIONS", "Io", "LbEntry", "Selection", "ServingPlan", "StaticEntry",
           "resolver_decided"]

MAX_NAMES = 200_000
"""Most (name, type) entries a plan holds; further names are answered without being kept. Also
the most (parent, type) entries of :attr:`ServingPlan.below` (emptied when full)."""
MAX_PACKETS = 10_000
"""Most exact-query responses a plan keeps (:attr:`ServingPlan.packets`); emptied when full."""
MAX_SELECTIONS = 200_000
"""Most LB selections a plan holds (PoP × location class × name); when reached, the per-location
selections are dropped and filled again (a size cap, cleared when full: O(1), no bookkeeping
per query)."""

_ROTATIONS = 8
"""Most records of a multi-answer selection whose rotations are joined ahead of queries."""
_SCOPE = tuple(bytes((i,)) for i in range(129))
_PAD = tuple(bytes(i) for i in range(17))
_COUNT = tuple(i.to_bytes(2, "big") for i in range(65536))
_NO_DO = b"\x00\x00"
_DO = b"\x80\x00"
_ANSWERING = frozenset({QTYPE_ANY, QTYPE_AXFR, QTYPE_CNAME, QTYPE_DS, QTYPE_IXFR})
"""QTYPEs answered otherwise than from a node's RRsets (never shared NODATA)."""


class Io(Protocol):
    """What :meth:`ServingPlan.respond` needs from its caller: ``rng`` (draws), ``geo`` (GeoIP
    lookup of a packed 4/16-octet address → record or None; None: no database), ``cookie``
    (client cookie, peer address text → 8-octet server cookie, RFC 7873 §4.2) and the query
    counters (``queries`` and ``decisions``, Counter-like). ``looked_up`` is set to the
    (argument, record) of the GeoIP lookup of a query the plan leaves to the strict path, so
    that path does not look it up again."""

    looked_up: tuple[object, object | None] | None

    @property
    def rng(self) -> Rng: ...

    @property
    def geo(self) -> Callable[..., object | None] | None: ...

    def server_cookie(self, client_cookie: bytes, peer_ip: str) -> bytes: ...

    @property
    def counters(self) -> Any: ...


def _heads(rcode: int, aa: bool, ancount: int, nscount: int, arcount: int) -> tuple[bytes, ...]:
    """The 10 header octets after the ID, by ``rd << 1 | edns``: QR, AA, RD copied, RCODE;
    QDCOUNT 1 and the counts (ARCOUNT + 1 with an OPT record; RFC 1035 §4.1.1)."""
    out = []
    for rd in (0, 1):
        for edns in (0, 1):
            flags = bytes((0x80 | (0x04 if aa else 0) | rd, rcode & 0xF))
            out.append(flags + b"\x00\x01" + _COUNT[ancount] + _COUNT[nscount] + _COUNT[arcount + edns])
    return tuple(out)


def _counter_keys(qtype_bucket: int, rcode: int) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
    return ("udp", qtype_bucket, rcode), ("tcp", qtype_bucket, rcode)


@dataclass(slots=True)
class StaticEntry:
    """A static answer: ``heads`` (see :func:`_heads`), ``body`` all its sections
    (answer, authority, additional and optional additional records) and ``answer`` itself.
    ``per_name`` is False for an answer shared by every name below a parent
    (:attr:`ServingPlan.below`): its queries are not kept by their bytes (random names would
    churn :attr:`ServingPlan.packets` and :attr:`ServingPlan.ecs_shapes`)."""

    heads: tuple[bytes, ...]
    body: bytes
    keys: tuple[tuple[str, int, int], tuple[str, int, int]]
    answer: Answer
    per_name: bool = True


@dataclass(slots=True)
class Selection:
    """What one LB answers for one PoP (and location class): ``rrs`` the answer records, rotated
    one step per query (multi-answer, Cloudflare docs: Load Balancing › Endpoint steering), or
    ``choices`` drawn by the cumulative ``weights`` (random single answer). ``network_prefix``
    identifies the decision (LB, pool, fallback) for the counters; ``answer`` the strict path's
    answer it came from. Equal selections are shared (one object per distinct answer)."""

    rrs: tuple[bytes, ...]
    choices: tuple[bytes, ...]
    weights: tuple[float, ...]
    heads: tuple[bytes, ...]
    keys: tuple[tuple[str, int, int], tuple[str, int, int]]
    decision_key: tuple[str, str, bool]
    answer: Answer
    longest: int = 0
    turn: int = 0
    rotations: tuple[bytes, ...] = ()
    """The answer section of every rotation of ``rrs``, joined once (up to :data:`_ROTATIONS`
    records; empty for more, which are joined per query)."""

    def __post_init__(self) -> None:
        rrs = self.rrs
        if not self.choices and 0 < len(rrs) <= _ROTATIONS:
            self.rotations = tuple(b"".join(rrs[k:] + rrs[:k]) for k in range(len(rrs)))

    def draw(self, rng: Rng) -> bytes:
        """The answer section for one more query."""
        if self.choices:
            w = self.weights
            return self.choices[bisect_right(w, rng.random() * w[-1]) if w[-1] > 0 else 0]
        rotations = self.rotations
        n = len(rotations)
        if n == 1:
            return rotations[0]
        if n:
            self.turn = k = (self.turn + 1) % n
            return rotations[k]
        rrs = self.rrs
        self.turn = k = (self.turn + 1) % len(rrs)
        return b"".join(rrs[k:] + rrs[:k])


@dataclass(slots=True)
class LbEntry:
    """A load-balanced (name, type): ``by_pop`` the selections whose decision used no client
    location (PoP code → selection); ``by_location`` those of ECS queries decided by the ECS
    address's location (PoP code → id of its GeoIP record → (the record, to check identity; the
    deciding network's prefix length for the ECS scope, :func:`ecs_scope`; the selection)) and
    ``by_resolver`` those of queries without ECS (or with a /0) decided by the resolver
    address's location (PoP code → id of its record → the same), two levels so that a query
    builds no key; ``by_fallback`` those of ECS queries whose location came from the resolver
    address or the PoP although ECS was present (its address has no GeoIP data, or not what the
    policy needs; or the policy does not prefer ECS): (PoP, id of the ECS address's record, id
    of the resolver address's record) → (both records, the prefix, the selection)."""

    by_pop: dict[str, Selection]
    by_location: dict[str, dict[int, tuple[object, int, Selection]]]
    by_resolver: dict[str, dict[int, tuple[object, int, Selection]]] = field(default_factory=dict)
    by_fallback: dict[tuple[str, int, int], tuple[object, object, int, Selection]] = field(default_factory=dict)


def ecs_scope(network_prefix: int, source: int) -> int:
    """The ECS SCOPE PREFIX-LENGTH of a location-decided answer to a query of SOURCE
    PREFIX-LENGTH ``source`` (RFC 7871 §7.2.1): the deciding GeoIP network's prefix clamped to
    the source; ``-1`` (ECS consulted, no data) gives the source, ``-2`` (location not from
    ECS) gives 0."""
    if network_prefix >= 0:
        return min(network_prefix, source)
    return source if network_prefix == -1 else 0


def resolver_decided(ans: Answer) -> bool:
    """True when the location of ``ans``'s load-balancing decision came from the resolver
    address, or from the PoP after the resolver address was consulted (``mode: resolver_ip``):
    with ECS present, such an answer is kept under the resolver address's GeoIP record too
    (:attr:`LbEntry.by_fallback`). False without a decision or a location."""
    loc = ans.decision.location if ans.decision is not None else None
    if loc is None or ans.lb is None:
        return False
    return loc.source == "resolver" or (loc.source == "pop" and ans.lb.base.location_mode != "pop")


def _lower_question(query: bytes, response: bytes, lname: bytes) -> tuple[bytes, bytes]:
    """``query`` and its ``response`` with the question name (at offset 12 of both) replaced by
    ``lname``, the same name in lower case: how the exact-packet and ECS-shape tables keep them."""
    end = 12 + len(lname)
    if lname == query[12:end]:
        return query, response
    return query[:12] + lname + query[end:], response[:12] + lname + response[end:]


class ServingPlan:
    """The answers of one published state: ``snapshot`` and the origin states of ``health``
    (docs/architecture.md › The serving plan). ``names`` maps the lower-case wire name +
    QTYPE + QCLASS octets to a :class:`StaticEntry` or an :class:`LbEntry`; ``selections``
    counts the LB selections held (≤ :data:`MAX_SELECTIONS`). ``payload`` is our EDNS UDP
    payload size; ``buckets`` maps a QTYPE to the value counted for it."""

    __slots__ = ("apexes", "below", "buckets", "ecs_lens", "ecs_shapes", "health", "names", "nodata", "opt",
                 "packets", "payload", "selections", "shared", "snapshot", "unnamed")

    def __init__(self, snapshot: Snapshot, health: HealthView, buckets: Sequence[int]) -> None:
        self.snapshot = snapshot
        self.health = health
        self.buckets = buckets
        """QTYPE → the value the query counters count (the caller's table)."""
        self.below: dict[bytes, tuple[Mapping[bytes, Node], StaticEntry]] = {}
        """Parent key (lower-case wire name of an existing node P + QTYPE + QCLASS) → (the nodes
        of P's zone, the answer of every name below P whose label under P is no node of that
        zone and no served zone's apex or ancestor of one). Such a name has P as its closest
        encloser and the zone of P as its zone, so its answer does not depend on the labels
        below P (RFC 1034 §4.3.2): the referral of a delegation above P, else the synthesis of
        ``*.P`` (RFC 4592 §3.3.1), else NXDOMAIN with the zone's SOA (RFC 2308 §2.1); names
        with a DNAME at or above P are not kept (the answer spells the name, RFC 6672 §2.2).
        At most :data:`MAX_NAMES` entries, keyed by existing names only (emptied when full)."""
        self.unnamed: dict[tuple[Any, ...], StaticEntry] = {}
        """The shared entries of :attr:`below` and :attr:`nodata`, one per (answer sections,
        header, counter bucket); at most :data:`MAX_NAMES` (emptied when full)."""
        self.nodata: dict[bytes, tuple[int, frozenset[int], StaticEntry]] = {}
        """Lower-case wire name of an existing node + QCLASS → (a counter bucket, the QTYPEs
        answered otherwise, the entry): NODATA (RFC 2308 §2.2) for every QTYPE of that bucket
        not in the set — the QTYPEs of the node's RRsets, of its load balancer, and DS, ANY,
        CNAME and zone transfers. Kept for QTYPEs without a counter bucket of their own (random
        QTYPEs would fill :attr:`names`); at most :data:`MAX_NAMES` entries (emptied when full)."""
        self.apexes: frozenset[bytes] = frozenset()
        """Every served zone's apex and its ancestors (computed when :attr:`below` is first filled)."""
        self.payload: int = snapshot.settings.edns_udp_payload
        self.names: dict[bytes, StaticEntry | LbEntry] = {}
        self.selections = 0
        self.packets: dict[str, dict[bytes, tuple[bytes, Selection | None, bytes, Any, Answer]]] = {}
        """PoP code → UDP query bytes after the ID → (response bytes after the ID up to the LB answer section,
        the LB selection or None, the bytes after it, counter keys, answer): for queries whose
        response depends on nothing else (no cookie, no ECS; ≤ 512 octets), keyed and kept with
        the name in lower case (a query in another letter case, RFC draft "0x20", is looked up
        lower-cased and its question echoed), at most :data:`MAX_PACKETS` per PoP. A shortcut
        for repeated queries; the plan answers every other query by name."""
        self.ecs_shapes: dict[str, dict[bytes, tuple[Any, ...]]] = {}
        """PoP code → UDP query bytes after the ID without the trailing ECS address → (entry, for a
        static answer the response after the ID without the address, the question's end, SOURCE
        PREFIX-LENGTH, mask of the bits beyond it, zero padding, header variant, our OPT record up
        to the SCOPE octet, size limit): queries that differ only in the ECS address, keyed with
        the name in lower case as :attr:`packets` (at most
        :data:`MAX_PACKETS` per PoP). ``ecs_lens`` maps such a query's length to its address length."""
        self.ecs_lens: dict[int, int] = {}
        self.shared: dict[tuple[Any, ...], Selection] = {}
        """One :class:`Selection` per distinct answer (many locations share one)."""
        p = self.payload.to_bytes(2, "big")
        self.opt = (b"\x00\x00\x29" + p + b"\x00\x00" + _NO_DO, b"\x00\x00\x29" + p + b"\x00\x00" + _DO)
        """The fixed part of our OPT record (owner, TYPE, CLASS = payload, EXT-RCODE 0, VERSION 0,
        DO copied) by DO; RDLENGTH and options follow (RFC 6891 §6.1.2, RFC 3225 §3)."""

    def respond(self, data: bytes, peer_ip: str, tcp: bool, pop: str,  # noqa: C901, PLR0912, PLR0915 -- per-query hot path in one frame (every call costs ~0.1 µs)
                io: Io) -> tuple[bytes, Answer] | None:
        """The response to the query ``data`` from ``peer_ip`` at PoP ``pop`` with the answer it
        carries, or None when the plan cannot answer it (the caller takes the strict path).

        Reads the header, the question (any letter case: the key is lower-cased, the question
        echoed as received), and at most one OPT record of version 0 with ECS and COOKIE
        options (RFC 6891, RFC 7871 §6, RFC 7873 §5.2). Never raises for any input bytes."""
        n = len(data)
        if not tcp:  # a kept ECS shape, then a kept packet (disjoint: kept packets carry no ECS)
            if (alen := self.ecs_lens.get(n)) is not None and (shapes := self.ecs_shapes.get(pop)):
                shape = shapes.get(data[2:n - alen])
                if shape is not None:  # None from it: reading the question and OPT again would give None too
                    return self._ecs_shape(shape, data, n, alen, pop, peer_ip, io)
            if (packets := self.packets.get(pop)) is not None:
                hit = packets.get(data[2:])
                if hit is not None:
                    io.counters.queries[hit[3][0]] += 1
                    kept = hit[1]
                    if kept is None:
                        return data[:2] + hit[0], hit[4]
                    io.counters.decisions[kept.decision_key] += 1
                    return data[:2] + hit[0] + kept.draw(io.rng) + hit[2], hit[4]
        scanned = scan(data)
        if scanned is None:
            return None  # a response, another opcode, not one question, options the plan does not read…
        qend, key, low, ar, payload, do, ecs_at, source, width, cookie = scanned
        if low is not None and not tcp:  # 0x20: the query kept in lower case?
            packets = self.packets.get(pop)
            hit = packets.get(low) if packets is not None else None
            if hit is not None:
                io.counters.queries[hit[3][0]] += 1
                kept = hit[1]
                if kept is None:
                    lowered = hit[0]
                    return data[:2] + lowered[:10] + data[12:qend] + lowered[qend - 2:], hit[4]
                io.counters.decisions[kept.decision_key] += 1
                return data[:2] + hit[0][:10] + data[12:qend] + kept.draw(io.rng) + hit[2], hit[4]
            if (alen := self.ecs_lens.get(n)) is not None and (shapes := self.ecs_shapes.get(pop)):
                shape = shapes.get(low[:n - 2 - alen])
                if shape is not None:
                    return self._ecs_shape(shape, data, n, alen, pop, peer_ip, io)
        entry = self.names.get(key)
        if entry is None:
            entry = self._shared(key, qend - 16) if self.below or self.nodata else None
            if entry is None:
                entry = self._miss(key, qend - 16)
                if entry is None:
                    return None
        if ar:
            limit = 65535 if tcp else payload if payload < self.payload else self.payload
            if limit < 512:
                limit = 512  # RFC 6891 §6.2.3: a payload below 512 is read as 512
            opt = self.opt[do]
        else:
            limit = 65535 if tcp else 512
            opt = b""
        echo = b""
        if ecs_at >= 0:
            olen = data[ecs_at + 2] << 8 | data[ecs_at + 3]
            echo = data[ecs_at:ecs_at + 7]
        scope = 0
        located = None
        sel: Selection | None = None
        if isinstance(entry, StaticEntry):
            body = entry.body
            heads = entry.heads
            keys = entry.keys
            ans = entry.answer
            keep = entry.per_name
        else:
            keep = True
            sel = entry.by_pop.get(pop)
            if sel is None:
                if not entry.by_location and not entry.by_resolver and not entry.by_fallback:
                    return None
                rec = None
                arg: object = None
                if io.geo is not None:  # the location class: the ECS address's record, else the resolver's
                    if source > 0:
                        address = data[ecs_at + 8:ecs_at + 8 + ((source + 7) >> 3)]
                        arg = address + _PAD[width - len(address)]
                    else:
                        arg = peer_ip
                    rec = io.geo(arg)
                classes = (entry.by_location if source > 0 else entry.by_resolver).get(pop)
                located = classes.get(id(rec)) if classes is not None else None
                if located is None or located[0] is not rec:
                    located = self._fell_back(entry, pop, rec, peer_ip, io) if source > 0 else None
                    if located is None:
                        io.looked_up = (arg, rec)
                        return None
                if source > 0:
                    scope = ecs_scope(located[1], source)
                sel = located[2]
            body = sel.draw(io.rng)
            heads = sel.heads
            keys = sel.keys
            ans = sel.answer
        if opt:
            options = b""
            if source >= 0:
                options = echo + _SCOPE[scope] + data[ecs_at + 8:ecs_at + 4 + olen]
            if cookie:
                options += b"\x00\x0a\x00\x10" + cookie + io.server_cookie(cookie, peer_ip)
            opt += _COUNT[len(options)] + options
            out = data[:2] + heads[(data[2] & 1) << 1 | 1] + data[12:qend] + body + opt
        else:
            out = data[:2] + heads[(data[2] & 1) << 1] + data[12:qend] + body
        if len(out) > limit:
            return None  # the strict path truncates (TC=1) or leaves optional records out
        io.counters.queries[keys[tcp]] += 1
        if sel is not None:
            io.counters.decisions[sel.decision_key] += 1
        if keep and not tcp and not cookie and n <= 512:
            if source < 0 and located is None:
                self._keep_packet(pop, data, out, qend, len(body), sel, keys, ans, limit, key[:-4])
            elif source > 0 and ecs_at + 4 + olen == n:
                self._keep_shape(pop, data, out, n, olen - 4, entry, qend, source, width, limit, opt, key[:-4])
        return out, ans

    def _keep_shape(self, pop: str, data: bytes, out: bytes, n: int, alen: int, entry: StaticEntry | LbEntry,
                    qend: int, source: int, width: int, limit: int, opt: bytes, lname: bytes) -> None:
        """Keep the shape of a UDP query whose last octets are its ECS address (the only option):
        a query that differs only in that address, or in its name's letter case, is then
        answered without reading its question and OPT record again (:attr:`ecs_shapes`; kept
        with the name ``lname`` in lower case, the client's case echoed)."""
        shapes = self.ecs_shapes.get(pop)
        if shapes is None or len(shapes) >= MAX_PACKETS:
            shapes = self.ecs_shapes[pop] = {}
        data, out = _lower_question(data, out, lname)
        bits = source & 7
        shapes[data[2:n - alen]] = (entry, out[2:len(out) - alen], qend, source, (0xFF >> bits) if bits else 0,
                                    _PAD[width - alen], (data[2] & 1) << 1 | 1, opt[:len(opt) - alen - 1], limit)
        self.ecs_lens[n] = alen

    def _ecs_shape(self, shape: tuple[Any, ...], data: bytes, n: int, alen: int, pop: str, peer_ip: str,
                   io: Io) -> tuple[bytes, Answer] | None:
        """The response to an ECS query of a kept shape (see :meth:`_keep_shape`), or None."""
        entry, static, qend, source, low_mask, pad, head, opt, limit = shape
        address = data[n - alen:]
        if address[-1] & low_mask:
            return None  # bits beyond the source prefix: the strict path answers FORMERR
        if type(entry) is StaticEntry:
            io.counters.queries[entry.keys[0]] += 1
            return data[:2] + static[:10] + data[12:qend] + static[qend - 2:] + address, entry.answer
        scope = 0
        sel = entry.by_pop.get(pop)
        if sel is None:
            packed = address + pad
            rec = io.geo(packed) if io.geo is not None else None
            classes = entry.by_location.get(pop)
            located = classes.get(id(rec)) if classes is not None else None
            if located is None or located[0] is not rec:
                located = self._fell_back(entry, pop, rec, peer_ip, io)
                if located is None:
                    io.looked_up = (packed, rec)
                    return None
            scope = ecs_scope(located[1], source)
            sel = located[2]
        body = sel.draw(io.rng)
        out = data[:2] + sel.heads[head] + data[12:qend] + body + opt + _SCOPE[scope] + address
        if len(out) > limit:
            return None
        io.counters.queries[sel.keys[0]] += 1
        io.counters.decisions[sel.decision_key] += 1
        return out, sel.answer

    @staticmethod
    def _fell_back(entry: LbEntry, pop: str, rec: object, peer_ip: str, io: Io) -> tuple[object, int, Selection] | None:
        """The kept (record, prefix, selection) of an ECS query whose ECS address's GeoIP record
        ``rec`` did not decide, from :attr:`LbEntry.by_fallback` keyed with the resolver
        address's record too; or None."""
        if not entry.by_fallback or io.geo is None:
            return None
        res = io.geo(peer_ip)
        hit = entry.by_fallback.get((pop, id(rec), id(res)))
        if hit is None or hit[0] is not rec or hit[1] is not res:
            return None
        return rec, hit[2], hit[3]

    def _keep_packet(self, pop: str, data: bytes, out: bytes, qend: int, section: int, sel: Selection | None,
                     keys: tuple[tuple[str, int, int], tuple[str, int, int]], ans: Answer, limit: int,
                     lname: bytes) -> None:
        """Keep the response to a UDP query whose bytes after the ID and its name's letter case
        are all it depends on (no cookie, no ECS; see :attr:`packets`), under the query with its
        name ``lname`` in lower case: the bytes before and after an LB's answer section, which is
        drawn again per query, when every draw fits ``limit``. The question is kept in lower
        case too; a hit echoes the client's."""
        packets = self.packets.get(pop)
        if packets is None or len(packets) >= MAX_PACKETS:
            packets = self.packets[pop] = {}
        data, out = _lower_question(data, out, lname)
        if sel is None:
            packets[data[2:]] = (out[2:], None, b"", keys, ans)
        elif len(out) - section + sel.longest <= limit:
            packets[data[2:]] = (out[2:qend], sel, out[qend + section:], keys, ans)

    def _miss(self, key: bytes, qlen: int) -> StaticEntry | LbEntry | None:
        """The entry for ``key`` (lower-case name + QTYPE + QCLASS) when the plan can answer it
        without the per-query inputs: a static answer (kept while the plan has room; for a name
        that is no node of its zone, the answer shared below its closest encloser,
        :attr:`below`) or an LB name (kept empty; the strict path adds selections). None for
        other classes and zone transfers (the strict path answers)."""
        qtype = key[-4] << 8 | key[-3]
        if key[-2:] != CLASS_IN.to_bytes(2, "big") or qtype in (QTYPE_AXFR, QTYPE_IXFR):
            return None
        qname = key[:qlen]
        try:
            ans = resolve(self.snapshot, qname, qtype, None)
        except NeedsEnv:
            lb = LbEntry({}, {})
            if len(self.names) < MAX_NAMES:
                self.names[key] = lb
            return lb
        if not ans.static:
            return None
        zone, offs, zi = find_zone(self.snapshot, qname)
        if zone is not None and qname not in zone.nodes:
            shared = self._learn_below(key, qlen, ans, qtype, zone, offs, zi)
            if shared is not None:
                return shared
        elif (zone is not None and self.buckets[qtype] != qtype and qtype not in _ANSWERING
              and ans.aa and not ans.rcode and not ans.ancount and ans.authority == zone.negative_soa):
            return self._learn_nodata(key, qlen, ans, qtype, zone.nodes[qname])
        entry = self._static(ans, qtype)
        if len(self.names) < MAX_NAMES:
            self.names[key] = entry
        return entry

    def _shared(self, key: bytes, qlen: int) -> StaticEntry | None:
        """The shared answer for ``key`` (a name not in :attr:`names`) from :attr:`nodata` or
        :attr:`below`, or None when the plan cannot prove one. For :attr:`below` each ancestor
        of the name is tried, nearest first, and at the first that is a kept parent P the label
        of the name under P (the node the name would sit under) must be no node of P's zone and
        no served apex or ancestor of one."""
        if self.nodata:
            empty = self.nodata.get(key[:qlen] + key[-2:])
            if empty is not None:
                qtype = key[-4] << 8 | key[-3]
                if self.buckets[qtype] == empty[0] and qtype not in empty[1]:
                    return empty[2]
        below = self.below
        i = 0
        n = key[0]
        while n:
            j = i + n + 1
            hit = below.get(key[j:])
            if hit is not None:
                child = key[i:qlen]
                if child in hit[0] or child in self.apexes:
                    return None
                return hit[1]
            i = j
            n = key[i]
        return None

    def _learn_below(self, key: bytes, qlen: int, ans: Answer, qtype: int, zone: ZoneIndex, offs: list[int],
                     zi: int) -> StaticEntry | None:
        """Keep ``ans``, the static answer for the name of ``key``, which is no node of its
        ``zone`` (``offs``, ``zi``: from :func:`~lbdns.answer.find_zone`), for every such name
        below its closest encloser (:attr:`below`) and return the shared entry; or None when
        the answer may depend on the name (it is then kept by itself)."""
        qname = key[:qlen]
        nodes = zone.nodes
        k = 1
        while k < zi and qname[offs[k]:] not in nodes:
            k += 1
        parent = qname[offs[k]:] if k < len(offs) else b"\x00"  # the apex is a node: k == zi at the latest
        if not self.apexes:
            self.apexes = frozenset(o[off:] for o in self.snapshot.zones for off in label_offsets(o))
        if qname[offs[k - 1]:] in self.apexes:
            return None  # a served zone lies below: names there are answered by it
        if zone.dnames and any((qname[offs[m]:] if m < len(offs) else b"\x00") in zone.dnames
                               for m in range(k, zi + 1)):
            return None  # a DNAME at or above the parent: the answer spells the name (RFC 6672 §2.2)
        entry = self._unnamed(ans, qtype)
        if len(self.below) >= MAX_NAMES:
            self.below.clear()
        self.below[parent + key[qlen:]] = (nodes, entry)
        return entry

    def _learn_nodata(self, key: bytes, qlen: int, ans: Answer, qtype: int, node: Node) -> StaticEntry:
        """Keep ``ans``, NODATA for the existing ``node`` and a QTYPE without a counter bucket
        of its own, for every such QTYPE it has no data for and that no load balancer answers
        (:attr:`nodata`; RFC 2308 §2.2), and return the shared entry."""
        answering = frozenset(node.rrsets) | _ANSWERING | (node.lb.types if node.lb is not None else frozenset())
        entry = self._unnamed(ans, qtype)
        if len(self.nodata) >= MAX_NAMES:
            self.nodata.clear()
        self.nodata[key[:qlen] + key[-2:]] = (self.buckets[qtype], answering, entry)
        return entry

    def _unnamed(self, ans: Answer, qtype: int) -> StaticEntry:
        """The entry of :attr:`unnamed` for ``ans`` to a query of ``qtype`` (made when new)."""
        body = ans.answer + ans.authority + ans.additional + ans.optional
        same = (body, ans.rcode, ans.aa, ans.ancount, ans.nscount, ans.arcount + ans.opcount, self.buckets[qtype])
        entry = self.unnamed.get(same)
        if entry is None:
            if len(self.unnamed) >= MAX_NAMES:
                self.unnamed.clear()
            entry = self.unnamed[same] = self._static(ans, qtype)
            entry.per_name = False
        return entry

    def _static(self, ans: Answer, qtype: int) -> StaticEntry:
        return StaticEntry(_heads(ans.rcode, ans.aa, ans.ancount, ans.nscount, ans.arcount + ans.opcount),
                           ans.answer + ans.authority + ans.additional + ans.optional,
                           _counter_keys(self.buckets[qtype], ans.rcode), ans)

    def learn_lb(self, key: bytes, pop: str, ans: Answer, ecs_present: bool, rec: object,
                 decision_key: tuple[str, str, bool], qtype: int, resolver_rec: object = None) -> None:
        """Keep the selection of a cacheable LB answer computed on the strict path: per PoP when
        no client location was used; else per (PoP, ECS present, GeoIP record ``rec``). With
        ECS, ``rec`` is the ECS address's record, and the selection is kept under it when the
        location came from it or, with ``mode: pop``, from the PoP; when the resolver address
        decided instead (or, with ``mode: resolver_ip``, the PoP after it), under both records,
        ``resolver_rec`` being the resolver address's (:attr:`LbEntry.by_fallback`). Without ECS
        (or with a /0), ``rec`` is the resolver address's record, which decides every location
        that query can get (the resolver's, or the PoP's when it has none)."""
        d = ans.decision
        if d is None or ans.lb is None or not (ans.rrs or ans.weighted):
            return
        entry = self.names.get(key)
        if type(entry) is not LbEntry:
            return
        same = (ans.rrs, ans.weighted, ans.rcode, ans.ancount, decision_key, qtype)
        sel = self.shared.get(same)
        if sel is None:
            sel = self.shared[same] = Selection(
                ans.rrs, tuple(rr for _, rr in ans.weighted), tuple(accumulate(w for w, _ in ans.weighted)),
                _heads(ans.rcode, True, ans.ancount, 0, 0), _counter_keys(self.buckets[qtype], ans.rcode),
                decision_key, ans,
                max(len(rr) for _, rr in ans.weighted) if ans.weighted else sum(len(rr) for rr in ans.rrs))
        loc = d.location
        if loc is None:
            entry.by_pop[pop] = sel
            self.selections += 1
            return
        prefix = -2
        if loc.source == "ecs" and loc.network_prefix is not None:
            prefix = loc.network_prefix
        elif loc.ecs_consulted:
            prefix = -1  # consulted but no data: SCOPE = SOURCE (RFC 7871 §7.2.1)
        if self.selections >= MAX_SELECTIONS:
            self._drop_located()
        if ecs_present and resolver_decided(ans):
            entry.by_fallback[(pop, id(rec), id(resolver_rec))] = (rec, resolver_rec, prefix, sel)
        else:
            by = entry.by_location if ecs_present else entry.by_resolver
            classes = by.get(pop)
            if classes is None:
                classes = by[pop] = {}
            classes[id(rec)] = (rec, prefix, sel)
        self.selections += 1

    def _drop_located(self) -> None:
        self.shared.clear()
        self.packets.clear()
        for entry in self.names.values():
            if type(entry) is LbEntry and (entry.by_location or entry.by_resolver or entry.by_fallback):
                self.selections -= (sum(map(len, entry.by_location.values()))
                                    + sum(map(len, entry.by_resolver.values())) + len(entry.by_fallback))
                entry.by_location = {}
                entry.by_resolver = {}
                entry.by_fallback = {}

    def tables(self) -> Iterable[dict[Any, Any]]:
        """The plan's dicts, for releasing a replaced plan a slice at a time."""
        for entry in self.names.values():
            if type(entry) is LbEntry:
                yield from entry.by_location.values()
                yield from entry.by_resolver.values()
                yield entry.by_fallback
        yield self.names
        yield self.below
        yield self.nodata
        yield self.unnamed
        yield self.shared
        yield from self.packets.values()
        yield from self.ecs_shapes.values()
