"""The query files of ``scripts/bench`` (scripts/bench_queries.py): every message parses, and
each workload carries what it claims — 0x20 case, client cookies, public ECS networks, random
nonexistent names, the resolver mix's shares. Parsed with dnspython, independently of the
hand-built wire form."""

from __future__ import annotations

import random
from ipaddress import IPv4Network
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.rdataclass
import dns.rdatatype
import pytest

from scripts.bench_queries import (
    API,
    EDNS_PAYLOAD,
    GEO,
    NX_ZONE,
    STATIC,
    WORKLOADS,
    WWW,
    is_public_v4_24,
    public_networks,
    read_stream,
    write_stream,
)

COUNT = 2000


def build(name: str, seed: int = 1, count: int = COUNT) -> list[dns.message.Message]:
    spec = WORKLOADS[name]
    assert spec.build is not None
    return [dns.message.from_wire(m) for m in spec.build(random.Random(seed), count)]


def ecs_of(m: dns.message.Message) -> dns.edns.ECSOption | None:
    found = [o for o in m.options if isinstance(o, dns.edns.ECSOption)]
    assert len(found) <= 1
    return found[0] if found else None


def cookie_of(m: dns.message.Message) -> dns.edns.CookieOption | None:
    found = [o for o in m.options if isinstance(o, dns.edns.CookieOption)]
    assert len(found) <= 1
    return found[0] if found else None


def qname(m: dns.message.Message) -> str:
    return str(m.question[0].name.to_text(omit_final_dot=True))


def assert_public(ecs: dns.edns.ECSOption) -> None:
    assert (ecs.family, ecs.srclen, ecs.scopelen) == (1, 24, 0)
    net = IPv4Network(f"{ecs.address}/24")
    # the standard library's view of the special-purpose registry, as a second opinion
    assert net.is_global and not net.is_multicast, net


@pytest.mark.parametrize("name", [w.name for w in WORKLOADS.values() if w.build is not None])
def test_every_message_parses_as_one_a_question(name: str) -> None:
    messages = build(name)
    assert messages
    for m in messages:
        assert len(m.question) == 1 and not m.answer and not m.authority
        assert m.question[0].rdtype == dns.rdatatype.A and m.question[0].rdclass == dns.rdataclass.IN
        if m.edns >= 0:
            assert m.edns == 0 and m.payload == EDNS_PAYLOAD


@pytest.mark.parametrize("name", [w.name for w in WORKLOADS.values() if w.build is not None])
def test_files_are_deterministic_for_a_seed(name: str) -> None:
    spec = WORKLOADS[name]
    assert spec.build is not None
    a = spec.build(random.Random(5), 300)
    assert spec.build(random.Random(5), 300) == a
    if name != "ecs":  # six fixed subnets: nothing random but the IDs
        assert spec.build(random.Random(6), 300) != a


def test_stream_format_round_trips(tmp_path: Path) -> None:
    spec = WORKLOADS["mix"]
    assert spec.build is not None
    messages = spec.build(random.Random(1), 100)
    data = write_stream(tmp_path / "q.bin", messages).read_bytes()
    assert read_stream(data) == messages
    assert int.from_bytes(data[:2], "big") == len(messages[0])


def test_0x20_changes_letter_case_but_not_the_name() -> None:
    messages = build("0x20")
    names = [qname(m) for m in messages]
    assert all(n.lower() == STATIC for n in names)
    assert len(set(names)) > COUNT // 2  # 16 letters: 65,536 spellings
    upper = sum(c.isupper() for n in names for c in n)
    letters = sum(c.isalpha() for n in names for c in n)
    assert 0.45 < upper / letters < 0.55
    assert all(m.edns < 0 and m.flags & dns.flags.RD for m in messages)  # otherwise as `static`


