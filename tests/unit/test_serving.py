"""Unit tests of the serving plan (lbdns/serving.py) through :meth:`Handler.handle`: the plan's
answers are byte for byte the strict path's for every name, type and query shape of a zone; a
health change or a reload is visible on the very next query; random NXDOMAIN names and
per-location selections stay bounded (docs/architecture.md › The serving plan)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import pytest
import yaml

import lbdns.serving as serving
from lbdns.geo.data import default_regions
from lbdns.geo.location import StaticGeoTable
from lbdns.geo.mmdb import GeoDatabase
from lbdns.health.view import OriginState
from lbdns.server.handler import Handler
from lbdns.server.state import Current, StateRef
from tests.fixtures.geo import BASE_GEO_TABLE, BASE_POPS
from tests.fixtures.snapshots import Built, build, build_dir, healthy
from tests.integration.harness import Fixture
from tests.integration.static_zone import COM_SOA, com_zone, net_zone, write_static_zones

IAD = BASE_POPS["IAD"]
PEER = "198.51.100.5"
GEO = StaticGeoTable.from_mapping(BASE_GEO_TABLE)
EAST = {"192.0.2.10", "192.0.2.11"}
WEST = {"192.0.2.20", "192.0.2.21"}
U = OriginState.UNHEALTHY


def handler(b: Built, seed: int = 1) -> Handler:
    return Handler(StateRef(Current(b.snapshot, healthy(b.snapshot))), geo=GEO.lookup, rng=random.Random(seed),
                   clock=lambda: 1000.0, regions=default_regions())


def mixed_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def shapes(name: str, rdtype: int, rng: random.Random) -> list[bytes]:
    """One query in the shapes resolvers send: no EDNS, EDNS with/without DO, small and large
    payloads, a client cookie with and without a server cookie, ECS v4/v6 and /0, RD set."""
    out = []
    for kw in ({"use_edns": False}, {"use_edns": 0, "payload": 1232}, {"use_edns": 0, "payload": 512},
               {"use_edns": 0, "payload": 4096, "want_dnssec": True},
               {"use_edns": 0, "options": [dns.edns.GenericOption(10, rng.randbytes(8))]},
               {"use_edns": 0, "options": [dns.edns.GenericOption(10, rng.randbytes(24))]},
               {"use_edns": 0, "options": [dns.edns.ECSOption("198.51.100.64", 26)]},
               {"use_edns": 0, "options": [dns.edns.ECSOption("2001:db8::", 56),
                                           dns.edns.GenericOption(10, rng.randbytes(8))]},
               {"use_edns": 0, "options": [dns.edns.ECSOption("0.0.0.0", 0)]}):
        q = dns.message.make_query(mixed_case(name, rng), rdtype, **kw)  # type: ignore[arg-type]
        q.id = rng.randrange(65536)
        if rng.random() < 0.5:
            q.flags &= ~dns.flags.RD
        out.append(q.to_wire())
    return out


def both(h: Handler, wire: bytes, tcp: bool = False) -> tuple[bytes | None, bytes | None]:
    """(the plan's response, the strict path's response) to ``wire``."""
    return h.handle(wire, PEER, tcp, IAD), h.strict(wire, PEER, tcp, IAD, h.ref.current)


def test_static_answers_byte_for_byte_as_the_strict_path(tmp_path: Path) -> None:
    """Every owner name × every type it has (and A, MX, TXT, ANY) plus random names, each in
    every query shape and letter case, over UDP and TCP: the plan answers exactly like the
    strict path, and the plan does answer (most of) them."""
    b = build_dir(write_static_zones(tmp_path))
    h = handler(b)
    rng = random.Random(7)
    asked = 0
    for zone in b.snapshot.zones.values():
        names = [dns.name.from_wire(owner, 0)[0].to_text() for owner in zone.nodes]  # type: ignore[attr-defined]
        names += [f"nx{rng.randrange(10**6)}.{zone.origin_text}" for _ in range(5)]
        for name in names:
            node = zone.nodes.get(dns.name.from_text(name).canonicalize().to_wire())
            types = set(node.rrsets) if node is not None else set()
            for rdtype in types | {1, 15, 16, 255}:
                for wire in shapes(name, rdtype, rng):
                    for tcp in (False, True):
                        plan, strict = both(h, wire, tcp)
                        assert plan == strict, (name, rdtype, wire.hex())
                        asked += 1
    plan = h.ref.current.plan
    assert asked > 500 and len(plan.names) > 20 and plan.below


def test_answers_from_the_plan_not_the_strict_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first query of a name, queries in any case, with cookies or ECS, never reach
    the strict path."""
    b = build_dir(write_static_zones(tmp_path))
    h = handler(b)
    h.handle(dns.message.make_query("www.example.com", "A").to_wire(), PEER, False, IAD)
    monkeypatch.setattr(h, "strict", lambda *a: pytest.fail("strict path taken"))
    rng = random.Random(3)
    for wire in shapes("www.example.com", 1, rng) + shapes(f"x{rng.random()}.example.com", 1, rng):
        assert h.handle(wire, PEER, False, IAD) is not None


