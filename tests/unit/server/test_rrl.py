"""Response rate limiting logic (lbdns.server.rrl), driven directly with an injected clock:
classification of responses, token buckets, window, slip, prefixes, exemptions, the table
bound and the slipped reply's size."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

from lbdns.server.rrl import (
    ALLOW,
    DROP,
    ERROR,
    NODATA,
    NXDOMAIN,
    POSITIVE,
    REFERRAL,
    SLIP,
    RateLimiter,
    RrlParams,
    classify,
    question_end,
    slip_reply,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wire_name(text: str) -> bytes:
    return dns.name.from_text(text).to_wire()


def response(qname: str = "www.example.com", qtype: str = "A", *, rcode: int = 0, answers: int = 1,
             aa: bool = True, soa_zone: str | None = None, ns_at: str | None = None, tc: bool = False,
             cname_to: str | None = None) -> bytes:
    qname = qname if qname.endswith(".") else qname + "."
    q = dns.message.make_query(qname, qtype, id=0x2A2A)  # a fixed ID: stable test ids (xdist)
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    if aa:
        r.flags |= dns.flags.AA
    if tc:
        r.flags |= dns.flags.TC
    if cname_to:
        r.answer.append(dns.rrset.from_text(qname, 300, "IN", "CNAME", cname_to))
    for i in range(answers if rcode == 0 and not cname_to else 0):
        rdata = {"A": f"192.0.2.{i + 1}", "AAAA": f"2001:db8::{i + 1}", "TXT": f'"t{i}"'}[qtype]
        r.answer.append(dns.rrset.from_text(qname, 300, "IN", qtype, rdata))
    if soa_zone:
        soa_zone += "."
        r.authority.append(dns.rrset.from_text(soa_zone, 300, "IN", "SOA", f"ns1.{soa_zone} h.{soa_zone} 1 2 3 4 5"))
    if ns_at:
        ns_at += "."
        r.authority.append(dns.rrset.from_text(ns_at, 300, "IN", "NS", f"ns.{ns_at}"))
    return r.to_wire()


def query(qname: str = "www.example.com", qtype: str = "A", **kw: object) -> bytes:
    return dns.message.make_query(qname, qtype, id=0x2A2A, **kw).to_wire()  # type: ignore[arg-type]


def query_for(resp: bytes) -> bytes:
    """The query ``resp`` answers (its question, no EDNS)."""
    return resp[:2] + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + resp[12:question_end(resp)]


# --- classification ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("resp", "cls", "key"), [
    (response(), POSITIVE, wire_name("www.example.com") + b"\x00\x01"),
    (response("WwW.ExAmple.COM"), POSITIVE, wire_name("www.example.com") + b"\x00\x01"),
    (response(qtype="AAAA", answers=0, tc=True), POSITIVE, wire_name("www.example.com") + b"\x00\x1c"),
    (response("nope.example.com", rcode=3, answers=0, soa_zone="example.com"), NXDOMAIN, wire_name("example.com")),
    (response("x.Example.com", rcode=3, cname_to="gone.example.net.", soa_zone="Example.NET"), NXDOMAIN,
     wire_name("example.net")),
    (response(qtype="MX", answers=0, soa_zone="example.com"), NODATA, wire_name("example.com")),
    (response("a.sub.example.com", answers=0, aa=False, ns_at="sub.example.com"), REFERRAL,
     wire_name("sub.example.com")),
    (response(rcode=5, answers=0, aa=False), ERROR, b""),
    (response(rcode=2, answers=0), ERROR, b""),
    (response(rcode=1, answers=0), ERROR, b""),
    (b"\x00\x01\x81\x00\x00\x01", ERROR, b""),  # truncated garbage
    (b"\x00\x01\x81\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01", ERROR, b""),  # pointer loop
])
def test_classify(resp: bytes, cls: int, key: bytes) -> None:
    assert classify(resp) == (cls, key)


# --- token buckets -------------------------------------------------------------------------------------------

def limiter(clock: Clock, **kw: object) -> RateLimiter:
    return RateLimiter(RrlParams(**kw), clock)  # type: ignore[arg-type]


def run(lim: RateLimiter, clock: Clock, n: int, *, peer: str = "192.0.2.1", resp: bytes | None = None,
        every: float = 0.0) -> list[int]:
    resp = resp if resp is not None else response()
    q = query_for(resp)
    out = []
    for _ in range(n):
        out.append(lim.check(peer, q, resp))
        clock.now += every
    return out


@pytest.mark.parametrize(("rate", "n", "allowed"), [(20, 100, 40), (5, 30, 10), (1, 3, 2), (100, 100, 100)])
def test_a_burst_gets_one_second_of_rate_twice(rate: int, n: int, allowed: int) -> None:
    """A new burst from a quiet network: the network bucket's second of rate, then the
    response bucket's (it starts full when the network turns hot)."""
    clock = Clock()
    verdicts = run(limiter(clock, responses_per_second=rate), clock, n)
    assert verdicts.count(ALLOW) == allowed
    assert verdicts[:allowed] == [ALLOW] * allowed