def test_cookie_workload_sends_8_byte_client_cookies_on_half() -> None:
    messages = build("cookie")
    cookies = [cookie_of(m) for m in messages]
    sent = [c for c in cookies if c is not None]
    assert 0.45 * COUNT < len(sent) < 0.55 * COUNT
    assert all(len(c.client) == 8 and c.server == b"" for c in sent)
    assert len({c.client for c in sent}) == len(sent)  # as from many resolvers
    assert all(qname(m) == STATIC and m.edns == 0 for m in messages)


def test_ecs_random_sends_a_different_public_24_per_query() -> None:
    messages = build("ecs-random")
    options = [ecs_of(m) for m in messages]
    assert all(o is not None for o in options)
    for o in options:
        assert o is not None
        assert_public(o)
    assert len({o.address for o in options if o is not None}) == COUNT
    assert all(qname(m) == GEO for m in messages)


def test_fixed_ecs_rotates_six_public_subnets() -> None:
    options = [ecs_of(m) for m in build("ecs")]
    assert len(options) == 6 and len({o.address for o in options if o is not None}) == 6
    for o in options:
        assert o is not None
        assert_public(o)


@pytest.mark.parametrize("address", [
    "0.1.2.0", "10.9.8.0", "100.64.0.0", "100.127.255.0", "127.0.0.0", "169.254.1.0", "172.16.0.0",
    "172.31.255.0", "192.0.0.0", "192.0.2.0", "192.88.99.0", "192.168.4.0", "198.18.0.0", "198.19.255.0",
    "198.51.100.0", "203.0.113.0", "224.0.0.0", "239.255.255.0", "240.0.0.0", "255.255.255.0",
])
def test_special_purpose_networks_are_never_drawn(address: str) -> None:
    assert not is_public_v4_24(int(IPv4Network(f"{address}/24").network_address))


@pytest.mark.parametrize("address", ["1.0.0.0", "8.8.8.0", "100.63.255.0", "100.128.0.0", "172.32.0.0",
                                     "192.0.3.0", "198.20.0.0", "223.255.255.0"])
def test_public_networks_next_to_special_ones_are_allowed(address: str) -> None:
    assert is_public_v4_24(int(IPv4Network(f"{address}/24").network_address))


def test_public_networks_are_distinct_and_public() -> None:
    nets = public_networks(random.Random(3), 5000)
    assert len(set(nets)) == 5000
    for n in nets:
        net = IPv4Network(f"{n}/24")
        assert net.is_global and not net.is_multicast and is_public_v4_24(int(net.network_address))


def test_nxdomain_names_are_random_and_nonexistent() -> None:
    names = [qname(m) for m in build("nxdomain")]
    assert len(set(names)) == COUNT
    for n in names:
        label, zone = n.split(".", 1)
        assert zone == NX_ZONE and len(label) == 12 and label.isalnum() and label.islower()


def test_mix_shares() -> None:
    messages = build("mix", count=4000)
    known = {STATIC: 0.30, WWW: 0.15, API: 0.15, GEO: 0.30}
    counts: dict[str, int] = {}
    for m in messages:
        name = qname(m).lower()
        key = name if name in known else "nx"
        counts[key] = counts.get(key, 0) + 1
        assert m.edns == 0 and not m.flags & dns.flags.RD
        if key == "nx":
            assert name.endswith("." + NX_ZONE) and len(name.split(".")[0]) == 12
    for name, share in known.items():
        assert abs(counts[name] / len(messages) - share) < 0.03, (name, counts)
    assert abs(counts["nx"] / len(messages) - 0.10) < 0.02, counts
    spellings = [qname(m) for m in messages if qname(m).lower() == STATIC]
    assert len(set(spellings)) > len(spellings) // 2  # 0x20 on every query
    ecs = [o for o in map(ecs_of, messages) if o is not None]
    cookies = [c for c in map(cookie_of, messages) if c is not None]
    assert 0.46 < len(ecs) / len(messages) < 0.54 and 0.46 < len(cookies) / len(messages) < 0.54
    assert len({o.address for o in ecs}) == len(ecs)
    for o in ecs:
        assert_public(o)
    assert all(len(c.client) == 8 and c.server == b"" for c in cookies)
