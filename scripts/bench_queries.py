"""Query files for ``scripts/bench``: the workloads, as dnsperf input, deterministic for a seed.

dnsperf's text format (one ``NAME TYPE`` per line) sends the same bytes for a line every time,
so it cannot carry what real resolvers put in their queries. The resolver-shaped workloads are
therefore written as binary files for ``dnsperf -B`` (the TCP stream format: a 2-byte length
before each DNS message; dnsperf sends them over UDP and sets the message IDs itself):

* random letter case in every query name — "0x20" (draft-vixie-dnsext-dns0x20);
* a DNS cookie (RFC 7873 §4.1): an 8-byte client cookie, no server cookie yet, as a resolver
  sends on first contact; a different one per query, as from many resolvers;
* EDNS Client Subnet (RFC 7871 §6) with a different public /24 per query, drawn from the IPv4
  space outside the special-purpose ranges of RFC 6890;
* random names that do not exist (NXDOMAIN), as in random-subdomain floods.

Every function here is pure apart from the file writer: randomness comes from the
``random.Random`` passed in. Imported by ``scripts/bench.py`` (``scripts/`` is on ``sys.path``
when it runs) and by ``tests/unit/test_bench_queries.py`` (as ``scripts.bench_queries``).
"""

from __future__ import annotations

import random
import string
import struct
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

SPECIAL_PURPOSE_V4 = tuple(IPv4Network(n) for n in (
    "0.0.0.0/8",        # "this network" (RFC 1122)
    "10.0.0.0/8",       # private use (RFC 1918)
    "100.64.0.0/10",    # shared address space (RFC 6598)
    "127.0.0.0/8",      # loopback (RFC 1122)
    "169.254.0.0/16",   # link local (RFC 3927)
    "172.16.0.0/12",    # private use (RFC 1918)
    "192.0.0.0/24",     # IETF protocol assignments (RFC 6890)
    "192.0.2.0/24",     # TEST-NET-1 (RFC 5737)
    "192.88.99.0/24",   # 6to4 relay anycast (RFC 3068)
    "192.168.0.0/16",   # private use (RFC 1918)
    "198.18.0.0/15",    # benchmarking (RFC 2544)
    "198.51.100.0/24",  # TEST-NET-2 (RFC 5737)
    "203.0.113.0/24",   # TEST-NET-3 (RFC 5737)
    "224.0.0.0/4",      # multicast (RFC 5771): not in RFC 6890's table, never a client
    "240.0.0.0/4",      # reserved, with 255.255.255.255/32 limited broadcast (RFC 1112, RFC 919)
))
"""The IPv4 special-purpose address blocks of RFC 6890 §2.2.2 plus multicast: no ECS /24 is drawn
from them."""

EDNS_PAYLOAD = 1232
"""The EDNS UDP payload size resolvers advertise (the DNS Flag Day 2020 value)."""

SIX_SUBNETS = ("81.2.69.0", "89.160.20.0", "175.16.199.0", "216.160.83.0", "133.242.0.0", "200.160.0.0")
"""The rotating ECS /24s of the fixed ``ecs`` workload: networks in six countries (GB, SE, CN, US,
JP, BR) that the GeoLite2-City database locates, so each one steers to a pool by distance."""

STATIC, WWW, API, GEO = "static.example.com", "www.example.com", "api.example.com", "geo.example.net"
"""The names of the example zones (``zones/``) the workloads ask for: ordinary records, a failover
LB, a weighted LB and a proximity LB."""

NX_ZONE = "example.com"
"""The zone under which random (nonexistent) names are asked."""


_SPECIAL_RANGES = tuple((int(b.network_address), int(b.broadcast_address)) for b in SPECIAL_PURPOSE_V4)


def is_public_v4_24(network: int) -> bool:
    """True when the /24 whose first address is ``network`` (a 32-bit int with the low 8 bits
    zero) lies outside every block of :data:`SPECIAL_PURPOSE_V4`."""
    return not any(first <= network <= last for first, last in _SPECIAL_RANGES)


