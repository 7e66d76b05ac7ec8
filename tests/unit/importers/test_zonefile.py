"""``lbdns import-zone`` (lbdns/importers/zonefile.py): an RFC 1035 master file with every
supported type becomes zone YAML that passes ``load_config`` and that a real lbdns server
answers exactly as dnspython's parse of the original file says (RRset by RRset, TTLs
included), the record types beyond A…PTR (HTTPS, SVCB, TLSA, SSHFP, NAPTR, DS, LOC, HINFO,
DNAME, URI) too; unsupported types are reported on stderr with their owner names and skipped."""

from __future__ import annotations

from pathlib import Path

import dns.flags
import dns.name
import dns.rdatatype
import dns.zone
import pytest

from lbdns.cli import main
from lbdns.config.validate import load_config
from lbdns.importers import ImportFailed
from lbdns.importers.zonefile import import_zone_file, import_zone_text, render_zone, txt_value
from tests.integration.harness import Server

ZONE = r"""$ORIGIN example.org.
$TTL 3600
@           IN SOA ns1 hostmaster ( 2024010101 7200 3600 1209600 300 )
@           NS    ns1
@           NS    ns2.example.net.
@     300   MX    10 mail
@     300   MX    20 mail2.example.net.
@           TXT   "v=spf1 mx -all"
@           CAA   0 issue "letsencrypt.org"
@           CAA   128 iodef "mailto:security@example.org"
@           DNSKEY 257 3 13 mdsswUyr3DPW132mOi8V9xESWE8jTo0dxCjjnopKl+GqJxpVXckHAeF+KkxLbxILfDLUT0rAK9iUzy1L53eKGQ==
ns1         A     192.0.2.1
ns1         AAAA  2001:db8::1
mail  120   A     192.0.2.25
www   60    CNAME web
web         A     192.0.2.80
web         A     192.0.2.81
web   600   AAAA  2001:db8::80
multi       TXT   "part one" "part two" "say \"hi\""
bytes       TXT   "caf\195\169" "\000\255"
quoted      TXT   "\"starts with a quote"
spaced      TXT   " padded "
_sip._udp   SRV   10 60 5060 sip
sip         A     192.0.2.70
80          PTR   web.example.org.
*.preview   A     192.0.2.90
lab   86400 NS    ns1.lab
lab   86400 NS    ns2.example.net.
ns1.lab     A     192.0.2.53
secret.lab  TXT   "occluded by the delegation"
host        SSHFP 1 1 123456789abcdef67890123456789abcdef67890
host        A     192.0.2.100
"""


@pytest.fixture
def zone_file(tmp_path: Path) -> Path:
    path = tmp_path / "example.org.zone"
    path.write_text(ZONE)
    return path


def _write_yaml(tmp_path: Path, text: str) -> Path:
    zones = tmp_path / "zones"
    zones.mkdir(exist_ok=True)
    (zones / "example.org.yaml").write_text(text)
    return zones


def test_import_passes_load_config(zone_file: Path, tmp_path: Path) -> None:
    result = import_zone_file(zone_file)
    zones = _write_yaml(tmp_path, render_zone(result, zone_file.name))
    loaded = load_config(zones)
    (zone,) = loaded.config.zones
    assert zone.origin == dns.name.from_text("example.org.")
    assert (zone.soa.mname, zone.soa.rname, zone.soa.serial, zone.soa.minimum, zone.soa.ttl) == \
        ("ns1.example.org.", "hostmaster.example.org.", 2024010101, 300, 3600)
    assert loaded.config.warnings == ()
    data = result.data
    assert data["ns"] == {"ttl": 3600, "values": ["ns1.example.org.", "ns2.example.net."]}
    assert data["records"]["multi"] == {"type": "TXT", "ttl": 3600, "value": '"part one" "part two" "say \\"hi\\""'}
    assert data["records"]["_sip._udp"]["value"] == {"priority": 10, "weight": 60, "port": 5060,
                                                     "target": "sip.example.org."}
    assert data["records"]["@"][0] == {"type": "MX", "ttl": 300, "values": [
        {"preference": 10, "exchange": "mail.example.org."}, {"preference": 20, "exchange": "mail2.example.net."}]}
    assert "secret.lab" not in data["records"]
    assert result.skipped == {"DNSKEY": ["example.org."]}