def lb(tmp_path: Path, **changes: Any) -> Built:
    fx = Fixture()
    fx.lb.update(changes)
    return build(fx, tmp_path)


def addrs(out: bytes | None) -> set[str]:
    assert out is not None
    return {rd.to_text() for r in dns.message.from_wire(out).answer for rd in r}


def warmed(tmp_path: Path) -> tuple[Built, Handler, bytes]:
    """The base fixture's LB, a handler, and a query for it answered three times (so from the plan)."""
    b = lb(tmp_path)
    h = handler(b)
    wire = dns.message.make_query("lb.example.com", "A").to_wire()
    for _ in range(3):
        assert addrs(h.handle(wire, PEER, False, IAD)) == EAST
    return b, h, wire


def test_health_change_visible_on_the_next_query_through_the_plan(tmp_path: Path) -> None:
    b, h, wire = warmed(tmp_path)
    before = h.ref.current.plan
    assert "IAD" in before.names[wire[12:12 + 20]].by_pop  # answered from the plan
    h.ref.publish_health(healthy(b.snapshot, {("p-us-east", "e1"): U, ("p-us-east", "e2"): U}))
    assert addrs(h.handle(wire, PEER, False, IAD)) == WEST  # the very next query
    assert h.ref.current.plan is not before
    h.ref.publish_health(healthy(b.snapshot))
    assert addrs(h.handle(wire, PEER, False, IAD)) == EAST


def test_plan_kept_while_origin_states_do_not_change(tmp_path: Path) -> None:
    """A health view with new probe details but the same origin states (``states_token``)
    keeps the plan; new states drop it."""
    b, h, _ = warmed(tmp_path)
    plan = h.ref.current.plan
    view = h.ref.current.health
    h.ref.publish_health(type(view)(view.version + 1, view.origins, view.pool_rtt, states_token=view.states_token))
    assert h.ref.current.plan is plan
    h.ref.publish_health(healthy(b.snapshot))
    assert h.ref.current.plan is not plan


def test_reload_visible_on_the_next_query_through_the_plan(tmp_path: Path) -> None:
    _, h, wire = warmed(tmp_path)
    fx = Fixture()
    fx.lb["default_pools"] = ["p-us-west"]
    other = build(fx, tmp_path / "other")
    h.ref.publish_snapshot(other.snapshot, healthy(other.snapshot))
    assert addrs(h.handle(wire, PEER, False, IAD)) == WEST