@pytest.mark.parametrize("qps", [5, 10, 19, 20])
def test_a_steady_rate_at_or_below_the_limit_is_never_limited(qps: int) -> None:
    clock = Clock()
    verdicts = run(limiter(clock, responses_per_second=20), clock, qps * 30, every=1.0 / qps)
    assert verdicts == [ALLOW] * len(verdicts)


@pytest.mark.parametrize("qps", [25, 40, 200, 5000])
def test_a_steady_rate_above_the_limit_gets_its_bursts_then_nothing(qps: int) -> None:
    """As BIND: limited responses are debited too, so a sustained rate above the limit drives
    the balance to the floor and keeps it there: after the bursts, only slips go out."""
    clock = Clock()
    rate = 20
    verdicts = run(limiter(clock, responses_per_second=rate), clock, qps * 30, every=1.0 / qps)
    first_limited = verdicts.index(SLIP if verdicts.index(DROP) > verdicts.index(SLIP) else DROP)
    assert 2 * rate <= verdicts.count(ALLOW) <= 2 * rate * qps / (qps - rate) + 1
    last_allowed = len(verdicts) - 1 - verdicts[::-1].index(ALLOW)
    assert last_allowed <= (2 * rate / (qps - rate) + 1) * qps  # nothing once both bursts are spent
    assert first_limited >= 2 * rate
    assert verdicts[last_allowed + 1:].count(SLIP) == pytest.approx((len(verdicts) - last_allowed - 1) / 2, abs=1)


@pytest.mark.parametrize(("slip", "pattern"), [
    (2, [DROP, SLIP, DROP, SLIP]),
    (1, [SLIP, SLIP, SLIP, SLIP]),
    (0, [DROP, DROP, DROP, DROP]),
    (3, [DROP, DROP, SLIP, DROP]),
])
def test_slip_sends_every_nth_limited_response(slip: int, pattern: list[int]) -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=2, slip=slip)
    verdicts = run(lim, clock, 4 + len(pattern))
    assert verdicts == [ALLOW] * 4 + pattern
    assert lim.slipped == pattern.count(SLIP) and lim.dropped == pattern.count(DROP)


def test_window_is_the_longest_penalty_after_a_flood() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=10, window=5)
    run(lim, clock, 10_000, every=0.0001)  # one second at 10,000 qps: debt at the floor (−50)
    clock.now += 4.9
    assert run(lim, clock, 1) != [ALLOW]  # still in debt after 4.9 s of silence
    clock.now += 5.2
    assert run(lim, clock, 1) == [ALLOW]  # recovered within window + 1 s


def test_classes_and_names_have_separate_buckets() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=5)
    assert run(lim, clock, 20).count(ALLOW) == 10
    other = response("api.example.com")
    assert run(lim, clock, 5, resp=other) == [ALLOW] * 5  # another name: its own bucket
    aaaa = response(qtype="AAAA")
    assert run(lim, clock, 5, resp=aaaa) == [ALLOW] * 5  # another type: its own bucket
    nx = [response(f"r{i}.example.com", rcode=3, answers=0, soa_zone="example.com") for i in range(10)]
    assert [lim.check("192.0.2.1", query_for(r), r) for r in nx].count(ALLOW) == 5  # NXDOMAIN: per zone