def test_served_answers_equal_the_original_zone(zone_file: Path, tmp_path: Path) -> None:
    result = import_zone_file(zone_file)
    zones = _write_yaml(tmp_path, render_zone(result, zone_file.name))
    original = dns.zone.from_file(str(zone_file), relativize=False)
    origin = original.origin
    cut = dns.name.from_text("lab.example.org.")
    srv = Server(zones, tmp_path, geoip=False)
    try:
        checked = 0
        for name, node in original.nodes.items():
            for rds in node.rdatasets:
                rtype = dns.rdatatype.to_text(rds.rdtype)
                resp = srv.query(name.to_text(), rtype, payload=4096)
                if name.is_subdomain(cut):
                    if rtype in ("NS", "A") and name != dns.name.from_text("secret.lab.example.org."):
                        # a referral: the delegation NS RRset in the authority section, AA=0
                        assert not resp.flags & dns.flags.AA
                        ns = resp.get_rrset(resp.authority, cut, rds.rdclass, dns.rdatatype.NS)
                        assert ns is not None and ns.ttl == 86400
                        assert set(ns) == set(original.get_rdataset(cut, "NS"))
                    continue
                got = resp.get_rrset(resp.answer, name, rds.rdclass, rds.rdtype)
                if rtype == "DNSKEY":
                    assert got is None and resp.rcode() == 0  # skipped: NODATA
                    continue
                assert got is not None, f"{name} {rtype} not served"
                assert set(got) == set(rds), f"{name} {rtype}"
                assert got.ttl == rds.ttl, f"{name} {rtype} TTL"
                assert resp.flags & dns.flags.AA
                checked += 1
        assert checked == 21
        # the wildcard synthesises; a TXT with several character-strings keeps them
        resp = srv.query("anything.preview.example.org", "A")
        assert [rd.address for rd in resp.answer[0]] == ["192.0.2.90"]
        resp = srv.query("multi.example.org", "TXT")
        assert resp.answer[0][0].strings == (b"part one", b"part two", b'say "hi"')
        resp = srv.query("bytes.example.org", "TXT")
        assert resp.answer[0][0].strings == ("café".encode(), b"\x00\xff")
        assert origin is not None
    finally:
        srv.stop()


