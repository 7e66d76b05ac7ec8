"""The record types lbdns serves from a zone's ``records:`` — one table.

Adding a type is one :class:`RecordType` entry in :data:`RECORD_TYPES` (plus, for a type with
placement rules, a check in :func:`lbdns.config.rdata.check_zone_rdata`): validation, the
value hints of its errors and both importers (``import-zone``, ``import-cloudflare``) read
their lists from here. Text ↔ wire is dnspython's, at load time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


def _mx(value: Mapping[str, Any]) -> str:
    return f"{value['preference']} {value['exchange']}"


def _srv(value: Mapping[str, Any]) -> str:
    return f"{value['priority']} {value['weight']} {value['port']} {value['target']}"


def _caa(value: Mapping[str, Any]) -> str:
    text = str(value["value"]).replace("\\", "\\\\").replace('"', '\\"')
    return f"{value.get('flags', 0)} {value['tag']} \"{text}\""


@dataclass(frozen=True, slots=True)
class RecordType:
    """One record type accepted in ``records``.

    ``name`` is the RFC mnemonic; ``value_hint`` the expected value form, appended to syntax
    errors; ``source`` the RFC that defines the type; ``structured`` turns the octoDNS-style
    mapping form of a value into presentation text (None: text only; raises KeyError on a
    missing field).
    """

    name: str
    value_hint: str
    source: str
    structured: Callable[[Mapping[str, Any]], str] | None = None


_TYPES = (
    # in the order an importer writes an owner's RRsets (delegation first, then addresses)
    RecordType("NS", "a domain name", "RFC 1035 §3.3.11"),
    RecordType("DS", "'KEY-TAG ALGORITHM DIGEST-TYPE HEX' (RFC 4034 §5.3)", "RFC 4034 §5"),
    RecordType("A", "an IPv4 address", "RFC 1035 §3.4.1"),
    RecordType("AAAA", "an IPv6 address", "RFC 3596"),
    RecordType("CNAME", "a domain name", "RFC 1035 §3.3.1"),
    RecordType("MX", "'PREFERENCE EXCHANGE' or {preference, exchange}", "RFC 1035 §3.3.9", _mx),
    RecordType("SRV", "'PRIORITY WEIGHT PORT TARGET' or {priority, weight, port, target}", "RFC 2782", _srv),
    RecordType("TXT", "a string (split into 255-octet character-strings)", "RFC 1035 §3.3.14"),
    RecordType("CAA", "'FLAGS TAG \"VALUE\"' or {flags, tag, value}", "RFC 8659", _caa),
    RecordType("PTR", "a domain name", "RFC 1035 §3.3.12"),
    RecordType("DNAME", "a domain name (RFC 6672)", "RFC 6672"),
    RecordType("HTTPS", "'PRIORITY TARGET [KEY=VALUE …]', e.g. '1 . alpn=\"h2,h3\" ipv4hint=192.0.2.1' (RFC 9460)",
               "RFC 9460"),
    RecordType("SVCB", "'PRIORITY TARGET [KEY=VALUE …]' (RFC 9460)", "RFC 9460"),
    RecordType("TLSA", "'USAGE SELECTOR MATCHING-TYPE HEX', e.g. '3 1 1 0123…' (RFC 6698)", "RFC 6698"),
    RecordType("SSHFP", "'ALGORITHM FP-TYPE HEX', e.g. '4 2 0123…' (RFC 4255)", "RFC 4255"),
    RecordType("NAPTR", "'ORDER PREFERENCE \"FLAGS\" \"SERVICE\" \"REGEXP\" REPLACEMENT' (RFC 3403)", "RFC 3403"),
    RecordType("LOC", "'52 22 23.000 N 4 53 32.000 E -2.00m 1m 10000m 10m' (RFC 1876 §3)", "RFC 1876"),
    RecordType("HINFO", "'\"CPU\" \"OS\"' (RFC 1035 §3.3.2)", "RFC 1035 §3.3.2"),
    RecordType("URI", "'PRIORITY WEIGHT \"URI\"' (RFC 7553)", "RFC 7553"),
)

RECORD_TYPES: Mapping[str, RecordType] = MappingProxyType({t.name: t for t in _TYPES})
"""Every type accepted in ``records`` by mnemonic (SOA is not one: it comes from the ``soa``
key), in importer output order."""

IMPORT_ORDER: Mapping[str, int] = MappingProxyType({name: i for i, name in enumerate(RECORD_TYPES)})
"""Position of each type among an owner's RRsets in imported YAML."""