def test_nxdomain_and_error_rates() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=50, nxdomains_per_second=3, errors_per_second=2)
    nx = response("nope.example.com", rcode=3, answers=0, soa_zone="example.com")
    assert run(lim, clock, 10, resp=nx).count(ALLOW) == 2 + 3  # network burst (lowest rate), then 3
    refused = response(rcode=5, answers=0, aa=False)
    assert run(lim, clock, 10, resp=refused).count(ALLOW) == 2
    assert run(lim, clock, 60).count(ALLOW) == 50


@pytest.mark.parametrize(("params", "a", "b", "same_network"), [
    ({}, "192.0.2.1", "192.0.2.254", True),
    ({}, "192.0.2.1", "192.0.3.1", False),
    ({"ipv4_prefix": 32}, "192.0.2.1", "192.0.2.2", False),
    ({"ipv4_prefix": 16}, "192.0.2.1", "192.0.77.2", True),
    ({}, "2001:db8:0:ff::1", "2001:db8:0:aa::2", True),  # same /56
    ({}, "2001:db8:0:100::1", "2001:db8:0:0::1", False),
    ({"ipv6_prefix": 64}, "2001:db8::1", "2001:db8::ffff", True),
    ({}, "fe80::1%eth0", "fe80::2%eth1", True),
])
def test_client_networks(params: dict[str, int], a: str, b: str, same_network: bool) -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=3, **params)
    run(lim, clock, 6, peer=a)
    assert (run(lim, clock, 1, peer=b) != [ALLOW]) is same_network


def test_ipv4_and_ipv6_networks_never_share_a_bucket() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=1, ipv6_prefix=128)
    run(lim, clock, 2, peer="0.0.0.1")
    assert run(lim, clock, 1, peer="::1") == [ALLOW]


@pytest.mark.parametrize("peer", ["192.0.2.1", "192.0.2.200", "10.1.2.3", "2001:db8::53", "::1"])
def test_exempt_networks_are_never_limited(peer: str) -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=1, exempt=("192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32", "::1"))
    assert run(lim, clock, 1000, peer=peer) == [ALLOW] * 1000
    assert lim.sizes() == (0, 0)


def test_a_verified_source_is_not_limited() -> None:
    clock = Clock()
    seen = []
    good = dns.message.make_query("www.example.com", "A", use_edns=0).to_wire()

    def verified(q: bytes, peer: str) -> bool:
        seen.append(peer)
        return q == good

    lim = RateLimiter(RrlParams(responses_per_second=2), clock, verified)
    assert [lim.check("192.0.2.1", good, response()) for _ in range(10)] == [ALLOW] * 10
    plain = query()  # no additional records: the check is not even asked
    n = len(seen)
    assert [lim.check("192.0.2.1", plain, response()) for _ in range(3)] != [ALLOW] * 3
    assert len(seen) == n


def test_quiet_network_skips_classification_but_limits_exactly_once_hot() -> None:
    """Below the lowest rate only the network bucket is used; above it, per class."""
    clock = Clock()
    lim = limiter(clock, responses_per_second=10)
    names = [response(f"n{i}.example.com") for i in range(5)]
    for i in range(50):  # 5 names, 5 qps together: quiet
        lim.check("192.0.2.1", query_for(names[i % 5]), names[i % 5])
        clock.now += 0.2
    assert lim.sizes() == (1, 0)
    verdicts = [lim.check("192.0.2.1", query_for(names[i % 5]), names[i % 5]) for i in range(100)]  # a burst
    assert lim.sizes()[1] == 5
    assert verdicts.count(ALLOW) <= 10 + 5 * 10  # network burst + one class burst each