def public_networks(rng: random.Random, count: int) -> list[str]:
    """``count`` different public IPv4 /24s (uniform over the public space), as their first
    address (``"a.b.c.0"``), in draw order. ``count`` must stay well below the ~14 million public
    /24s."""
    seen: set[int] = set()
    out: list[str] = []
    while len(out) < count:
        net = rng.getrandbits(24) << 8
        if net not in seen and is_public_v4_24(net):
            seen.add(net)
            out.append(str(IPv4Address(net)))
    return out


def random_case(name: str, rng: random.Random) -> str:
    """``name`` with each ASCII letter upper- or lower-cased at random (probability 1/2 each),
    as a resolver using 0x20 does (draft-vixie-dnsext-dns0x20 §3). The name is unchanged
    except for letter case."""
    return "".join(c.upper() if c.isalpha() and rng.getrandbits(1) else c.lower() for c in name)


def random_label(rng: random.Random, length: int = 12) -> str:
    """A random DNS label of ``length`` lower-case letters and digits (no existing name of the
    example zones is 12 characters long, so it never exists)."""
    return "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def client_cookie(rng: random.Random) -> bytes:
    """An 8-byte client cookie (RFC 7873 §4.1)."""
    return rng.getrandbits(64).to_bytes(8, "big")


def query(name: str, *, rng: random.Random, rd: bool = True, edns: bool = False, ecs: str | None = None,
          cookie: bytes | None = None) -> bytes:
    """The wire form (RFC 1035 §4.1) of one ``name`` IN A query, with the letter case of ``name``
    kept.

    ``rd``: the RD flag (resolvers querying an authoritative server clear it); ``edns``: an OPT
    record (RFC 6891 §6.1.2) with payload :data:`EDNS_PAYLOAD`, implied by ``ecs`` and ``cookie``;
    ``ecs``: the first address of an IPv4 /24, sent as ECS source prefix 24, scope 0 (RFC 7871 §6);
    ``cookie``: an 8-byte client cookie, no server cookie (RFC 7873 §4). The message ID comes from
    ``rng`` (dnsperf replaces it). Built by hand: dnspython takes ~100 µs a message, too slow for
    hundreds of thousands of them (the unit test parses them with dnspython).
    """
    options = b""
    if ecs is not None:
        options += struct.pack("!HHHBB", 8, 7, 1, 24, 0) + IPv4Address(ecs).packed[:3]
    if cookie is not None:
        options += struct.pack("!HH", 10, len(cookie)) + cookie
    use_edns = edns or bool(options)
    header = struct.pack("!HHHHHH", rng.getrandbits(16), 0x0100 if rd else 0, 1, 0, 0, 1 if use_edns else 0)
    qname = b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.rstrip(".").split(".")) + b"\0"
    out = header + qname + struct.pack("!HH", 1, 1)
    if use_edns:
        out += b"\0" + struct.pack("!HHIH", 41, EDNS_PAYLOAD, 0, len(options)) + options
    return out


def fixed_ecs(rng: random.Random, count: int) -> list[bytes]:
    """``ecs``: ``geo.example.net`` with ECS from :data:`SIX_SUBNETS` in turn (6 messages;
    ``count`` is not used)."""
    return [query(GEO, rng=rng, ecs=net) for net in SIX_SUBNETS]


def case_0x20(rng: random.Random, count: int) -> list[bytes]:
    """``0x20``: ``static.example.com`` with random letter case, otherwise as ``static`` (no EDNS,
    RD set)."""
    return [query(random_case(STATIC, rng), rng=rng) for _ in range(count)]


def cookies(rng: random.Random, count: int) -> list[bytes]:
    """``cookie``: ``static.example.com`` with EDNS, and a different client cookie on each query
    of a random half."""
    return [query(STATIC, rng=rng, edns=True, cookie=client_cookie(rng) if rng.random() < 0.5 else None)
            for _ in range(count)]


def ecs_random(rng: random.Random, count: int) -> list[bytes]:
    """``ecs-random``: ``geo.example.net`` with a different public ECS /24 in every one of the
    ``count`` queries."""
    return [query(GEO, rng=rng, ecs=net) for net in public_networks(rng, count)]


