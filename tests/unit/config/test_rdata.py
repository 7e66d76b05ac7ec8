"""Record types beyond A…PTR in zone YAML: syntax errors at the value, placement errors
(DS, DNAME, HTTPS/SVCB beside an LB's ``https:``) at the owner, each ``file:line:col``."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbdns.cli import main

DIGEST = "ab" * 32
ZONE = f"""\
zone: example.org
soa: {{mname: ns1.example.org., rname: hostmaster.example.org.}}
ns: [ns1.example.org.]
records:
  www: {{type: HTTPS, value: '1 . alpn=h2 port=8443'}}
  svc: {{type: SVCB, value: '0 . alpn=h2'}}
  tlsa: {{type: TLSA, value: '3 1 1 zz'}}
  ds-here: {{type: DS, value: '12345 13 2 {DIGEST}'}}
  '': {{type: DS, value: '12345 13 2 {DIGEST}'}}
  dn: {{type: DNAME, value: example.net.}}
  x.dn: {{type: A, value: 192.0.2.1}}
  sub:
    - {{type: NS, value: ns1.example.net.}}
    - {{type: DS, value: '12345 13 2 {DIGEST}'}}
  mixed: {{type: HTTPS, values: ['0 www.example.org.', '1 . alpn=h2']}}
  hex: {{type: SSHFP, value: '4 2 0123'}}
load_balancers:
  y.dn: {{default_pools: [p1], fallback_pool: p1}}
  lb:
    default_pools: [p1]
    fallback_pool: p1
    https: {{alpn: [h2], port: 0, ech: '!!'}}
  lb2: {{default_pools: [p1], fallback_pool: p1, https: {{no_default_alpn: true}}, max_answers: 0}}
  www: {{default_pools: [p1], fallback_pool: p1, https: {{alpn: [h3]}}}}
pools:
  - name: p1
    origins: [{{name: a, address: 192.0.2.10}}]
    max_answers: 100
"""

EXPECTED = [
    "zones/bad.yaml:6:28: records.svc.value: E-RECORD: invalid SVCB value '0 . alpn=h2': parameters in AliasMode "
    "('PRIORITY TARGET [KEY=VALUE …]' (RFC 9460))",
    "zones/bad.yaml:7:29: records.tlsa.value: E-RECORD: invalid TLSA value '3 1 1 zz': Non-hexadecimal digit found "
    "('USAGE SELECTOR MATCHING-TYPE HEX', e.g. '3 1 1 0123…' (RFC 6698))",
    "zones/bad.yaml:8:3: records.ds-here: E-RECORD: DS at ds-here.example.org.: a DS RRset must be at a delegation "
    "point (a name with an NS RRset below the apex) (RFC 4035 §2.4)",
    "zones/bad.yaml:9:3: records[\"\"]: E-RECORD: DS at example.org.: a DS RRset must be at a delegation point "
    "(a name with an NS RRset below the apex); at the zone apex it belongs in the parent zone (RFC 4035 §2.4)",
    "zones/bad.yaml:11:3: records[\"x.dn\"]: E-NAME: x.dn.example.org. lies below the DNAME at dn.example.org.: "
    "names below a DNAME owner cannot hold data (RFC 6672 §2.3)",
    "zones/bad.yaml:16:29: records.hex.value: E-RECORD: invalid SSHFP value '4 2 0123': fingerprint length "
    "inconsistent with fingerprint type ('ALGORITHM FP-TYPE HEX', e.g. '4 2 0123…' (RFC 4255))",
    "zones/bad.yaml:18:3: load_balancers[\"y.dn\"]: E-LB-NAME: load balancer y.dn.example.org. lies below the DNAME "
    "at dn.example.org. (RFC 6672 §2.3)",
    "zones/bad.yaml:22:31: load_balancers.lb.https.port: E-TYPE: Input should be greater than or equal to 1 (got 0)",
    "zones/bad.yaml:22:39: load_balancers.lb.https.ech: E-SVCB: ech must be an ECHConfigList in base64",
    "zones/bad.yaml:23:49: load_balancers.lb2.https: E-SVCB: no_default_alpn needs alpn (RFC 9460 §7.1.1)",
    "zones/bad.yaml:23:94: load_balancers.lb2.max_answers: E-TYPE: Input should be greater than or equal to 1 "
    "(got 0)",
    "zones/bad.yaml:24:3: load_balancers.www: E-LB-NAME: load balancer www.example.org. has 'https:' and an HTTPS "
    "record of the same name: keep one of them",
    "zones/bad.yaml:28:18: pools[0].max_answers: E-TYPE: Input should be less than or equal to 64 (got 100)",
]


def test_record_type_errors_are_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "bad.yaml").write_text(ZONE)
    assert main(["check", str(zones)]) == 1
    out = capsys.readouterr()
    # paths are printed as given: tmp_path/zones/bad.yaml
    assert [ln.removeprefix(f"{tmp_path}/") for ln in out.err.splitlines()[:-1]] == EXPECTED
    assert (f"{tmp_path}/zones/bad.yaml:15:3: records.mixed: warning: W-SVCB: HTTPS at mixed.example.org.: "
            "an RRset with an AliasMode (priority 0) record should hold only that one record; clients ignore the "
            "ServiceMode records beside it (RFC 9460 §2.4.2)") in out.out + out.err

