"""Complete answers, black-box over real UDP and TCP sockets: protocol corners (RFC 7873 §5.4
cookie-only queries, RFC 6891 §6.1.1 OPT on FORMERR, RFC 5001 NSID, RFC 8482 ANY at LB names
with rule TTLs), the record types beyond A…PTR, DNAME synthesis (RFC 6672), additional-section
processing (RFC 1034 §4.3.2, RFC 2181 §5.4.1, RFC 9471), health-aware HTTPS/SVCB at LB names
(RFC 9460) and ``max_answers``.

The zone is :func:`answers_zone`; queries go through dnspython, and ``kdig``/``dig`` where the
issue asks for an independent client (skipped when the tool is missing).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rdtypes.svcbbase
import pytest
import yaml

from tests.integration.harness import Server, base_account
from tests.integration.static_zone import tcp_exchange, udp_exchange

COOKIE, NSID = 10, 3
NSID_TEXT = "lbdns-test-pop1"

SOA = {"mname": "ns1.example.com.", "rname": "hostmaster.example.com.", "serial": 2024010101,
       "refresh": 7200, "retry": 3600, "expire": 1209600, "minimum": 300, "ttl": 3600}


def _rec(rtype: str, *values: Any, ttl: int = 300) -> dict[str, Any]:
    if len(values) == 1:
        return {"type": rtype, "ttl": ttl, "value": values[0]}
    return {"type": rtype, "ttl": ttl, "values": list(values)}


ECH = "AAT+DQAA"  # a (tiny) ECHConfigList: 2-octet length prefix + 4 octets, carried opaquely

RECORDS: dict[str, list[tuple[str, str]]] = {
    # owner → (type, presentation RDATA) of every record type beyond A…PTR, compared with dnspython
    "": [("HTTPS", '1 . alpn="h2,h3" ipv4hint=192.0.2.80'), ("HINFO", '"PC" "Linux"')],
    "svc": [("SVCB", f'1 svc-pool.example.com. alpn="h2" port=8443 ech="{ECH}" ipv6hint=2001:db8::1')],
    "alias": [("HTTPS", "0 www.example.com.")],
    "_443._tcp.www": [("TLSA", "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")],
    "host": [("SSHFP", "4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")],
    "naptr": [("NAPTR", '100 10 "S" "SIP+D2U" "" _sip._udp.example.com.')],
    "geo": [("LOC", "52 22 23.000 N 4 53 32.000 E -2.00m 1m 10000m 10m")],
    "_ftp._tcp": [("URI", '10 1 "ftp://ftp.example.com/public"')],
    "dn": [("DNAME", "example.net.")],
    "sub": [("DS", "12345 13 2 " + "ab" * 32)],
}


def answers_zone() -> dict[str, Any]:
    """``example.com``: every supported record type, a DNAME, delegations with glue, MX/SRV
    targets that are ordinary names and load balancers, and LBs with HTTPS/SVCB, a rule and
    ``max_answers``."""
    records: dict[str, Any] = {
        "": [_rec("MX", "10 mail.example.com.", "20 mx-lb.example.com.", ttl=3600)],
        "ns1": _rec("A", "192.0.2.1", ttl=3600),
        "ns2": [_rec("A", "192.0.2.2", ttl=3600), _rec("AAAA", "2001:db8::2", ttl=3600)],
        "mail": [_rec("A", "192.0.2.25"), _rec("AAAA", "2001:db8::25")],
        "www": _rec("A", "192.0.2.80"),
        "_sip._udp": _rec("SRV", "10 60 5060 sip.example.com.", "20 10 5060 mx-lb.example.com."),
        "sip": _rec("A", "192.0.2.60"),
        "longdn": _rec("DNAME", ("x" * 63 + ".") * 3 + "example.net."),
        "sub": [_rec("NS", "ns.sub.example.com.", "ns.other.example.net.", ttl=3600)],
        "ns.sub": _rec("A", "192.0.2.53", ttl=3600),
        "sib": _rec("NS", "ns.sub.example.com.", ttl=3600),  # its glue sits in a sibling delegation
        # 20 in-domain name servers: their glue (required) does not fit 512 octets
        "bigsub": _rec("NS", *(f"ns{i}.bigsub.example.com." for i in range(20)), ttl=3600),
        **{f"ns{i}.bigsub": _rec("A", f"192.0.2.{150 + i}", ttl=3600) for i in range(20)},
        # an MX RRset that fits 512 octets only without its (optional) additional data
        "bigmx": _rec("MX", *(f"{i} mx{i}.example.com." for i in range(12))),
        **{f"mx{i}": _rec("A", f"198.51.100.{i + 1}", f"198.51.100.{i + 101}") for i in range(12)},
    }
    for owner, items in RECORDS.items():
        entries = records.setdefault(owner, [])
        if isinstance(entries, dict):
            entries = records[owner] = [entries]
        for rtype, text in items:
            entries.append(_rec(rtype, text, ttl=3600 if rtype == "DS" else 300))
    return {
        "zone": "example.com",
        "soa": dict(SOA),
        "ns": {"ttl": 3600, "values": ["ns1.example.com.", "ns2.example.com."]},
        "records": records,
        "load_balancers": {
            "lb": {"default_pools": ["p-mixed"], "fallback_pool": "p-fallback", "steering_policy": "off",
                   "https": {"alpn": ["h2", "h3"], "port": 443, "ech": ECH}, "svcb": {"alpn": ["h2"]}},
            "mx-lb": {"default_pools": ["p-us-east"], "fallback_pool": "p-fallback", "steering_policy": "off",
                      "https": {"alpn": ["h3"]},
                      # reads ECS (ip.src is the ECS address): answers naming mx-lb get SCOPE = SOURCE
                      "rules": [{"name": "never", "condition": "ip.src in {10.0.0.0/8}",
                                 "overrides": {"default_pools": ["p-eu"]}}]},
            "ruled": {"default_pools": ["p-us-east"], "fallback_pool": "p-fallback", "ttl": 30,
                      "rules": [{"name": "any-ttl", "condition": "dns.qry.type eq 255", "overrides": {"ttl": 77}}]},
            "many": {"default_pools": ["p-six"], "fallback_pool": "p-fallback", "max_answers": 2},
            "many3": {"default_pools": ["p-six"], "fallback_pool": "p-fallback"},
        },
    }


def net_zone() -> dict[str, Any]:
    return {
        "zone": "example.net",
        "soa": {**SOA, "rname": "hostmaster.example.net."},
        "ns": {"ttl": 3600, "values": ["ns1.example.com."]},
        "records": {"www": _rec("A", "198.51.100.80"), "ns.other": _rec("A", "198.51.100.53")},
    }


def account() -> dict[str, Any]:
    acc = base_account()
    acc["pools"].append({"name": "p-six", "monitor": "m-http", "max_answers": 3,
                         "origins": [{"name": f"s{i}", "address": f"192.0.2.{200 + i}"} for i in range(6)]})
    return acc


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("answers")
    zones = d / "zones"
    zones.mkdir()
    (zones / "_account.yaml").write_text(yaml.safe_dump(account(), sort_keys=False))
    (zones / "example.com.yaml").write_text(yaml.safe_dump(answers_zone(), sort_keys=False))
    (zones / "example.net.yaml").write_text(yaml.safe_dump(net_zone(), sort_keys=False))
    s = Server(zones, d, geoip=False, nsid=NSID_TEXT)
    yield s
    s.stop()


def ask(srv: Server, name: str, rdtype: str | int = "A", *, tcp: bool = False, edns: int | bool = 0,
        payload: int = 1232, options: list[dns.edns.Option] | None = None, source: str = "127.0.0.1",
        ecs: str | None = None) -> dns.message.Message:
    opts = list(options or [])
    if ecs is not None:
        addr, _, plen = ecs.partition("/")
        opts.append(dns.edns.ECSOption(addr, int(plen)))
    q = dns.message.make_query(name, rdtype, use_edns=edns, payload=payload, options=opts)
    q.flags &= ~dns.flags.RD
    if tcp:
        return dns.query.tcp(q, "127.0.0.1", port=srv.tcp_ports["IAD"], timeout=3, source=source)
    return dns.query.udp(q, "127.0.0.1", port=srv.ports["IAD"], timeout=3, source=source)


def raw(srv: Server, wire: bytes, *, tcp: bool = False) -> tuple[dns.message.Message, bytes]:
    out = tcp_exchange(wire, srv.tcp_ports["IAD"]) if tcp else udp_exchange(wire, srv.ports["IAD"])
    assert out is not None, "no reply"
    assert out[:2] == wire[:2]
    return dns.message.from_wire(out), out


def rrs(section: list[Any]) -> set[tuple[str, int, str, str]]:
    return {(r.name.to_text(), r.ttl, dns.rdatatype.to_text(r.rdtype), rd.to_text()) for r in section for rd in r}


def opt_rr(options: bytes = b"", payload: int = 1232, do: bool = False, version: int = 0) -> bytes:
    return b"\x00" + struct.pack("!HHBBHH", 41, payload, 0, version, 0x8000 if do else 0, len(options)) + options


def option(code: int, data: bytes) -> bytes:
    return struct.pack("!HH", code, len(data)) + data


QUESTION = dns.name.from_text("www.example.com.").to_wire() + struct.pack("!HH", 1, 1)


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/install-system-deps installs it)")
    return path


# --- protocol corners -------------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True])
def test_cookie_only_query_gets_client_and_server_cookie(srv: Server, tcp: bool) -> None:
    """RFC 7873 §5.4: QDCOUNT=0 and an OPT record with only a client COOKIE → NOERROR, an empty
    answer section and a COOKIE option holding the client cookie and a server cookie."""
    client = os.urandom(8)
    wire = struct.pack("!HHHHHH", 0x5454, 0, 0, 0, 0, 1) + opt_rr(option(COOKIE, client))
    m, _ = raw(srv, wire, tcp=tcp)
    assert m.rcode() == dns.rcode.NOERROR
    assert m.flags & dns.flags.QR and m.question == [] and m.answer == [] and m.authority == []
    assert m.edns == 0
    (cookie,) = [o for o in m.options if o.otype == COOKIE]
    assert isinstance(cookie, dns.edns.CookieOption)
    assert cookie.client == client and len(cookie.server) == 8
    # the server cookie sent back is valid: NOERROR again with the same server cookie
    again = struct.pack("!HHHHHH", 0x5455, 0, 0, 0, 0, 1) + opt_rr(option(COOKIE, client + cookie.server))
    m2, _ = raw(srv, again, tcp=tcp)
    assert m2.rcode() == dns.rcode.NOERROR
    assert [o.server for o in m2.options if o.otype == COOKIE] == [cookie.server]
    # a server cookie that is not ours: BADCOOKIE with a fresh valid one (RFC 7873 §5.4)
    bad = struct.pack("!HHHHHH", 0x5456, 0, 0, 0, 0, 1) + opt_rr(option(COOKIE, client + b"\x00" * 8))
    m3, _ = raw(srv, bad, tcp=tcp)
    assert m3.rcode() == dns.rcode.BADCOOKIE
    assert [o.server for o in m3.options if o.otype == COOKIE] == [cookie.server]


def test_cookie_only_query_with_dig(srv: Server) -> None:
    """``dig +header-only +cookie`` sends the RFC 7873 §5.4 query (no question, a client cookie)."""
    dig = tool("dig")
    out = subprocess.run([dig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+header-only", "+cookie", "+norec"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "status: NOERROR" in out and "QUERY: 0" in out, out
    assert "COOKIE: " in out and "(good)" in out, out


@pytest.mark.parametrize("qdcount", [0, 2])
@pytest.mark.parametrize("tcp", [False, True])
def test_edns_query_with_qdcount_not_one_gets_formerr_with_opt(srv: Server, qdcount: int, tcp: bool) -> None:
    """RFC 6891 §6.1.1: a request with an OPT record gets an OPT record in the reply, FORMERR
    included (dig would otherwise say "retry with +noedns")."""
    wire = struct.pack("!HHHHHH", 0x4646, 0x0100, qdcount, 0, 0, 1) + QUESTION * qdcount + opt_rr(do=True)
    m, out = raw(srv, wire, tcp=tcp)
    assert m.rcode() == dns.rcode.FORMERR
    assert m.edns == 0 and m.payload == 1232 and m.ednsflags & dns.flags.DO
    assert m.flags & dns.flags.RD and m.answer == []
    assert len(out) <= len(wire)


def test_edns_version_1_with_qdcount_zero_is_badvers(srv: Server) -> None:
    wire = struct.pack("!HHHHHH", 0x4647, 0, 0, 0, 0, 1) + opt_rr(option(COOKIE, b"c" * 8), version=1)
    m, _ = raw(srv, wire)
    assert m.rcode() == dns.rcode.BADVERS and m.edns == 0


def test_qdcount_zero_without_cookie_is_formerr_with_opt(srv: Server) -> None:
    wire = struct.pack("!HHHHHH", 0x4648, 0, 0, 0, 0, 1) + opt_rr(option(8, b"\x00\x01\x00\x00"))
    m, _ = raw(srv, wire)
    assert m.rcode() == dns.rcode.FORMERR and m.edns == 0


@pytest.mark.parametrize("tcp", [False, True])
def test_nsid_returned_when_asked(srv: Server, tcp: bool) -> None:
    r = ask(srv, "www.example.com", options=[dns.edns.GenericOption(NSID, b"")], tcp=tcp)
    nsid = [o for o in r.options if o.otype == NSID]
    assert len(nsid) == 1 and nsid[0].to_wire() == NSID_TEXT.encode()
    assert r.answer
    # also on error answers (REFUSED outside the zones) and not when not asked
    r = ask(srv, "www.example.org", options=[dns.edns.GenericOption(NSID, b"")])
    assert r.rcode() == dns.rcode.REFUSED and [o.to_wire() for o in r.options if o.otype == NSID] == [
        NSID_TEXT.encode()]
    assert not [o for o in ask(srv, "www.example.com").options if o.otype == NSID]


def test_nsid_with_dig(srv: Server) -> None:
    dig = tool("dig")
    out = subprocess.run([dig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+nsid", "+norec", "www.example.com"],
                         capture_output=True, text=True, timeout=10).stdout
    assert f'NSID: {NSID_TEXT.encode().hex(" ").upper()}' in out or f'("{NSID_TEXT}")' in out, out


def test_nsid_with_kdig(srv: Server) -> None:
    kdig = tool("kdig")
    out = subprocess.run([kdig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+nsid", "www.example.com"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "NSID" in out and NSID_TEXT in out, out


def test_nsid_off_unless_configured(tmp_path: Path) -> None:
    from lbdns.config.settings import ServerSettings

    assert ServerSettings().nsid_wire is None and ServerSettings(nsid="pop-é").nsid_wire == "pop-é".encode()
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "example.net.yaml").write_text(yaml.safe_dump(net_zone(), sort_keys=False))
    s = Server(zones, tmp_path, geoip=False, health="none")
    try:
        q = dns.message.make_query("www.example.net", "A", use_edns=0, options=[dns.edns.GenericOption(NSID, b"")])
        r = dns.query.udp(q, "127.0.0.1", port=s.ports["IAD"], timeout=3)
        assert r.answer and not [o for o in r.options if o.otype == NSID]
    finally:
        s.stop()


@pytest.mark.parametrize("tcp", [False, True])
def test_any_at_lb_name_uses_rule_ttl(srv: Server, tcp: bool) -> None:
    """RFC 8482 HINFO at an LB name with the effective TTL: a matching rule's overrides.ttl."""
    r = ask(srv, "ruled.example.com", "ANY", tcp=tcp)
    assert rrs(r.answer) == {("ruled.example.com.", 77, "HINFO", '"RFC8482" ""')}
    assert {rd.to_text() for rs in ask(srv, "ruled.example.com").answer for rd in rs} == {"192.0.2.10", "192.0.2.11"}
    assert ask(srv, "ruled.example.com").answer[0].ttl == 30  # the rule matches ANY only
    r = ask(srv, "mx-lb.example.com", "ANY", tcp=tcp)  # no rules: the LB ttl
    assert rrs(r.answer) == {("mx-lb.example.com.", 30, "HINFO", '"RFC8482" ""')}


