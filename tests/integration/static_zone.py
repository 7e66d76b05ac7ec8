"""A static (no load balancer) two-zone fixture for the black-box protocol, transport and
flood tests: every RFC 1034/2308/4592 corner a plain authoritative server must get right.

``example.com`` (SOA TTL 3600, MINIMUM 300 ⇒ negative TTL 300):

======================  ============================================================
apex                    SOA, NS ns1, MX 10 mail, TXT (short + one of 300 octets)
ns1, mail               A
www                     A 192.0.2.80, AAAA 2001:db8::80
chain-a → chain-b → chain-c   CNAME chain, chain-c A 192.0.2.3
out                     CNAME www.example.org. (outside every served zone)
loop-x ↔ loop-y         CNAME loop
xz                      CNAME target.example.net. (second served zone)
dangling                CNAME nothere.example.com. (NXDOMAIN at the end, RFC 6604)
dangling-net            CNAME missing.example.net.
*.w                     A 192.0.2.77 (wildcard); real.w A 192.0.2.78 (specific name);
                        x.e.w A 192.0.2.79 (so e.w is an empty non-terminal under *.w)
*.cw                    CNAME www.example.com. (wildcard CNAME)
a.b.c                   A 192.0.2.4 (b.c and c are empty non-terminals)
sub                     NS ns.sub.example.com. (delegation) + glue ns.sub A 192.0.2.53
big                     40 A records (does not fit 512 octets)
bigtxt                  12 TXT records of 100 octets
======================  ============================================================

``example.net`` (SOA TTL 120, MINIMUM 900 ⇒ negative TTL 120): apex SOA/NS,
``target`` A 198.51.100.7, ``hop`` CNAME chain-c.example.com. (back into example.com).
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

LONG_TXT = "".join(chr(ord("a") + i % 26) for i in range(300))
BIG_ADDRS = [f"192.0.2.{100 + i}" for i in range(40)]
BIG_TXT = [f"t{i:02d}-" + "x" * 96 for i in range(12)]

COM_SOA = {"mname": "ns1.example.com.", "rname": "hostmaster.example.com.", "serial": 2024010101,
           "refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300, "ttl": 3600}
NET_SOA = {"mname": "ns1.example.com.", "rname": "hostmaster.example.net.", "serial": 7,
           "refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 900, "ttl": 120}

COM_NEG_SOA = ("example.com.", 300, "SOA",
               "ns1.example.com. hostmaster.example.com. 2024010101 7200 3600 1209600 300")
NET_NEG_SOA = ("example.net.", 120, "SOA",
               "ns1.example.com. hostmaster.example.net. 7 7200 3600 1209600 900")


def _rec(rtype: str, *values: Any, ttl: int = 300) -> dict[str, Any]:
    if len(values) == 1:
        return {"type": rtype, "ttl": ttl, "value": values[0]}
    return {"type": rtype, "ttl": ttl, "values": list(values)}


def com_zone() -> dict[str, Any]:
    """The ``example.com`` zone file content."""
    return {
        "zone": "example.com",
        "soa": dict(COM_SOA),
        "ns": {"ttl": 3600, "values": ["ns1.example.com."]},
        "records": {
            "": [_rec("MX", "10 mail.example.com.", ttl=3600), _rec("TXT", "v=spf1 -all", LONG_TXT, ttl=3600)],
            "ns1": _rec("A", "192.0.2.1", ttl=3600),
            "mail": _rec("A", "192.0.2.25"),
            "www": [_rec("A", "192.0.2.80"), _rec("AAAA", "2001:db8::80")],
            "chain-a": _rec("CNAME", "chain-b.example.com."),
            "chain-b": _rec("CNAME", "chain-c.example.com."),
            "chain-c": _rec("A", "192.0.2.3"),
            "out": _rec("CNAME", "www.example.org."),
            "loop-x": _rec("CNAME", "loop-y.example.com."),
            "loop-y": _rec("CNAME", "loop-x.example.com."),
            "xz": _rec("CNAME", "target.example.net."),
            "dangling": _rec("CNAME", "nothere.example.com."),
            "dangling-net": _rec("CNAME", "missing.example.net."),
            "*.w": _rec("A", "192.0.2.77"),
            "real.w": _rec("A", "192.0.2.78"),
            "x.e.w": _rec("A", "192.0.2.79"),
            "*.cw": _rec("CNAME", "www.example.com."),
            "a.b.c": _rec("A", "192.0.2.4"),
            "sub": _rec("NS", "ns.sub.example.com.", ttl=3600),
            "ns.sub": _rec("A", "192.0.2.53", ttl=3600),
            "big": _rec("A", *BIG_ADDRS),
            "bigtxt": _rec("TXT", *BIG_TXT),
        },
    }


def net_zone() -> dict[str, Any]:
    """The ``example.net`` zone file content."""
    return {
        "zone": "example.net",
        "soa": dict(NET_SOA),
        "ns": {"ttl": 3600, "values": ["ns1.example.com."]},
        "records": {
            "target": _rec("A", "198.51.100.7"),
            "hop": _rec("CNAME", "chain-c.example.com."),
        },
    }


def write_static_zones(directory: Path) -> Path:
    """Write both zones under ``directory/zones``; returns that directory."""
    zones = directory / "zones"
    zones.mkdir(parents=True, exist_ok=True)
    (zones / "example.com.yaml").write_text(yaml.safe_dump(com_zone(), sort_keys=False))
    (zones / "example.net.yaml").write_text(yaml.safe_dump(net_zone(), sort_keys=False))
    return zones


# ---------------------------------------------------------------------------------------------
# Raw socket helpers shared by the protocol, transport and flood tests
# ---------------------------------------------------------------------------------------------

def udp_exchange(data: bytes, port: int, *, host: str = "127.0.0.1", timeout: float = 2.0) -> bytes | None:
    """Send ``data`` as one datagram; the reply bytes, or None when nothing came back in time."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(data, (host, port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` octets (raises ConnectionError on EOF)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"EOF after {len(buf)} of {n} octets")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    """Read one length-prefixed DNS message from a TCP stream (RFC 1035 §4.2.2)."""
    length = int.from_bytes(recv_exact(sock, 2), "big")
    return recv_exact(sock, length)


def tcp_connect(port: int, *, host: str = "127.0.0.1", timeout: float = 3.0) -> socket.socket:
    """A connected TCP socket with a timeout."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def tcp_exchange(data: bytes, port: int, *, host: str = "127.0.0.1", timeout: float = 3.0) -> bytes:
    """Send one framed message on a new connection and return the framed reply's body."""
    with tcp_connect(port, host=host, timeout=timeout) as s:
        s.sendall(len(data).to_bytes(2, "big") + data)
        return recv_frame(s)


def is_closed(sock: socket.socket, timeout: float) -> bool:
    """Whether the peer closed ``sock`` (EOF or reset) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True