def test_cli_reports_unsupported_types_on_stderr(zone_file: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "zones" / "example.org.yaml"
    assert main(["import-zone", str(zone_file), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "unsupported record type DNSKEY skipped at: example.org." in err
    assert "secret.lab.example.org. TXT: at or below the delegation lab.example.org." in err
    assert "check: ok" in err
    assert out.read_text().startswith("# Zone example.org imported by `lbdns import-zone` from example.org.zone.")
    assert main(["check", str(out.parent)]) == 0
    # an existing file is kept unless --force
    assert main(["import-zone", str(zone_file), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["import-zone", str(zone_file), "--out", str(out), "--force"]) == 0


def test_cli_writes_stdout_without_out(zone_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import-zone", str(zone_file)]) == 0
    out = capsys.readouterr().out
    assert "zone: example.org\n" in out and "records:\n" in out


def test_origin_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "db.example"
    path.write_text("@ 3600 IN SOA ns1 hostmaster 1 7200 3600 1209600 300\n@ 3600 NS ns1\nns1 3600 A 192.0.2.1\n")
    with pytest.raises(ImportFailed, match="--origin"):
        import_zone_file(path)
    result = import_zone_file(path, "example.com")
    assert result.data["zone"] == "example.com"
    assert result.data["records"] == {"ns1": {"type": "A", "ttl": 3600, "value": "192.0.2.1"}}
    assert main(["import-zone", str(path)]) == 2
    assert "--origin" in capsys.readouterr().err
    assert main(["import-zone", str(path), "--origin", "example.com."]) == 0


def test_errors() -> None:
    with pytest.raises(ImportFailed, match="no NS records"):
        import_zone_text("$ORIGIN example.com.\n@ 60 SOA ns1 h 1 2 3 4 5\n")
    with pytest.raises(ImportFailed, match="no SOA"):
        import_zone_text("$ORIGIN example.com.\n@ 60 NS ns1\n")
    with pytest.raises(ImportFailed, match=r"^<string>:\d+: "):
        import_zone_text("$ORIGIN example.com.\n@ 60 A not-an-address\n")
    with pytest.raises(ImportFailed, match="cannot read"):
        import_zone_file("/nonexistent/zone")


def test_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.zone"
    path.write_text("$ORIGIN example.com.\n@ 60 SOA ns1 h 1 2 3 4 5\n@ 60 A not-an-address\n")
    with pytest.raises(ImportFailed, match=rf"^{path}:\d+: "):
        import_zone_file(path)


def test_txt_values() -> None:
    assert txt_value([b"hello world"]) == "hello world"
    assert txt_value([b'"quoted']) == '"\\"quoted"'
    assert txt_value([b"a", b"b"]) == '"a" "b"'
    assert txt_value([b"\xff"]) == '"\\255"'
    assert txt_value([b" x"]) == '" x"'
    assert txt_value([b""]) == ""


ALL_TYPES = r"""$ORIGIN example.org.
$TTL 3600
@           IN SOA ns1 hostmaster ( 2024010101 7200 3600 1209600 300 )
@           NS    ns1
@           HTTPS 1 . alpn="h2,h3" ipv4hint=192.0.2.80,192.0.2.81 ipv6hint=2001:db8::80 ech="AAT+DQAA"
@     600   HINFO "PC" "Linux"
@           LOC   52 22 23.000 N 4 53 32.000 E -2.00m 1m 10000m 10m
ns1         A     192.0.2.1
cdn         HTTPS 0 cdn.provider.example.net.
svc   120   SVCB  1 svc-pool mandatory=alpn,port alpn=h2 port=8443 key65000=\001\002
svc   120   SVCB  2 . alpn=h3 no-default-alpn
_443._tcp.www TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
_25._tcp.mail TLSA 2 0 1 abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789
host        SSHFP 4 2 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
host        SSHFP 1 1 123456789abcdef67890123456789abcdef67890
sip         NAPTR 100 10 "S" "SIP+D2U" "" _sip._udp.example.org.
sip         NAPTR 102 10 "U" "E2U+sip" "!^.*$!sip:info@example.org!" .
lab   86400 NS    ns1.lab
lab   86400 DS    12345 13 2 abababababababababababababababababababababababababababababababab
ns1.lab     A     192.0.2.53
old         DNAME example.net.
_ftp._tcp   URI   10 1 "ftp://ftp.example.org/public"
_ftp._tcp   URI   20 5 "https://ftp.example.org/"
www         A     192.0.2.80
"""


def test_every_record_type_round_trips_rrset_for_rrset(tmp_path: Path) -> None:
    """import-zone → YAML → load_config gives exactly dnspython's RRsets (rdata and TTL), and a
    real server answers each of them identically over UDP."""
    path = tmp_path / "all.zone"
    path.write_text(ALL_TYPES)
    result = import_zone_file(path)
    assert result.skipped == {} and result.warnings == []
    zones = _write_yaml(tmp_path, render_zone(result, path.name))
    (zone,) = load_config(zones).config.zones
    original = dns.zone.from_file(str(path), relativize=False)
    origin = original.origin
    expected = {(name, rds.rdtype): rds for name, node in original.nodes.items() for rds in node.rdatasets
                if not (name == origin and rds.rdtype == dns.rdatatype.SOA)}
    assert set(zone.rrsets) == set(expected)
    for key, rds in expected.items():
        got = zone.rrsets[key]
        assert set(got) == set(rds), key
        assert got.ttl == rds.ttl, key
    types = {dns.rdatatype.to_text(t) for _, t in expected}
    assert {"HTTPS", "SVCB", "TLSA", "SSHFP", "NAPTR", "DS", "LOC", "HINFO", "DNAME", "URI"} <= types
    srv = Server(zones, tmp_path, geoip=False)
    try:
        for (name, rdtype), rds in expected.items():
            if name.is_subdomain(dns.name.from_text("lab.example.org.")) and rdtype != dns.rdatatype.DS:
                continue  # at or below the cut: a referral, not an answer (the DS is the parent's)
            resp = srv.query(name.to_text(), dns.rdatatype.to_text(rdtype), payload=4096)
            got = resp.get_rrset(resp.answer, name, rds.rdclass, rdtype)
            assert got is not None and set(got) == set(rds) and got.ttl == rds.ttl, (name, rdtype)
            assert resp.flags & dns.flags.AA
    finally:
        srv.stop()


def test_data_lbdns_could_not_serve_is_skipped_with_a_warning() -> None:
    result = import_zone_text("""$ORIGIN example.org.
@ 60 SOA ns1 h 1 2 3 4 5
@ 60 NS ns1
@ 60 DS 12345 13 2 abababababababababababababababababababababababababababababababab
old 60 DNAME example.net.
x.old 60 A 192.0.2.1
""")
    assert "@" not in result.data["records"] and "x.old" not in result.data["records"]
    assert result.data["records"]["old"] == {"type": "DNAME", "ttl": 60, "value": "example.net."}
    w = "\n".join(result.warnings)
    assert "example.org. DS: not at a delegation point" in w
    assert "x.old.example.org. A: below the DNAME at old.example.org." in w