# --- record types -------------------------------------------------------------------------------------


def _expected(owner: str, rtype: str, text: str) -> set[tuple[str, int, str, str]]:
    name = dns.name.from_text(owner, dns.name.from_text("example.com.")) if owner else dns.name.from_text(
        "example.com.")
    rd = dns.rdata.from_text("IN", rtype, text, origin=dns.name.from_text("example.com."), relativize=False)
    return {(name.to_text(), 3600 if rtype == "DS" else 300, rtype, rd.to_text())}


@pytest.mark.parametrize("owner,rtype,text", [(o, t, x) for o, items in RECORDS.items() for t, x in items])
@pytest.mark.parametrize("tcp", [False, True])
def test_record_type_served(srv: Server, owner: str, rtype: str, text: str, tcp: bool) -> None:
    name = f"{owner}.example.com" if owner else "example.com"
    r = ask(srv, name, rtype, tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert rrs(r.answer) == _expected(owner, rtype, text)


def test_any_at_a_name_with_only_a_new_type(srv: Server) -> None:
    r = ask(srv, "host.example.com", "ANY")
    assert [dns.rdatatype.to_text(x.rdtype) for x in r.answer] == ["SSHFP"]


def test_svcb_with_kdig(srv: Server) -> None:
    kdig = tool("kdig")
    out = subprocess.run([kdig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+norec", "svc.example.com", "SVCB"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "status: NOERROR" in out and "SVCB" in out, out
    assert "svc-pool.example.com." in out and "port=8443" in out and "2001:db8::1" in out, out


def test_https_with_dig(srv: Server) -> None:
    dig = tool("dig")
    out = subprocess.run([dig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+norec", "+noall", "+answer",
                          "example.com", "HTTPS"], capture_output=True, text=True, timeout=10).stdout
    assert "HTTPS" in out and 'alpn="h2,h3"' in out and "ipv4hint=192.0.2.80" in out, out


# --- DS at delegations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True])
def test_ds_at_delegation_answered_by_the_parent(srv: Server, tcp: bool) -> None:
    r = ask(srv, "sub.example.com", "DS", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert rrs(r.answer) == _expected("sub", "DS", RECORDS["sub"][0][1])
    # other types at the cut, and DS below it, are referrals
    for name, rdtype in (("sub.example.com", "A"), ("x.sub.example.com", "DS")):
        ref = ask(srv, name, rdtype, tcp=tcp)
        assert not ref.flags & dns.flags.AA and ref.answer == []
        assert [dns.rdatatype.to_text(x.rdtype) for x in ref.authority] == ["NS"]


def test_ds_at_a_delegation_without_ds_is_nodata(srv: Server) -> None:
    r = ask(srv, "sib.example.com", "DS")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA and r.answer == []
    assert [dns.rdatatype.to_text(x.rdtype) for x in r.authority] == ["SOA"]


# --- DNAME (RFC 6672) -------------------------------------------------------------------------------------


@pytest.mark.parametrize("tcp", [False, True])
def test_dname_synthesises_a_cname_and_chases_it(srv: Server, tcp: bool) -> None:
    r = ask(srv, "WWW.dn.example.com", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert [(x.name.to_text(), dns.rdatatype.to_text(x.rdtype)) for x in r.answer] == [
        ("dn.example.com.", "DNAME"), ("WWW.dn.example.com.", "CNAME"), ("www.example.net.", "A")]
    dname, cname, a = r.answer
    assert dname[0].target.to_text() == "example.net." and dname.ttl == 300
    assert cname[0].target.to_text() == "www.example.net." and cname.ttl == dname.ttl  # RFC 6672 §3.1
    assert a[0].to_text() == "198.51.100.80"


def test_dname_to_a_missing_name_is_nxdomain_of_the_target_zone(srv: Server) -> None:
    r = ask(srv, "nope.dn.example.com")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert [dns.rdatatype.to_text(x.rdtype) for x in r.answer] == ["DNAME", "CNAME"]
    assert [x.name.to_text() for x in r.authority] == ["example.net."]


def test_dname_for_qtype_cname_is_not_chased(srv: Server) -> None:
    r = ask(srv, "www.dn.example.com", "CNAME")
    assert [dns.rdatatype.to_text(x.rdtype) for x in r.answer] == ["DNAME", "CNAME"]


def test_dname_owner_itself_is_ordinary_data(srv: Server) -> None:
    assert [dns.rdatatype.to_text(x.rdtype) for x in ask(srv, "dn.example.com", "DNAME").answer] == ["DNAME"]
    r = ask(srv, "dn.example.com", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


def test_dname_substitution_too_long_is_yxdomain(srv: Server) -> None:
    r = ask(srv, "y" * 63 + ".longdn.example.com")
    assert r.rcode() == dns.rcode.YXDOMAIN
    assert [dns.rdatatype.to_text(x.rdtype) for x in r.answer] == ["DNAME"]


# --- additional section (RFC 1034 §4.3.2, RFC 2181 §5.4.1, RFC 9471) --------------------------------------


def additional(msg: dns.message.Message) -> set[tuple[str, str, str]]:
    return {(r.name.to_text(), dns.rdatatype.to_text(r.rdtype), rd.to_text()) for r in msg.additional for rd in r}


EAST = {("mx-lb.example.com.", "A", "192.0.2.10"), ("mx-lb.example.com.", "A", "192.0.2.11")}


@pytest.mark.parametrize("tcp", [False, True])
def test_mx_answer_carries_exchange_addresses_and_steered_lb(srv: Server, tcp: bool) -> None:
    r = ask(srv, "example.com", "MX", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer[0]) == 2
    assert additional(r) == {("mail.example.com.", "A", "192.0.2.25"), ("mail.example.com.", "AAAA", "2001:db8::25"),
                             *EAST}
    lb_ttl = {x.ttl for x in r.additional if x.name.to_text() == "mx-lb.example.com."}
    assert lb_ttl == {30}  # the steered records carry the LB's TTL


def test_steered_additional_follows_health(srv: Server) -> None:
    from lbdns.health.view import OriginState

    srv.set_health({("p-us-east", "e1"): OriginState.UNHEALTHY, ("p-us-east", "e2"): OriginState.UNHEALTHY})
    try:
        r = ask(srv, "example.com", "MX")
        # p-us-east is down: mx-lb answers from the fallback pool, exactly like a direct A query
        direct = {(x.name.to_text(), "A", rd.to_text()) for x in ask(srv, "mx-lb.example.com").answer for rd in x}
        assert direct == {("mx-lb.example.com.", "A", "192.0.2.99")}
        assert direct <= additional(r) and not EAST & additional(r)
    finally:
        srv.set_health()


def test_srv_answer_carries_target_addresses(srv: Server) -> None:
    r = ask(srv, "_sip._udp.example.com", "SRV")
    assert additional(r) == {("sip.example.com.", "A", "192.0.2.60"), *EAST}


def test_apex_ns_answer_carries_name_server_addresses(srv: Server) -> None:
    r = ask(srv, "example.com", "NS")
    assert additional(r) == {("ns1.example.com.", "A", "192.0.2.1"), ("ns2.example.com.", "A", "192.0.2.2"),
                             ("ns2.example.com.", "AAAA", "2001:db8::2")}


def test_additional_ecs_scope_follows_the_steered_lb(srv: Server) -> None:
    r = ask(srv, "example.com", "MX", ecs="192.0.2.0/24")
    (ecs,) = [o for o in r.options if isinstance(o, dns.edns.ECSOption)]
    assert ecs.scopelen == 24  # mx-lb's rule reads ip.src = the ECS address
    assert additional(r) >= EAST
    r = ask(srv, "example.com", "NS", ecs="192.0.2.0/24")  # no LB involved: scope 0
    (ecs,) = [o for o in r.options if isinstance(o, dns.edns.ECSOption)]
    assert ecs.scopelen == 0


@pytest.mark.parametrize("tcp", [False, True])
def test_referral_carries_in_domain_and_sibling_glue(srv: Server, tcp: bool) -> None:
    r = ask(srv, "www.sub.example.com", tcp=tcp)
    assert not r.flags & dns.flags.AA and r.answer == []
    assert additional(r) == {("ns.sub.example.com.", "A", "192.0.2.53")}  # ns.other.example.net: not glue here
    r = ask(srv, "sib.example.com", "A", tcp=tcp)
    assert additional(r) == {("ns.sub.example.com.", "A", "192.0.2.53")}  # sibling glue (RFC 9471 §2.2)


def test_optional_additional_dropped_before_truncation(srv: Server) -> None:
    r = ask(srv, "bigmx.example.com", "MX", edns=False)
    assert not r.flags & dns.flags.TC and len(r.answer[0]) == 12
    full = ask(srv, "bigmx.example.com", "MX", tcp=True)
    assert len(additional(full)) == 24
    assert len(additional(r)) < 24 and additional(r) <= additional(full)  # whole RRsets kept while they fit
    assert len(r.to_wire()) <= 512


def test_required_glue_that_does_not_fit_truncates(srv: Server) -> None:
    r = ask(srv, "x.bigsub.example.com", edns=False)
    assert r.flags & dns.flags.TC and r.authority == [] and r.additional == []
    t = ask(srv, "x.bigsub.example.com", tcp=True)
    assert len(additional(t)) == 20 and not t.flags & dns.flags.TC


# --- health-aware HTTPS/SVCB at LB names (RFC 9460) --------------------------------------------------------


def service(msg: dns.message.Message, rdtype: str = "HTTPS") -> Any:
    (rrset,) = [x for x in msg.answer if dns.rdatatype.to_text(x.rdtype) == rdtype]
    (rd,) = list(rrset)
    return rrset, rd


def plain(rd: Any) -> str:
    return str(rd.to_text()).replace('"', "")


def hints(rd: Any, key: int) -> set[str]:
    param = rd.params.get(dns.rdtypes.svcbbase.ParamKey(key))
    return set() if param is None else {str(a) for a in param.addresses}


@pytest.mark.parametrize("tcp", [False, True])
def test_https_at_lb_carries_the_steered_addresses(srv: Server, tcp: bool) -> None:
    r = ask(srv, "lb.example.com", "HTTPS", tcp=tcp)
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    rrset, rd = service(r)
    assert rrset.name.to_text() == "lb.example.com." and rrset.ttl == 30
    assert rd.priority == 1 and rd.target == dns.name.root  # ServiceMode, the LB name itself
    a = {x.to_text() for rs in ask(srv, "lb.example.com", "A").answer for x in rs}
    aaaa = {x.to_text() for rs in ask(srv, "lb.example.com", "AAAA").answer for x in rs}
    assert hints(rd, 4) == a == {"192.0.2.50"} and hints(rd, 6) == aaaa == {"2001:db8::50", "2001:db8::51"}
    assert plain(rd).startswith(f"1 . alpn=h2,h3 port=443 ipv4hint=192.0.2.50 ech={ECH} ipv6hint=2001:db8::5")


def test_https_hints_follow_health(srv: Server) -> None:
    from lbdns.health.view import OriginState

    srv.set_health({("p-mixed", "m6a"): OriginState.UNHEALTHY})
    try:
        _, rd = service(ask(srv, "lb.example.com", "HTTPS"))
        assert hints(rd, 4) == {"192.0.2.50"} and hints(rd, 6) == {"2001:db8::51"}
        srv.set_health({(p, o): OriginState.UNHEALTHY for p, o in (("p-mixed", "m4"), ("p-mixed", "m6a"),
                                                                   ("p-mixed", "m6b"))})
        _, rd = service(ask(srv, "lb.example.com", "HTTPS"))  # every pool down: the fallback pool
        assert hints(rd, 4) == {"192.0.2.99"} and hints(rd, 6) == set()
    finally:
        srv.set_health()


def test_https_answers_repeat_identically_through_the_packet_memo(srv: Server) -> None:
    seen = set()
    for _ in range(8):
        _, rd = service(ask(srv, "lb.example.com", "HTTPS", edns=False))
        assert hints(rd, 4) == {"192.0.2.50"} and hints(rd, 6) == {"2001:db8::50", "2001:db8::51"}
        seen.add(rd.to_text())
    assert len(seen) <= 2  # the two rotations of the IPv6 hints


def test_https_ecs_scope_is_that_of_the_a_answer(srv: Server) -> None:
    r = ask(srv, "mx-lb.example.com", "HTTPS", ecs="198.51.100.0/24")
    a = ask(srv, "mx-lb.example.com", "A", ecs="198.51.100.0/24")
    scope = [[o.scopelen for o in m.options if isinstance(o, dns.edns.ECSOption)] for m in (r, a)]
    assert scope == [[24], [24]]
    _, rd = service(r)
    assert hints(rd, 4) == {"192.0.2.10", "192.0.2.11"} and plain(rd).startswith("1 . alpn=h3 ipv4hint=")


def test_svcb_at_lb(srv: Server) -> None:
    rrset, rd = service(ask(srv, "lb.example.com", "SVCB"), "SVCB")
    assert plain(rd).startswith("1 . alpn=h2 ipv4hint=192.0.2.50 ipv6hint=2001:db8::5")
    assert rrset.ttl == 30


def test_https_at_lb_without_https_config_is_nodata(srv: Server) -> None:
    r = ask(srv, "many.example.com", "HTTPS")
    assert r.rcode() == dns.rcode.NOERROR and r.answer == []


def test_https_at_lb_with_kdig(srv: Server) -> None:
    kdig = tool("kdig")
    out = subprocess.run([kdig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+norec", "lb.example.com", "HTTPS"],
                         capture_output=True, text=True, timeout=10).stdout
    assert "status: NOERROR" in out and "HTTPS" in out, out
    assert "ipv4hint=192.0.2.50" in out and "2001:db8::51" in out and "alpn=h2,h3" in out.replace('"', ""), out


def test_svcb_at_lb_with_dig(srv: Server) -> None:
    dig = tool("dig")
    out = subprocess.run([dig, "@127.0.0.1", "-p", str(srv.ports["IAD"]), "+norec", "+noall", "+answer",
                          "lb.example.com", "SVCB"], capture_output=True, text=True, timeout=10).stdout
    assert "SVCB" in out and "ipv4hint=192.0.2.50" in out and "2001:db8::50" in out, out


# --- max_answers -------------------------------------------------------------------------------------------


def _a(srv: Server, name: str, source: str) -> frozenset[str]:
    return frozenset(x.to_text() for rs in ask(srv, name, source=source).answer for x in rs)


def test_max_answers_caps_and_is_stable_per_resolver_network(srv: Server) -> None:
    from tests.integration.harness import iter_sources

    assert len(_a(srv, "many3.example.com", "127.0.0.1")) == 3  # the pool's max_answers
    subsets = {}
    for i, source in enumerate(iter_sources(40, "127.18.0.0")):
        net = f"127.18.{i}.9"  # one address in each of 40 /24s
        first = _a(srv, "many.example.com", net)
        assert len(first) == 2  # the LB's max_answers (smaller than the pool's)
        assert _a(srv, "many.example.com", net) == first  # stable for a resolver...
        assert _a(srv, "many.example.com", f"127.18.{i}.77") == first  # ...and its whole /24
        subsets[source] = first
    everyone = set().union(*subsets.values())
    assert everyone == {f"192.0.2.{200 + i}" for i in range(6)}  # networks spread over every origin
    assert len(set(subsets.values())) > 3


def test_max_answers_never_returns_unhealthy_origins(srv: Server) -> None:
    from lbdns.health.view import OriginState

    srv.set_health({("p-six", "s0"): OriginState.UNHEALTHY, ("p-six", "s1"): OriginState.UNHEALTHY})
    try:
        for i in range(20):
            got = _a(srv, "many.example.com", f"127.19.{i}.1")
            assert len(got) == 2 and not got & {"192.0.2.200", "192.0.2.201"}
    finally:
        srv.set_health()
