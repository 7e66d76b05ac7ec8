"""Response rate limiting (RRL) for UDP answers, as in BIND 9 (``rate-limit``), NSD
(``rrl-*``) and older Knot DNS (``mod-rrl``): a DNS server answering spoofed queries is a
reflector, so identical responses to one client network are limited.

Model (BIND's): a *token bucket* per (client network, response class, name). The client
network is the source address cut to ``ipv4_prefix``/``ipv6_prefix`` bits (default /24 and
/56). Classes, and the name each is keyed by (as NSD's ``rrl_classify``):

========== =============================================== ==============================
class      response                                        name in the key
========== =============================================== ==============================
positive   NOERROR with answers (or truncated)             QNAME (lower case) + QTYPE
nodata     NOERROR, no answer, AA set                      zone (owner of the SOA)
referral   NOERROR, no answer, AA clear, NS in authority   delegation point (NS owner)
nxdomain   NXDOMAIN                                        zone (owner of the SOA)
error      any other RCODE (FORMERR, SERVFAIL, REFUSED…)   none: all errors together
========== =============================================== ==============================

Each bucket earns ``rate`` tokens per second up to ``rate`` (one second of burst); every
response costs one token, limited ones too, down to ``-window × rate``. A response that leaves
the bucket below zero is *limited*: a client that stops flooding is answered again after at
most ``window`` seconds (BIND's ``window``). Every ``slip``-th limited response of a bucket is
sent as a *slip* — header and question only, TC=1 — so a real resolver behind a spoofed
address retries over TCP (which is never limited); the others are dropped. ``slip`` 0 drops
all, 1 slips all. A slip is never longer than the query.

Cost: a per-network bucket with the lowest class rate sits in front of the per-class ones.
Every response from a network debits it; while it stays at or above zero no class bucket can
be below zero either (each earns at least as fast and is debited by a subset of the same
responses), so the response is allowed without parsing it. Once the network bucket goes
below zero the network is *hot*: every response is classified until the network bucket is
full again. Quiet networks (nearly every resolver) thus cost two dict lookups and a little
arithmetic per response.

Memory: two tables (networks, class buckets), each at most ``table_size`` entries (default
20,000, as BIND's ``max-table-size``), least recently used evicted first, plus a cache of at
most 32,768 source addresses (each holding its network's bucket) and a memo of at most 10,000
classifications (queries of at most 255 octets): 18.8 MB measured with everything full at the
defaults and short names, 22.0 MB with 130-octet names and 230-octet queries.

Pure: no I/O, no logging; time comes from the injected ``clock`` (seconds, monotonic).
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import ip_network

__all__ = [
    "ALLOW",
    "CLASSES",
    "DROP",
    "ERROR",
    "NODATA",
    "NXDOMAIN",
    "POSITIVE",
    "REFERRAL",
    "SLIP",
    "RateLimiter",
    "RrlParams",
    "classify",
    "question_end",
    "slip_reply",
]

POSITIVE, NODATA, REFERRAL, NXDOMAIN, ERROR = range(5)
CLASSES = ("positive", "nodata", "referral", "nxdomain", "error")
"""Class names by class number (for logs and tests)."""

_ADDRESS_CACHE_MAX = 32_768
_CLASS_MEMO_MAX = 10_000
_CLASS_MEMO_QUERY_MAX = 255
"""Classifications memoised (queries of at most 255 octets), emptied when full."""
_EXEMPT = -1
"""Cached network key of an exempt source address."""
_MAX_HOPS = 16


@dataclass(frozen=True, slots=True)
class RrlParams:
    """RRL parameters (see :mod:`lbdns.server.rrl`). Rates are responses per second (≥ 1);
    ``window`` seconds (≥ 1); ``slip`` 0–10; prefix lengths in bits; ``exempt`` CIDR strings
    never limited; ``table_size`` entries per table (≥ 1)."""

    responses_per_second: int = 20
    nxdomains_per_second: int | None = None
    errors_per_second: int | None = None
    window: int = 15
    slip: int = 2
    ipv4_prefix: int = 24
    ipv6_prefix: int = 56
    exempt: tuple[str, ...] = ()
    table_size: int = 20_000

    def rates(self) -> tuple[float, ...]:
        """Rate of each class, indexed by class number."""
        r = float(self.responses_per_second)
        nx = float(self.nxdomains_per_second or r)
        err = float(self.errors_per_second or r)
        return (r, r, r, nx, err)


class _Bucket:
    """One token bucket, kept as its *theoretical arrival time* (GCRA, the form of a token
    bucket that needs one number): ``tat`` is the clock time at which the bucket would be full
    again, so it holds ``rate × (1 − (tat − now))`` tokens of its one second of burst, and is
    empty once ``tat − now`` exceeds 1 s. ``limited`` counts limited responses (the slip turn).
    Network buckets also keep ``hot`` (responses are being classified), ``net`` (their key),
    ``mark`` (the clock second of their last move to the most recently used end) and ``live``
    (still in the table)."""

    __slots__ = ("hot", "limited", "live", "mark", "net", "tat")

    def __init__(self, now: float, net: int = 0) -> None:
        self.tat = now
        self.limited = 0
        self.hot = False
        self.net = net
        self.mark = int(now)
        self.live = True


_EXEMPT_BUCKET = _Bucket(0.0, _EXEMPT)
_BURST = 1.0 + 1e-9
"""Seconds of rate a bucket holds (one second's worth of responses; the epsilon absorbs
rounding in sums of 1/rate)."""
"""What the address cache holds for an exempt source."""


def _read_name(buf: bytes, off: int) -> bytes:
    """The lower-case uncompressed wire name at ``off`` in ``buf`` (pointers followed, at most
    16 hops). Raises IndexError or ValueError on a malformed name."""
    out = b""
    for _ in range(_MAX_HOPS):
        start = off
        n = buf[off]
        while 0 < n < 64:
            off += n + 1
            n = buf[off]
        out += buf[start:off]
        if n == 0:
            if len(out) > 254:
                raise ValueError("name too long")
            return (out + b"\x00").lower()
        if n < 0xC0:
            raise ValueError("bad label type")
        off = (n & 0x3F) << 8 | buf[off + 1]
    raise ValueError("pointer loop")


def _skip_name(buf: bytes, off: int) -> int:
    """Offset after the (possibly compressed) name at ``off``."""
    n = buf[off]
    while 0 < n < 64:
        off += n + 1
        n = buf[off]
    if n == 0:
        return off + 1
    if n < 0xC0:
        raise ValueError("bad label type")
    return off + 2


def question_end(message: bytes) -> int:
    """Offset just after the question of ``message`` (12 when it has none), or -1 when it
    has more than one or cannot be parsed."""
    try:
        qdcount = message[4] << 8 | message[5]
        if qdcount == 0:
            return 12
        if qdcount != 1:
            return -1
        off = 12
        n = message[off]
        while 0 < n < 64:
            off += n + 1
            n = message[off]
        if n or off + 5 > len(message):
            return -1
        return off + 5
    except IndexError:
        return -1


def classify(response: bytes, wildcard_zone: Callable[[bytes], bytes | None] | None = None) -> tuple[int, bytes]:
    """The RRL class of a response message and the name it is keyed by (see the table in the
    module docstring): ``(class, key)``, ``key`` a lower-case wire name (+ QTYPE for
    ``positive``), ``b""`` when there is none. ``wildcard_zone(qname)`` (lower-case wire)
    returns the zone apex when ``qname`` is answered from a wildcard (such answers are keyed
    by the zone, as NXDOMAIN, so random names under a wildcard share one bucket), else None.
    Never raises: what cannot be parsed is an ``error`` with key ``b""``."""
    try:
        rcode = response[3] & 0x0F
        if rcode not in (0, 3):
            return ERROR, b""
        end = question_end(response)
        if end <= 12:
            return ERROR, b""
        if rcode == 0 and (response[6] or response[7] or response[2] & 0x02):
            qname = response[12:end - 4].lower()
            if wildcard_zone is not None and (zone := wildcard_zone(qname)) is not None:
                return POSITIVE, zone
            return POSITIVE, qname + response[end - 4:end - 2]
        off = end
        for _ in range(response[6] << 8 | response[7]):  # CNAME chain before NXDOMAIN/NODATA
            off = _skip_name(response, off)
            off += 10 + (response[off + 8] << 8 | response[off + 9])
        owner = _read_name(response, off) if response[8] or response[9] else b""
        if rcode == 3:
            return NXDOMAIN, owner
        return (NODATA if response[2] & 0x04 else REFERRAL), owner
    except (IndexError, ValueError):
        return ERROR, b""


def slip_reply(response: bytes, query_len: int) -> bytes | None:
    """The slipped form of ``response``: its header with TC=1 and no records but the
    question, and the question. Returns None (drop) when it would be longer than the query
    (``query_len`` octets) or the response cannot be parsed."""
    end = question_end(response)
    if end < 0 or end > query_len:
        return None
    return (response[:2] + bytes((response[2] | 0x02, response[3])) + response[4:6] + b"\x00" * 6
            + response[12:end])


ALLOW = 0
DROP = 1
SLIP = 2


class RateLimiter:
    """Response rate limiter (see the module docstring).

    ``params`` the settings; ``clock`` a monotonic time in seconds; ``verified(query, peer)``
    (optional) returns True for a query whose source address is proven (a valid DNS server
    cookie, RFC 7873 §5.2.3), which is never limited — it is asked only about responses that
    would be limited; ``wildcard_zone`` is passed to :func:`classify`. Counters: ``dropped``
    and ``slipped`` responses, ``evicted`` table entries.
    """

    def __init__(self, params: RrlParams, clock: Callable[[], float],
                 verified: Callable[[bytes, str], bool] | None = None,
                 wildcard_zone: Callable[[bytes], bytes | None] | None = None) -> None:
        self.params = params
        self.clock = clock
        self.verified = verified
        self.wildcard_zone = wildcard_zone
        self.rates = params.rates()
        self.intervals = tuple(1.0 / r for r in self.rates)
        # a bucket in debt by window × rate tokens is 1 + window seconds from full
        self.caps = tuple(1.0 + params.window for _ in self.rates)
        # the network bucket: the lowest rate and the deepest debt of any class (so that no
        # class bucket can be empty while it is not)
        self.net_rate = min(self.rates)
        self.net_interval = 1.0 / self.net_rate
        self.net_cap = 1.0 + params.window * max(self.rates) / self.net_rate
        self.slip = params.slip
        self.table_size = params.table_size
        self.v4_mask = (0xFFFFFFFF << (32 - params.ipv4_prefix)) & 0xFFFFFFFF
        self.v6_mask = ((1 << 128) - 1) ^ ((1 << (128 - params.ipv6_prefix)) - 1)
        self.exempt4: list[tuple[int, int]] = []
        self.exempt6: list[tuple[int, int]] = []
        for text in params.exempt:
            net = ip_network(text, strict=False)
            mask = int(net.netmask)
            (self.exempt4 if net.version == 4 else self.exempt6).append((int(net.network_address), mask))
        self.addresses: dict[str, _Bucket] = {}
        self._classes: dict[bytes, tuple[bytes, int, bytes]] = {}
        self.nets: OrderedDict[int, _Bucket] = OrderedDict()
        self.buckets: OrderedDict[tuple[int, int, bytes], _Bucket] = OrderedDict()
        self.dropped = 0
        self.slipped = 0
        self.evicted = 0

    def network_of(self, peer: str) -> int:
        """The network key of source address ``peer`` (text), or -1 when exempt. IPv6 keys
        have bit 128 set so they never equal an IPv4 key. Unparsable text is its own
        network (key from its hash)."""
        text = peer.partition("%")[0]
        try:
            if ":" in text:
                value = int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
                if any(value & m == n for n, m in self.exempt6):
                    return _EXEMPT
                return (1 << 128) | (value & self.v6_mask)
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
            return _EXEMPT if any(value & m == n for n, m in self.exempt4) else value & self.v4_mask
        except OSError:
            return (2 << 128) | (hash(peer) & 0xFFFFFFFF)

    def _network_bucket(self, peer: str, bucket: _Bucket | None = None) -> _Bucket:
        """The bucket of ``peer``'s network, from the table or new (evicting the least
        recently used), remembered in the address cache. ``bucket``: the evicted bucket the
        cache held for ``peer``, put back when its network has no newer one."""
        net = bucket.net if bucket is not None else self.network_of(peer)
        if net < 0:
            b = _EXEMPT_BUCKET
        else:
            nets = self.nets
            found = nets.get(net)
            if found is None:
                if len(nets) >= self.table_size:
                    nets.popitem(last=False)[1].live = False
                    self.evicted += 1
                if bucket is None:
                    bucket = _Bucket(self.clock(), net)
                bucket.live = True
                nets[net] = found = bucket
            else:
                nets.move_to_end(net)
            b = found
        addresses = self.addresses
        if len(addresses) >= _ADDRESS_CACHE_MAX and peer not in addresses:
            addresses.clear()
        addresses[peer] = b
        return b

    def check(self, peer: str, query: bytes, response: bytes) -> int:
        """Account one UDP ``response`` to ``query`` from source address ``peer``: ALLOW (0),
        DROP (1) or SLIP (2: send :func:`slip_reply`, which is then known to fit). Counts
        drops and slips."""
        b = self.addresses.get(peer)
        if b is None:
            b = self._network_bucket(peer)
        if b is _EXEMPT_BUCKET:
            return ALLOW
        now = self.clock()
        if b.mark != int(now):  # least recently used order, kept to the second
            b.mark = int(now)
            if b.live:
                self.nets.move_to_end(b.net)
            else:  # evicted while this address was cached
                b = self._network_bucket(peer, b)
        tat = b.tat
        if tat <= now:
            tat = now
            b.hot = False  # full again: the network is quiet
        tat += self.net_interval
        if tat - now > self.net_cap:
            tat = now + self.net_cap
        b.tat = tat
        if tat - now <= _BURST and not b.hot:
            return ALLOW
        b.hot = True
        return self._check_response(b.net, peer, query, response, now)

    def _classify(self, query: bytes, response: bytes) -> tuple[int, bytes]:
        """:func:`classify` through a memo keyed by the query after its ID, valid while the
        response's flags, RCODE and section counts are the same (a hot network mostly repeats
        its questions). A stale entry after a reload can only pick another bucket."""
        sig = response[2:4] + response[6:10]
        key = query[2:]
        hit = self._classes.get(key)
        if hit is not None and hit[0] == sig:
            return hit[1], hit[2]
        cls, name = classify(response, self.wildcard_zone)
        if len(self._classes) >= _CLASS_MEMO_MAX:
            self._classes.clear()
        self._classes[key] = (sig, cls, name)
        return cls, name

    def _check_response(self, net: int, peer: str, query: bytes, response: bytes, now: float) -> int:
        cls, name = self._classify(query, response) if len(query) <= _CLASS_MEMO_QUERY_MAX else classify(
            response, self.wildcard_zone)
        key = (net, cls, name)
        buckets = self.buckets
        b = buckets.get(key)
        if b is None:
            if len(buckets) >= self.table_size:
                buckets.popitem(last=False)
                self.evicted += 1
            b = buckets[key] = _Bucket(now)
        else:
            buckets.move_to_end(key)
        tat = b.tat
        if tat < now:
            tat = now
        tat += self.intervals[cls]
        cap = self.caps[cls]
        if tat - now > cap:
            tat = now + cap
        b.tat = tat
        if tat - now <= _BURST:
            return ALLOW
        verified = self.verified
        if verified is not None and query[10:12] != b"\x00\x00" and verified(query, peer):
            return ALLOW
        b.limited += 1
        slip = self.slip
        if slip and b.limited % slip == 0 and 0 <= question_end(response) <= len(query):
            self.slipped += 1
            return SLIP
        self.dropped += 1
        return DROP

    def filter(self, peer: str, query: bytes, response: bytes) -> bytes | None:
        """The datagram to send for ``response`` (itself, its slip, or None to drop)."""
        verdict = self.check(peer, query, response)
        if verdict == ALLOW:
            return response
        return slip_reply(response, len(query)) if verdict == SLIP else None

    def sizes(self) -> tuple[int, int]:
        """Entries in the network table and in the response-bucket table."""
        return len(self.nets), len(self.buckets)