def nxdomain(rng: random.Random, count: int) -> list[bytes]:
    """``nxdomain``: a random 12-character name under ``example.com`` per query, with EDNS."""
    return [query(f"{random_label(rng)}.{NX_ZONE}", rng=rng, edns=True) for _ in range(count)]


MIX_NAMES = ((STATIC, 0.30), (WWW, 0.15), (API, 0.15), (GEO, 0.30))
"""The existing names of the ``mix`` workload and their shares; the remaining 10 % are random
nonexistent names."""


def _mix_name(rng: random.Random) -> str:
    """A name drawn by :data:`MIX_NAMES`, else (10 %) a random name under :data:`NX_ZONE`."""
    r = rng.random()
    for name, share in MIX_NAMES:
        if r < share:
            return name
        r -= share
    return f"{random_label(rng)}.{NX_ZONE}"


def mix(rng: random.Random, count: int) -> list[bytes]:
    """``mix``, resolver-shaped traffic: every query with EDNS, RD clear and random letter case;
    names drawn by :data:`MIX_NAMES` (10 % random nonexistent names); independently a client
    cookie on half of them and a random public ECS /24 on half of them (a different /24 each)."""
    networks = iter(public_networks(rng, count))
    out = []
    for _ in range(count):
        name = _mix_name(rng)
        cookie = client_cookie(rng) if rng.random() < 0.5 else None
        ecs = next(networks) if rng.random() < 0.5 else None
        out.append(query(random_case(name, rng), rng=rng, rd=False, edns=True, ecs=ecs, cookie=cookie))
    return out


@dataclass(frozen=True)
class Workload:
    """One benchmark workload: ``text`` lines for dnsperf's text format, or ``build(rng, count)``
    returning wire messages for a binary (``-B``) file; ``doc`` describes it for ``--help``."""

    name: str
    doc: str
    text: tuple[str, ...] = ()
    build: Callable[[random.Random, int], list[bytes]] | None = None


WORKLOADS = {w.name: w for w in (
    Workload("static", f"{STATIC} A, fixed case (ordinary records)", text=(f"{STATIC} A",)),
    Workload("lb", f"{WWW} A (failover LB, two addresses) and {API} A (weighted LB, one address), "
             "alternating, fixed case", text=(f"{WWW} A", f"{API} A")),
    Workload("ecs", f"{GEO} A (proximity LB) with ECS from 6 /24s in turn, fixed case", build=fixed_ecs),
    Workload("0x20", f"{STATIC} A with random letter case per query (0x20, draft-vixie-dnsext-dns0x20)",
             build=case_0x20),
    Workload("cookie", f"{STATIC} A with EDNS; a different 8-byte client cookie (RFC 7873) on half the "
             "queries",
             build=cookies),
    Workload("ecs-random", f"{GEO} A with a different random public ECS (RFC 7871) /24 per query", build=ecs_random),
    Workload("nxdomain", "a random nonexistent name under example.com per query (NXDOMAIN), EDNS", build=nxdomain),
    Workload("mix", "resolver mix: 0x20 and EDNS on every query, RD clear, a client cookie on half, a random "
             "public ECS /24 on half, 10 % random NXDOMAIN names, the rest static 30 % / LB 30 % / geo 30 %",
             build=mix),
)}
"""Every workload of ``scripts/bench`` by name, in the order they run."""


def write_stream(path: Path, messages: list[bytes]) -> Path:
    """Write ``messages`` to ``path`` in the TCP stream format ``dnsperf -B`` reads (RFC 1035
    §4.2.2 framing: a 2-byte big-endian length before each message). Returns ``path``."""
    path.write_bytes(b"".join(struct.pack("!H", len(m)) + m for m in messages))
    return path


def read_stream(data: bytes) -> list[bytes]:
    """The messages of a TCP-stream file's contents (inverse of :func:`write_stream`)."""
    out = []
    at = 0
    while at < len(data):
        (n,) = struct.unpack_from("!H", data, at)
        out.append(data[at + 2:at + 2 + n])
        at += 2 + n
    return out
