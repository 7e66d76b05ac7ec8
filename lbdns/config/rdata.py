"""Record types beyond A, AAAA, CNAME, MX, SRV, TXT, NS, CAA and PTR: HTTPS and SVCB (RFC 9460),
TLSA (RFC 6698), SSHFP (RFC 4255), NAPTR (RFC 3403), DS (RFC 4034), LOC (RFC 1876), HINFO
(RFC 1035 §3.3.2), DNAME (RFC 6672) and URI (RFC 7553).

Their values are presentation-format RDATA text, exactly as in a zone file, turned into wire
form by dnspython when the configuration is loaded (syntax errors are reported at the value by
:mod:`lbdns.config.validate`; every accepted type, with its value form, is one entry of
:mod:`lbdns.config.record_types`). This module adds what a parser cannot see — where a record may
stand in the zone — as located issues: :func:`check_zone_rdata` for records,
:func:`lb_conflicts` for load balancers. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

import dns.name
import dns.rdatatype
import dns.rrset

from lbdns.config.model import LoadBalancer

_DS = dns.rdatatype.DS
_NS = dns.rdatatype.NS
_DNAME = dns.rdatatype.DNAME
_SVCB_TYPES = (dns.rdatatype.HTTPS, dns.rdatatype.SVCB)

Issue = tuple[dns.name.Name, str, str, bool]
"""(owner, code, message, is warning)."""


def check_zone_rdata(rrsets: Mapping[tuple[dns.name.Name, int], dns.rrset.RRset],
                     origin: dns.name.Name) -> list[Issue]:
    """Placement checks of one zone's records (``rrsets`` by (owner, type), owners absolute).

    Returns issues in owner order: a DS RRset that is not at a delegation point (DS is the
    parent-side record of a cut, RFC 4035 §2.4; ``E-RECORD``); a DNAME RRset of more than one
    record (RFC 6672 §2.4; ``E-RECORD``); data below a DNAME owner (RFC 6672 §2.3: such names
    can never be reached; ``E-NAME``); an HTTPS/SVCB RRset with more than one AliasMode record,
    or mixing AliasMode and ServiceMode records (RFC 9460 §2.4.2: ServiceMode records are then
    ignored; ``W-SVCB`` warning).
    """
    issues: list[Issue] = []
    cuts = {o for (o, t) in rrsets if t == _NS and o != origin}
    dnames = [o for (o, t) in rrsets if t == _DNAME]
    for (owner, rdtype), rrset in sorted(rrsets.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if rdtype == _DS and owner not in cuts:
            why = "; at the zone apex it belongs in the parent zone" if owner == origin else ""
            issues.append((owner, "E-RECORD",
                           f"DS at {owner.to_text()}: a DS RRset must be at a delegation point (a name with an NS "
                           f"RRset below the apex){why} (RFC 4035 §2.4)", False))
        elif rdtype == _DNAME and len(rrset) > 1:
            issues.append((owner, "E-RECORD", "a DNAME RRset holds exactly one record (RFC 6672 §2.4)", False))
        elif rdtype in _SVCB_TYPES:
            aliases = sum(1 for rd in rrset if rd.priority == 0)
            if aliases > 1 or (aliases and aliases < len(rrset)):
                name = dns.rdatatype.to_text(dns.rdatatype.RdataType(rdtype))
                issues.append((owner, "W-SVCB",
                               f"{name} at {owner.to_text()}: an RRset with an AliasMode "
                               "(priority 0) record should hold only that one record; clients ignore the ServiceMode "
                               "records beside it (RFC 9460 §2.4.2)", True))
    reported: set[dns.name.Name] = set()
    for (owner, _rdtype) in sorted(rrsets):
        for dname in dnames:
            if owner != dname and owner.is_subdomain(dname) and owner not in reported:
                reported.add(owner)
                issues.append((owner, "E-NAME",
                               f"{owner.to_text()} lies below the DNAME at {dname.to_text()}: names below a DNAME "
                               "owner cannot hold data (RFC 6672 §2.3)", False))
    return issues


def lb_conflicts(owner: dns.name.Name, lb: LoadBalancer,
                 rrsets: Mapping[tuple[dns.name.Name, int], dns.rrset.RRset]) -> list[str]:
    """Why the load balancer ``lb`` at ``owner`` cannot stand there (``E-LB-NAME`` messages):
    below a DNAME (RFC 6672 §2.3), or an ``https:``/``svcb:`` answer beside an HTTPS/SVCB
    RRset of the same name (two sources for one RRset)."""
    problems: list[str] = []
    for (o, t) in rrsets:
        if t == _DNAME and o != owner and owner.is_subdomain(o):
            problems.append(f"load balancer {owner.to_text()} lies below the DNAME at {o.to_text()} (RFC 6672 §2.3)")
    for key, rdtype in (("https", dns.rdatatype.HTTPS), ("svcb", dns.rdatatype.SVCB)):
        if getattr(lb, key) is not None and (owner, rdtype) in rrsets:
            problems.append(f"load balancer {owner.to_text()} has '{key}:' and an {key.upper()} record of the same "
                            f"name: keep one of them")
    return problems