def test_random_nxdomain_names_are_not_kept(tmp_path: Path) -> None:
    b = build_dir(write_static_zones(tmp_path))
    h = handler(b)
    rng = random.Random(5)
    for _ in range(500):
        name = "".join(rng.choice("abcdefgh") for _ in range(12)) + ".example.com"
        out = h.handle(dns.message.make_query(mixed_case(name, rng), "A").to_wire(), PEER, False, IAD)
        assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.NXDOMAIN
    plan = h.ref.current.plan
    assert len(plan.names) == 0 and len(plan.below) == 1 and len(plan.unnamed) == 1


def test_location_selections_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per-location selections beyond MAX_SELECTIONS drop the located ones (a size cap)."""
    monkeypatch.setattr(serving, "MAX_SELECTIONS", 2)
    b = lb(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"])
    h = handler(b)
    for addr in ("198.51.100.0", "198.51.100.64", "198.51.100.128", "203.0.113.0", "203.0.113.64") * 2:
        wire = dns.message.make_query("lb.example.com", "A", use_edns=0,
                                      options=[dns.edns.ECSOption(addr, 26)]).to_wire()
        assert addrs(h.handle(wire, PEER, False, IAD)) == addrs(h.strict(wire, PEER, False, IAD, h.ref.current))
        assert h.ref.current.plan.selections <= 2


def test_resolver_located_answers_kept_per_resolver_record(tmp_path: Path) -> None:
    """Without ECS the resolver address's GeoIP record is the location class: answers are kept
    per record (not per query bytes), and each resolver still gets its own nearest pool."""
    b = lb(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"],
           location_strategy={"prefer_ecs": "never", "mode": "resolver_ip"})
    h = handler(b)
    wire = dns.message.make_query("lb.example.com", "A").to_wire()
    expected = {"198.51.100.130": {"192.0.2.40"}, "203.0.113.10": {"192.0.2.30", "192.0.2.31"},
                "203.0.113.200": EAST}
    for _ in range(3):
        for peer, want in expected.items():
            assert addrs(h.handle(wire, peer, False, IAD)) == want
    entry = h.ref.current.plan.names[wire[12:12 + 20]]
    assert len(entry.by_resolver["IAD"]) == 3 and not entry.by_pop and not entry.by_location


def test_ecs_without_location_data_kept_per_resolver_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ECS from networks without GeoIP data falls back to the resolver address
    (``mode: resolver_ip``), or the PoP when that has none either: such answers are kept per
    (ECS record, resolver record), so later queries skip the strict path, each resolver still
    gets its own nearest pool, and the scope is the source prefix (RFC 7871 §7.2.1)."""
    b = lb(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"],
           location_strategy={"prefer_ecs": "always", "mode": "resolver_ip"})
    h = handler(b)
    expected = {"198.51.100.130": {"192.0.2.40"}, "203.0.113.10": {"192.0.2.30", "192.0.2.31"},
                "203.0.113.200": EAST}

    def q(addr: str, source: int, qid: int) -> bytes:
        m = dns.message.make_query("lb.example.com", "A", use_edns=0, options=[dns.edns.ECSOption(addr, source)])
        m.id = qid
        return m.to_wire()

    nets = [("203.0.113.192", 26), ("203.0.113.224", 27), ("233.252.0.0", 24)]  # no data
    for rnd in range(3):
        if rnd == 1:
            monkeypatch.setattr(h, "strict", lambda *a: pytest.fail("strict path taken"))
        for i, (addr, source) in enumerate(nets):
            for peer, want in expected.items():
                out = h.handle(q(addr, source, i), peer, False, IAD)
                assert addrs(out) == want, (peer, addr)
                assert out is not None
                (ecs,) = [o for o in dns.message.from_wire(out).options if o.otype == 8]
                assert ecs.scopelen == source  # type: ignore[attr-defined]
    entry = h.ref.current.plan.names[q("0.0.0.0", 0, 0)[12:12 + 20]]
    assert len(entry.by_fallback) == 3 and not entry.by_location and not entry.by_resolver


