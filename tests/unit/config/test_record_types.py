"""The record-type table (lbdns.config.record_types) is the one list validation and both
importers read."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from lbdns.config.record_types import IMPORT_ORDER, RECORD_TYPES
from lbdns.config.validate import SUPPORTED_TYPES
from lbdns.importers import zonefile


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_every_entry_is_a_dns_type_with_its_mnemonic(name: str) -> None:
    kind = RECORD_TYPES[name]
    assert kind.name == name
    assert dns.rdatatype.to_text(dns.rdatatype.from_text(name)) == name
    assert kind.value_hint and kind.source.startswith("RFC ")


def test_validation_and_import_read_the_same_table() -> None:
    assert {"SOA", *RECORD_TYPES} == SUPPORTED_TYPES
    assert set(zonefile.SUPPORTED) == set(RECORD_TYPES)
    assert list(IMPORT_ORDER)[:2] == ["NS", "DS"]


@pytest.mark.parametrize(("name", "value"), [
    ("MX", {"preference": 10, "exchange": "mail.example.com."}),
    ("SRV", {"priority": 1, "weight": 5, "port": 443, "target": "svc.example.com."}),
    ("CAA", {"flags": 0, "tag": "issue", "value": 'ca.example; "quoted"'}),
])
def test_structured_forms_give_rdata_text(name: str, value: dict[str, object]) -> None:
    structured = RECORD_TYPES[name].structured
    assert structured is not None
    rd = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(name), structured(value))
    assert rd.rdtype == dns.rdatatype.from_text(name)


def test_types_without_a_structured_form_say_so() -> None:
    assert RECORD_TYPES["A"].structured is None
    with pytest.raises(KeyError):
        value = {"preference": 1}
        structured = RECORD_TYPES["MX"].structured
        assert structured is not None
        structured(value)