def test_tables_are_bounded_and_evict_the_least_recently_used() -> None:
    """Spoofed random sources fill the tables; the flooding network, used every 0.1 s, stays
    (the order is kept to the second) and stays limited."""
    clock = Clock()
    lim = limiter(clock, responses_per_second=1, table_size=100)
    flooder = "198.51.100.7"
    run(lim, clock, 50, peer=flooder)
    for i in range(1000):  # 50 new spoofed networks per second for 20 s
        run(lim, clock, 2, peer=f"10.{i // 256}.{i % 256}.1")
        if i % 5 == 0:
            assert run(lim, clock, 1, peer=flooder) != [ALLOW]
        clock.now += 0.02
    nets, buckets = lim.sizes()
    assert nets <= 100 and buckets <= 100
    assert lim.evicted > 0
    assert lim.network_of(flooder) in lim.nets


def test_an_evicted_network_comes_back_with_its_state() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=1, table_size=100)
    run(lim, clock, 50, peer="198.51.100.7")  # in debt
    for i in range(150):  # pushes it out of the table within the same second
        run(lim, clock, 1, peer=f"10.0.{i}.1")
    assert lim.network_of("198.51.100.7") not in lim.nets
    clock.now += 1.0
    assert run(lim, clock, 1, peer="198.51.100.7") != [ALLOW]  # the cached bucket is put back
    assert lim.network_of("198.51.100.7") in lim.nets and lim.sizes()[0] <= 100


def test_clock_going_backwards_does_not_grant_tokens() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=2)
    run(lim, clock, 5)
    clock.now -= 100
    assert run(lim, clock, 1) != [ALLOW]


# --- the slipped reply ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("q", "resp"), [
    (query(), response()),
    (query("big.example.com", use_edns=0), response("big.example.com", answers=40)),
    (query("x.example.com", "TXT"), response("x.example.com", "TXT", rcode=3, answers=0, soa_zone="example.com")),
], ids=["positive", "large-edns", "nxdomain"])  # the messages carry random IDs: stable ids for xdist
def test_slip_reply_is_tc_with_the_question_only_and_never_longer_than_the_query(q: bytes, resp: bytes) -> None:
    out = slip_reply(resp, len(q))
    assert out is not None and len(out) <= len(q)
    msg = dns.message.from_wire(out)
    src = dns.message.from_wire(resp)
    assert msg.flags & dns.flags.TC and msg.flags & dns.flags.QR
    assert msg.id == src.id and msg.rcode() == src.rcode()
    assert msg.question == src.question and not msg.answer and not msg.authority and not msg.additional


def test_slip_reply_refuses_to_grow() -> None:
    assert slip_reply(response(), 10) is None
    assert slip_reply(b"\x00\x01\x81\x00\x00\x02" + b"\x00" * 6, 100) is None
    assert slip_reply(b"\x00\x01", 100) is None


def test_filter_returns_response_slip_or_nothing() -> None:
    clock = Clock()
    lim = limiter(clock, responses_per_second=1, slip=2)
    q, r = query(), response()
    assert lim.filter("192.0.2.1", q, r) == r
    assert lim.filter("192.0.2.1", q, r) == r
    assert lim.filter("192.0.2.1", q, r) is None
    slipped = lim.filter("192.0.2.1", q, r)
    assert slipped is not None and len(slipped) <= len(q) and slipped[2] & 0x02


def test_classification_memo_follows_the_response() -> None:
    """The same question answered differently (e.g. after a health change) is classified
    again: a positive answer turning into NXDOMAIN moves to the zone's NXDOMAIN bucket."""
    clock = Clock()
    lim = limiter(clock, responses_per_second=3)
    pos = response("x.example.com")
    nx = response("x.example.com", rcode=3, answers=0, soa_zone="example.com")
    q = query_for(pos)
    assert [lim.check("192.0.2.1", q, pos) for _ in range(8)].count(ALLOW) == 6
    assert [lim.check("192.0.2.1", q, nx) for _ in range(5)].count(ALLOW) == 3
    assert sorted(k[1] for k in lim.buckets) == [POSITIVE, NXDOMAIN]