def test_ecs_queries_differing_only_in_the_address(tmp_path: Path) -> None:
    """Queries that differ only in the ECS address are answered from the kept shape: static
    answers byte for byte as the strict path with each address echoed; LB answers with the
    address's own location and scope; a bit beyond the prefix still gets FORMERR."""
    b = lb(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"])
    h = handler(b)

    def q(name: str, addr: str, qid: int) -> bytes:
        m = dns.message.make_query(name, "A", use_edns=0, options=[dns.edns.ECSOption(addr, 26)])
        m.id = qid
        return m.to_wire()

    for i, addr in enumerate(["198.51.100.0", "198.51.100.64", "198.51.100.128", "203.0.113.0", "203.0.113.64",
                              "203.0.113.192"] * 3):
        for name in ("www.example.com", "lb.example.com"):
            wire = q(name, addr, i)
            plan, strict = both(h, wire)
            assert plan is not None and strict is not None
            if name.startswith("www"):
                assert plan == strict, addr
            else:
                got, want = dns.message.from_wire(plan), dns.message.from_wire(strict)
                assert addrs(plan) == addrs(strict) and got.options == want.options, addr
    assert h.ref.current.plan.ecs_shapes["IAD"]
    bad = bytearray(q("lb.example.com", "198.51.100.64", 1))
    bad[-1] |= 0x01
    out = h.handle(bytes(bad), PEER, False, IAD)
    assert out is not None and dns.message.from_wire(out).rcode() == dns.rcode.FORMERR


def test_letter_case_variants_answered_from_the_packet_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A query kept in the exact-packet table answers the same query in any other letter case
    (0x20), for a static name and an LB, echoing the client's case byte for byte as the strict
    path does, without looking the name up again."""
    b = lb(tmp_path)
    h = handler(b)
    rng = random.Random(5)
    for name in ("lb.example.com", "ns1.example.com"):
        for _ in range(2):  # an LB's first answer comes from the strict path, which teaches the plan
            first = dns.message.make_query(mixed_case(name, rng), "A")
            assert h.handle(first.to_wire(), PEER, False, IAD) is not None
    plan = h.ref.current.plan
    plan.names.clear()  # a lookup by name would now have to resolve the name again
    monkeypatch.setattr(serving, "resolve", lambda *a: pytest.fail("looked up by name"))
    for name in ("lb.example.com", "ns1.example.com"):
        for _ in range(8):
            q = dns.message.make_query(mixed_case(name, rng), "A")
            q.id = rng.randrange(65536)
            out = h.handle(q.to_wire(), PEER, False, IAD)
            assert out is not None
            m = dns.message.from_wire(out)
            assert m.id == q.id and m.question[0].name.to_text() == q.question[0].name.to_text()
            assert out[12:12 + len(q.to_wire()) - 12] == q.to_wire()[12:]  # question echoed as sent


def test_letter_case_variants_of_ecs_queries_answered_from_their_shape(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An ECS query shape kept once answers the same query with another letter case and another
    address, byte for byte as the strict path, without looking the name up again."""
    b = lb(tmp_path)
    h = handler(b)
    rng = random.Random(6)

    def ecs_query(name: str) -> bytes:
        q = dns.message.make_query(mixed_case(name, rng), "A", use_edns=0, payload=1232,
                                   options=[dns.edns.ECSOption(f"203.0.{rng.randrange(256)}.0", 24)])
        q.id = rng.randrange(65536)
        return q.to_wire()

    for name in ("lb.example.com", "ns1.example.com"):
        for _ in range(2):
            assert h.handle(ecs_query(name), PEER, False, IAD) is not None
    queries = [ecs_query(name) for name in ("lb.example.com", "ns1.example.com") for _ in range(8)]
    expected = [h.strict(q, PEER, False, IAD, h.ref.current) for q in queries]
    plan = h.ref.current.plan
    plan.names.clear()
    monkeypatch.setattr(serving, "resolve", lambda *a: pytest.fail("looked up by name"))
    for q, want in zip(queries, expected, strict=True):
        got = h.handle(q, PEER, False, IAD)
        assert got is not None and want is not None
        if b"\x02lb" in q.lower():  # a multi-answer LB: the rotation differs, nothing else
            g, w = dns.message.from_wire(got), dns.message.from_wire(want)
            assert (g.id, g.question[0].name.to_text(), g.options) == (w.id, w.question[0].name.to_text(), w.options)
            qend = q.index(0, 12) + 5
            assert got[12:qend] == q[12:qend] and addrs(got) == addrs(want) == EAST  # the question as sent
        else:
            assert got == want


def edge_zones(tmp_path: Path) -> Path:
    """The static zones plus what a name below an existing one can run into: a child zone with a
    delegation (``child.example.com``), a served zone with no node in its parent
    (``z.deep.example.com``) and a DNAME (``dn.example.net`` → ``w.example.com``)."""
    zones = write_static_zones(tmp_path)
    com = com_zone()
    com["records"]["child"] = {"type": "NS", "ttl": 3600, "value": "ns1.example.com."}
    (zones / "example.com.yaml").write_text(yaml.safe_dump(com, sort_keys=False))
    net = net_zone()
    net["records"]["dn"] = {"type": "DNAME", "ttl": 300, "value": "w.example.com."}
    (zones / "example.net.yaml").write_text(yaml.safe_dump(net, sort_keys=False))
    for origin in ("child.example.com", "z.deep.example.com"):
        child = {"zone": origin, "soa": dict(COM_SOA), "ns": {"ttl": 3600, "values": ["ns1.example.com."]},
                 "records": {"www": {"type": "A", "ttl": 300, "value": "192.0.2.123"}}}
        (zones / f"{origin}.yaml").write_text(yaml.safe_dump(child, sort_keys=False))
    return zones


def q(name: str, rdtype: int | str = "A", qid: int = 1, **kw: Any) -> bytes:
    m = dns.message.make_query(name, rdtype, **kw)
    m.id = qid
    return m.to_wire()


def rcode_and_answer(out: bytes | None) -> tuple[int, list[str], list[str]]:
    """(rcode, answer RRsets, authority RRsets) as text."""
    assert out is not None
    m = dns.message.from_wire(out)
    return m.rcode(), [r.to_text() for r in m.answer], [r.to_text() for r in m.authority]


# (parent, name below it in the zone data, what a name there gets)
EDGES = [
    ("example.com", "b.c.example.com", "NODATA"),   # b.c, c: empty non-terminals
    ("c.example.com", "b.c.example.com", "NODATA"),
    ("w.example.com", "e.w.example.com", "NODATA"),  # an empty non-terminal under *.w
    ("w.example.com", "real.w.example.com", "192.0.2.78"),
    ("example.com", "www.example.com", "192.0.2.80"),
    ("example.com", "child.example.com", "SOA"),    # a child zone's apex (delegated from here)
    ("example.com", "www.child.example.com", "192.0.2.123"),
    ("deep.example.com", "www.z.deep.example.com", "192.0.2.123"),  # a zone with no node in its parent
    ("example.com", "www.z.deep.example.com", "192.0.2.123"),
    ("dn.example.net", "real.dn.example.net", "192.0.2.78"),  # below a DNAME: the name is spelled out
]


def test_names_without_a_node_share_the_answer_below_their_closest_encloser(tmp_path: Path) -> None:
    """Random names one and two labels below existing names get, from the plan, the answer of
    their closest encloser — NXDOMAIN, the wildcard's synthesis (RFC 4592), the referral of a
    delegation above — byte for byte as the strict path, without keeping a name each; then
    the names that do exist below those parents (empty non-terminals: NODATA; a child zone's
    apex and names in it; names below a DNAME) still get their own answers (RFC 1034 §4.3.2)."""
    b = build_dir(edge_zones(tmp_path))
    h = handler(b)
    rng = random.Random(11)
    expect = {"x.example.com": "NXDOMAIN", "x.c.example.com": "NXDOMAIN", "x.w.example.com": "192.0.2.77",
              "x.cw.example.com": "192.0.2.80", "x.sub.example.com": "referral", "x.ns.sub.example.com": "referral",
              "x.deep.example.com": "NXDOMAIN", "x.example.net": "NXDOMAIN", "x.dn.example.net": "192.0.2.77"}
    for i in range(3):
        for name, want in expect.items():
            for rdtype in ("A", "AAAA", "TXT"):
                for deep in ("", "y."):
                    label = f"r{rng.randrange(10**9)}"
                    wire = q(mixed_case(deep + name.replace("x.", label + ".", 1), rng), rdtype, i,
                             use_edns=0 if i else False)
                    plan, strict = both(h, wire)
                    assert plan == strict, (name, rdtype, wire.hex())
                    rcode, answer, authority = rcode_and_answer(plan)
                    if want == "NXDOMAIN":
                        assert rcode == dns.rcode.NXDOMAIN and not answer, name
                    elif want == "referral":
                        assert not answer and "NS" in authority[0], name
                    elif rdtype == "A":
                        assert want in answer[-1], name
    plan_ = h.ref.current.plan
    assert not plan_.names or all(b"\x01r" not in k and b"\x01Y" not in k for k in plan_.names)
    # one per (parent, type), not per name; none where the answer depends on the name (below a
    # DNAME) or the zone could change (deep.example.com: a served zone lies below it)
    kept = {"example.com", "c.example.com", "w.example.com", "cw.example.com", "sub.example.com",
            "ns.sub.example.com", "example.net"}
    assert sorted(plan_.below) == sorted(dns.name.from_text(p).to_wire() + t for p in kept
                                         for t in (b"\x00\x01\x00\x01", b"\x00\x1c\x00\x01", b"\x00\x10\x00\x01"))
    for parent, name, want in EDGES:
        for rdtype in ("A", "TXT", "SOA"):
            wire = q(mixed_case(f"r{rng.randrange(10**9)}.{parent}", rng), rdtype)  # the parent is kept
            assert both(h, wire)[0] == both(h, wire)[1]
            wire = q(mixed_case(name, rng), rdtype, use_edns=0)
            plan, strict = both(h, wire)
            assert plan == strict, (name, rdtype)
            rcode, answer, authority = rcode_and_answer(plan)
            assert rcode == dns.rcode.NOERROR, (name, rdtype)
            if want == "SOA":  # the child zone answers at its apex
                assert (rdtype == "SOA") == bool(answer) and (not answer or " SOA " in answer[0]), (name, rdtype)
            elif want == "NODATA" or rdtype != "A":
                assert not answer or "DNAME" in answer[0], (name, rdtype)
            else:
                assert want in answer[-1], (name, rdtype)


def test_random_names_are_answered_without_resolving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a parent's answer is kept, random names below it (NXDOMAIN, wildcard, referral),
    one or more labels deep, and random unassigned QTYPEs at an existing name (NODATA) cost
    no resolve() and keep nothing per name; the counters see each query's own QTYPE."""
    b = build_dir(write_static_zones(tmp_path))
    h = handler(b)
    for name, rdtype in [(f"r.{p}", t) for p in ("example.com", "w.example.com", "sub.example.com")
                         for t in ("A", "AAAA")] + [("www.example.com", 4321)]:
        h.handle(q(name, rdtype), PEER, False, IAD)
    plan = h.ref.current.plan
    kept = len(plan.names)
    monkeypatch.setattr(serving, "resolve", lambda *a: pytest.fail("resolve() called"))
    monkeypatch.setattr(h, "strict", lambda *a: pytest.fail("strict path taken"))
    h.counters.queries.clear()
    rng = random.Random(2)
    for i in range(200):
        label = f"n{rng.randrange(10**9)}"
        for name in (f"{label}.example.com", f"{label}.x.example.com", f"{label}.w.example.com",
                     f"{label}.sub.example.com"):
            out = h.handle(q(mixed_case(name, rng), "AAAA" if i % 2 else "A", i, use_edns=0), PEER, False, IAD)
            assert out is not None
        out = h.handle(q("www.example.com", rng.randrange(1000, 30000), i), PEER, False, IAD)
        assert rcode_and_answer(out) == (0, [], [rcode_and_answer(out)[2][0]]) and "SOA" in rcode_and_answer(out)[2][0]
    assert len(plan.names) == kept and not plan.packets.get("IAD") and len(plan.below) <= 8
    assert h.counters.queries[("udp", 28, dns.rcode.NXDOMAIN)] == 200  # AAAA: 100 × 2 names
    assert h.counters.queries[("udp", 1, dns.rcode.NXDOMAIN)] == 200
    assert h.counters.queries[("udp", -1, dns.rcode.NOERROR)] == 200  # the random QTYPEs (bucket "other")


@pytest.mark.parametrize("one_bucket", [False, True])
def test_random_qtypes_answered_nodata_only_where_the_node_has_no_data(tmp_path: Path, one_bucket: bool) -> None:
    """NODATA kept for random QTYPEs at a name never answers a QTYPE the name has data for,
    a load balancer's, ANY, CNAME or DS, nor one counted apart: each is the strict path's
    answer and counted under its own QTYPE. ``one_bucket``: a counter table that counts every
    QTYPE alike (so only the node's data keeps them apart)."""
    fx = Fixture()
    fx.zone["records"]["lb"] = {"type": "TXT", "ttl": 300, "value": "beside"}
    b = build(fx, tmp_path)
    h = handler(b)
    if one_bucket:
        cur = h.ref.current
        h.ref.current = Current(cur.snapshot, cur.health, serving.ServingPlan(cur.snapshot, cur.health, [-1] * 65536))
    rng = random.Random(4)
    for rdtype in (3000, 2000, "TXT", "A", "AAAA", "CNAME", "ANY", "DS", "NS", "SOA", "MX", 4243, 65535):
        for name in ("lb.example.com", "example.com", "ns1.example.com"):
            wire = q(mixed_case(name, rng), rdtype, use_edns=0)
            plan, strict = both(h, wire)
            if rdtype in ("A", "AAAA", "CNAME") and name.startswith("lb"):
                assert addrs(plan) == addrs(strict), (name, rdtype)
            else:
                assert plan == strict, (name, rdtype)
    assert h.ref.current.plan.nodata
    if not one_bucket:  # each query counted twice (plan and strict path), under its own QTYPE
        assert h.counters.queries[("udp", 15, 0)] == 2 * 3 and h.counters.queries[("udp", -1, 0)] == 2 * 3 * 4


def test_names_below_a_load_balancer_wildcard_are_steered(tmp_path: Path) -> None:
    """Below a wildcard load balancer the names get the LB's answer for its types, and the
    plan's shared answer only for the others (NODATA for TXT)."""
    fx = Fixture()
    fx.zone["load_balancers"]["*.lbw"] = dict(fx.lb)
    b = build(fx, tmp_path)
    h = handler(b)
    rng = random.Random(8)
    for i in range(20):
        for rdtype in ("TXT", "A"):
            wire = q(f"r{rng.randrange(10**6)}.lbw.example.com", rdtype, i)
            plan, strict = both(h, wire)
            if rdtype == "A":
                assert addrs(plan) == addrs(strict) == EAST
            else:
                assert plan == strict and rcode_and_answer(plan)[:2] == (0, [])


def equal_record_networks(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` pairs of /24 addresses (packed) in two different GeoLite2-City networks whose
    records are equal (same location data and prefix length)."""
    rng = random.Random(21)
    seen: dict[Any, bytes | None] = {}
    pairs: list[tuple[bytes, bytes]] = []
    with GeoDatabase.default(cache_size=0) as g:
        while len(pairs) < count:
            addr = rng.getrandbits(24).to_bytes(3, "big") + b"\x00"
            rec = g.lookup(addr)
            if rec is None or not rec.has_coordinates or rec.prefix_len > 24:
                continue
            other = seen.setdefault(dataclasses.astuple(rec), addr)
            shift = 32 - rec.prefix_len
            if other is not None and int.from_bytes(other, "big") >> shift != int.from_bytes(addr, "big") >> shift:
                pairs.append((other, addr))
                seen[dataclasses.astuple(rec)] = None  # each record in one pair only
    return pairs


def test_ecs_from_a_new_network_with_a_known_location_costs_one_lookup(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A query whose ECS network is new but whose GeoIP record equals one already seen is
    answered from the plan with one GeoIP lookup (same answer and scope as the strict path);
    a query the plan leaves to the strict path looks its address up once in all."""
    b = lb(tmp_path, steering_policy="proximity", default_pools=["p-us-east", "p-us-west", "p-eu", "p-asia"])
    db = GeoDatabase.default()
    calls: list[object] = []

    def geo(ip: object) -> object:
        calls.append(ip)
        return db.lookup(ip)  # type: ignore[arg-type]

    h = Handler(StateRef(Current(b.snapshot, healthy(b.snapshot))), geo=geo, rng=random.Random(1),
                regions=default_regions())
    strict = h.strict
    strict_calls = []

    def counted(*a: Any) -> Any:
        strict_calls.append(a)
        return strict(*a)

    monkeypatch.setattr(h, "strict", counted)
    for i, (seen, new) in enumerate(equal_record_networks(12)):
        cookie = [dns.edns.GenericOption(10, bytes(8))] if i % 2 else []  # not an ECS-only shape
        wires = [q("lb.example.com", "A", i, use_edns=0,
                   options=[dns.edns.ECSOption(str(ipaddress.IPv4Address(a)), 24), *cookie]) for a in (seen, new)]
        del calls[:]
        h.handle(wires[0], PEER, False, IAD)  # a new record: the strict path
        assert len(strict_calls) == 1 and calls == [seen], (i, calls)
        del calls[:], strict_calls[:]
        plan = h.handle(wires[1], PEER, False, IAD)  # another network, an equal record: the plan
        assert not strict_calls and calls == [new]
        want = strict(wires[1], PEER, False, IAD, h.ref.current)
        got, exp = dns.message.from_wire(plan), dns.message.from_wire(want)  # type: ignore[arg-type]
        assert addrs(plan) == addrs(want) and got.options == exp.options
        del strict_calls[:]


def test_shared_negative_tables_are_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parents and nodes kept for random names and QTYPEs stay within MAX_NAMES (emptied
    when full), and answers stay the strict path's."""
    monkeypatch.setattr(serving, "MAX_NAMES", 3)
    b = build_dir(write_static_zones(tmp_path))
    h = handler(b)
    rng = random.Random(9)
    for i in range(60):
        parent = ("example.com", "c.example.com", "w.example.com", "sub.example.com", "example.net")[i % 5]
        for wire in (q(f"r{rng.randrange(10**6)}.{parent}", ("A", "TXT")[i % 2], i),
                     q(("www.example.com", "mail.example.com", "ns1.example.com", "chain-c.example.com")[i % 4],
                       rng.randrange(1000, 30000), i)):
            plan, strict = both(h, wire)
            assert plan == strict
            p = h.ref.current.plan
            assert len(p.below) <= 3 and len(p.nodata) <= 3 and len(p.unnamed) <= 3 and len(p.names) <= 3
