"""``lbdns explain``: why the answer to a query is what it is, computed by the same code the
server runs (:func:`lbdns.answer.resolve` with tracing on), with health taken from a
running server's ``/status`` when one is reachable.
"""

from __future__ import annotations

import ipaddress
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from lbdns.answer import Answer, QueryEnv, resolve
from lbdns.config.settings import ServerSettings
from lbdns.config.validate import load_config
from lbdns.health.control import ControlEntry, ControlKey
from lbdns.health.overrides import apply_overrides
from lbdns.health.view import HealthView, OriginHealth, OriginState, PoolRtt
from lbdns.server.handler import GeoLocator
from lbdns.snapshot import build_snapshot
from lbdns.snapshot_types import LbPlan, Snapshot
from lbdns.steering.decide import Decision
from lbdns.steering.origins import HostAddresses
from lbdns.wire.codec import ClientSubnet, Query, parse_query
from lbdns.wire.render import build_response

if TYPE_CHECKING:
    from lbdns.geo.pops import Pop
    from lbdns.geo.regions import RegionMap
    from lbdns.server.hostnames import HostnameResolver

_STATES = {"healthy": OriginState.HEALTHY, "unhealthy": OriginState.UNHEALTHY}


def health_from_status(doc: dict[str, Any]) -> HealthView:
    """A :class:`HealthView` rebuilt from a ``/status`` document of a running server, operator
    states included (so explain applies the same usable rule as the server)."""
    now = time.monotonic()
    origins: dict[tuple[str, str], OriginHealth] = {}
    rtt: dict[str, PoolRtt] = {}
    controls: dict[ControlKey, ControlEntry] = {}
    for pool in doc.get("pools", []):
        if pool.get("control"):
            controls[(pool["id"], None)] = ControlEntry.from_json(pool["control"])
        for o in pool.get("origins", []):
            if o.get("control"):
                controls[(pool["id"], o["name"])] = ControlEntry.from_json(o["control"])
            state = _STATES.get(str(o.get("health")), OriginState.UNKNOWN)
            origins[(pool["id"], o["name"])] = OriginHealth(state, o.get("failure_reason") or "",
                                                            o.get("last_probe_at"), o.get("rtt_ms"),
                                                            o.get("response_code"))
        if pool.get("rtt_ewma_ms") is not None:
            rtt[pool["id"]] = PoolRtt(float(pool["rtt_ewma_ms"]), now)
    return HealthView(int(doc.get("health_version", 0)), MappingProxyType(origins), MappingProxyType(rtt),
                      controls=MappingProxyType(controls))


def fetch_health(url: str, timeout: float = 2.0) -> HealthView | None:
    """Health from ``url``/status, or None when no server answers there."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=timeout) as resp:
            return health_from_status(json.loads(resp.read()))
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


DEFAULT_CLIENT = "127.0.0.1"
"""The resolver address ``explain`` assumes by default: that of ``dig @127.0.0.1`` on the same host."""


def parse_qtype(text: str) -> dns.rdatatype.RdataType:
    """The RR type number of ``text`` (``A``, ``aaaa``, ``TYPE65``). Raises ValueError with a
    one-line message for an unknown mnemonic."""
    try:
        return dns.rdatatype.RdataType.make(dns.rdatatype.from_text(text))
    except (dns.rdatatype.UnknownRdatatype, ValueError):
        raise ValueError(f"unknown query type {text!r} (a type such as A, AAAA, CNAME, MX, SRV, TXT, "
                         "or TYPEnnn)") from None


def parse_name(text: str) -> dns.name.Name:
    """``text`` as an absolute domain name. Raises ValueError (one line) when it is not one."""
    try:
        return dns.name.from_text(text)
    except dns.exception.DNSException as exc:
        raise ValueError(f"invalid domain name {text!r}: {str(exc).rstrip('.')}") from None


def parse_ecs(text: str) -> tuple[str, int]:
    """An EDNS Client Subnet given as ``ADDRESS/PREFIX`` (``203.0.113.0/24``, ``2001:db8::/56``) or
    a bare address (full length, as ``dig +subnet`` takes it). Returns (address, prefix length).
    Raises ValueError with a one-line message: malformed address, prefix beyond the family's
    length (32 or 128), or address bits set beyond the prefix (which RFC 7871 §6 forbids and
    the server answers with FORMERR)."""
    addr_text, slash, plen_text = text.partition("/")
    try:
        addr = ipaddress.ip_address(addr_text)
    except ValueError:
        raise ValueError(f"--ecs {text!r}: {addr_text!r} is not an IPv4 or IPv6 address "
                         "(expected ADDRESS/PREFIX, e.g. 203.0.113.0/24)") from None
    if not slash:
        return str(addr), addr.max_prefixlen
    if not plen_text.isdigit():
        raise ValueError(f"--ecs {text!r}: the prefix length {plen_text!r} is not a number")
    plen = int(plen_text)
    if plen > addr.max_prefixlen:
        raise ValueError(f"--ecs {text!r}: prefix length /{plen} is longer than an IPv{addr.version} "
                         f"address (at most /{addr.max_prefixlen})")
    net = ipaddress.ip_network(f"{addr}/{plen}", strict=False)
    if net.network_address != addr:
        raise ValueError(f"--ecs {text!r}: address bits are set beyond /{plen} (use {net})")
    return str(addr), plen


def explain(settings: ServerSettings, name: str, qtype: str = "A", *, client: str = DEFAULT_CLIENT,
            ecs: str | None = None, pop: str | None = None, admin_url: str | None = None,
            use_geoip: bool = True, health: HealthView | None = None, seed: int | None = None) -> str:
    """Explain the answer to ``name``/``qtype`` from resolver ``client`` (with optional ECS
    ``a.b.c.d/len``) at PoP ``pop``. Returns the report text. Raises
    :class:`lbdns.errors.ConfigError` for an invalid configuration, ValueError for bad
    arguments."""
    from lbdns.geo.data import default_regions

    rdtype, qname, ecs_parsed = _parse_args(client, name, qtype, ecs)
    regions = default_regions()
    loaded = load_config(Path(settings.zones_dir), settings, regions=regions)
    snap = build_snapshot(loaded, settings)
    health, source = _health(settings, admin_url, health)
    the_pop = _pop(settings, pop, regions)
    geo, asn_of = _geoip(settings) if use_geoip else (None, None)
    q, ecs_opt = _query(qname, rdtype, ecs_parsed)
    resolver = _resolve_hostnames(settings, snap, health, the_pop)
    resolved: set[str] = set()

    def lookup(hostname: str) -> HostAddresses:
        resolved.add(hostname)
        return resolver.addresses(hostname)

    env = QueryEnv(resolver_ip=client, ecs=ecs_opt, pop=the_pop.code, pop_region=the_pop.region, health=health,
                   rng=random.Random(seed), now=time.monotonic(), lookup=lookup,
                   locator=GeoLocator(geo, ecs_opt, client, the_pop, regions), asn_of=asn_of,
                   country_of=(lambda ip: getattr(geo(ip), "country", None)) if geo else None,
                   ip_src_uses_ecs=settings.ip_src_uses_ecs, trace=True)
    lines = [f"query: {qname.to_text()} {dns.rdatatype.to_text(rdtype)} from {client}"
             + (f" with ECS {ecs}" if ecs else "") + f" at PoP {the_pop.code} ({the_pop.region})",
             f"health: {source}"]
    ans = resolve(snap, q.qname_lower, q.qtype, env)
    if resolved:
        lines.append(_hostnames_line(settings, resolver, resolved))
    if ans.lb is None and ans.rcode == dns.rcode.REFUSED:
        zones = ", ".join(sorted(z.origin.to_text() for z in loaded.config.zones)) or "none"
        raise ValueError(f"{qname.to_text()} is in no zone served from {settings.zones_dir} "
                         f"(zones: {zones}); the server answers REFUSED")
    lines += _lb_lines(ans.lb, ans) if ans.lb is not None else [
        "no load balancer at this name: answered from the zone's records"]
    lines += _answer_lines(q, ans)
    return "\n".join(lines)


def _parse_args(client: str, name: str, qtype: str,
                ecs: str | None) -> tuple[dns.rdatatype.RdataType, dns.name.Name, tuple[str, int] | None]:
    """The query type, name and ECS (address, prefix length) of the arguments; ValueError
    (one line) for a client that is no address, an unknown type, a bad name or ECS."""
    try:
        ipaddress.ip_address(client)
    except ValueError:
        raise ValueError(f"--client {client!r} is not an IPv4 or IPv6 address") from None
    return parse_qtype(qtype), parse_name(name), parse_ecs(ecs) if ecs else None


def _health(settings: ServerSettings, admin_url: str | None, health: HealthView | None) -> tuple[HealthView, str]:
    """The health view to explain with (``health`` when given, else fetched from the running
    server's admin listener, else empty), static overrides applied, and the report's words for
    where it came from."""
    source = "given"
    if health is None:
        url = admin_url or f"http://{settings.admin.address}:{settings.admin.port}"
        health = fetch_health(url)
        source = f"from the running server at {url}" if health is not None else (
            f"no server reachable at {url}: monitored origins count as UNKNOWN (down)")
        if health is None:
            health = HealthView()
    return apply_overrides(health, settings.health_overrides), source


def _pop(settings: ServerSettings, pop: str | None, regions: RegionMap) -> Pop:
    """The PoP receiving the query (``pop``, else the settings' PoP) from the PoP catalogue;
    ValueError for a code not in it."""
    from lbdns.geo.data import load_pops

    catalogue = load_pops(Path(settings.pops_file) if settings.pops_file else None, regions)
    pop_code = pop or settings.pop
    the_pop = catalogue.get(pop_code)
    if the_pop is None:
        where = "--pop" if pop else "pop in lbdns.yaml"
        raise ValueError(f"unknown PoP {pop_code!r} ({where}): not in the PoP catalogue "
                         f"({'pops_file ' + settings.pops_file if settings.pops_file else 'the shipped one'}); "
                         "use an IATA code such as IAD, LHR, NRT")
    return the_pop


def _geoip(settings: ServerSettings) -> tuple[Callable[..., Any], Callable[[Any], int | None]]:
    """The GeoIP lookup of the settings' databases (else the default one) and the ASN lookup
    built on it."""
    from lbdns.geo.mmdb import GeoDatabase

    db = (GeoDatabase.open(settings.geoip_city_db, settings.geoip_asn_db) if settings.geoip_city_db
          else GeoDatabase.default())

    def asn_of(ip: Any) -> int | None:
        rec = db.lookup(ip)
        return rec.asn if rec is not None else None

    return db.lookup, asn_of


def _query(qname: dns.name.Name, rdtype: dns.rdatatype.RdataType,
           ecs: tuple[str, int] | None) -> tuple[Query, ClientSubnet | None]:
    """The query as the server parses it (EDNS, with the ECS option when given) and its valid
    ECS option (None for none or a /0, which carries no client information)."""
    options: list[dns.edns.Option] = []
    if ecs is not None:
        options.append(dns.edns.ECSOption(*ecs))
    msg = dns.message.make_query(qname, rdtype, use_edns=0, options=options)
    q = parse_query(msg.to_wire())
    ecs_opt = q.edns.ecs if q.edns is not None else None
    if ecs_opt is not None and ecs_opt.source_prefix == 0:
        ecs_opt = None
    return q, ecs_opt


def _resolve_hostnames(settings: ServerSettings, snap: Snapshot, health: HealthView, the_pop: Pop) -> HostnameResolver:
    """A hostname resolver with every hostname origin of ``snap`` resolved, as the server does
    before it publishes a configuration (names served here answered from ``snap`` itself)."""
    import asyncio

    from lbdns.server.hostnames import HostnameResolver, hostnames_of
    from lbdns.server.local_names import LocalAnswers
    from lbdns.server.state import Current

    resolver = HostnameResolver(settings.upstream_resolvers, max_ttl=float(settings.hostname_cache_max_ttl))
    current = Current(snap, health)
    resolver.use_local(LocalAnswers(lambda: current, the_pop, resolver.lookup_for_local))
    asyncio.run(resolver.resolve(hostnames_of(snap.pools.values())))
    return resolver


def _hostnames_line(settings: ServerSettings, resolver: HostnameResolver, resolved: set[str]) -> str:
    """The report line of the hostname origins the answer looked up, and which failed."""
    failed = sorted(h.rstrip(".") for h in resolved if not resolver.addresses(h).ok)
    return ("hostname origins resolved through "
            f"{', '.join(settings.upstream_resolvers) or 'the system resolver'}: "
            + ", ".join(sorted(h.rstrip(".") for h in resolved))
            + (f" (failed: {', '.join(failed)})" if failed else ""))


def _lb_lines(plan: LbPlan, ans: Answer) -> list[str]:
    """The report lines of the load balancer ``plan`` that gave ``ans``: its rules, then the
    decision."""
    lines = [f"load balancer: {plan.name} (zone {plan.zone}), configured steering_policy "
             f"{plan.model.steering_policy!r}"]
    if plan.rules:
        lines.append(_rules_line(plan, ans.matched_rules))
    if ans.decision is not None:
        lines += _decision_lines(ans.decision)
    return lines


def _rules_line(plan: LbPlan, matched: list[str]) -> str:
    """The custom rules of ``plan`` in evaluation order: matched (with what they override),
    not matched, or not evaluated after a matched terminating rule (Cloudflare docs: Load
    Balancing › Create custom rules)."""
    shown: list[str] = []
    stopped = False
    for r in plan.rules:
        if stopped:
            shown.append(f"{r.name} not evaluated")
            continue
        hit = r.name in matched
        shown.append(f"{r.name} {'MATCHED' if hit else 'no match'}"
                     + (f" (overrides {', '.join(r.overrides)})" if hit and r.overrides else "")
                     + (" [terminates]" if r.stops and hit else ""))
        stopped = hit and r.stops
    return "rules: " + ", ".join(shown)


def _decision_lines(d: Decision) -> list[str]:
    """The client location steering used (if any), the steering trail, and the decision."""
    lines: list[str] = []
    if d.location is not None:
        loc = d.location
        coords = (f"{loc.latitude:.2f},{loc.longitude:.2f}" if loc.latitude is not None
                  and loc.longitude is not None else "none")
        lines.append(f"location: source {loc.source}, country {loc.country or '?'}, region "
                     f"{loc.region or '?'}, coordinates {coords}"
                     + (f", network /{loc.network_prefix}" if loc.network_prefix is not None else ""))
    lines += [f"  {step}" for step in d.trail or []]
    mode = "multi-answer" if d.multi else "single-answer"
    pool = d.pool.name if d.pool else "none"
    lines.append(f"decision: pool {pool}{' (fallback)' if d.fallback else ''}, {mode}")
    return lines


def _answer_lines(q: Query, ans: Answer) -> list[str]:
    """The response as the server renders it: RCODE, answer count, ECS scope, and the answer
    and authority records in presentation format."""
    wire = build_response(q, rcode=ans.rcode, aa=ans.aa, answer=ans.answer, ancount=ans.ancount,
                          authority=ans.authority, nscount=ans.nscount, additional=ans.additional,
                          arcount=ans.arcount, ecs_scope=ans.ecs_scope if q.edns and q.edns.ecs else None)
    resp = dns.message.from_wire(wire)
    scope = ""
    for opt in resp.options:
        if isinstance(opt, dns.edns.ECSOption):
            scope = f", ECS scope /{opt.scopelen}"
    lines = [f"answer: {dns.rcode.to_text(resp.rcode())}, {len([r for s in resp.answer for r in s])} "
             f"record(s){scope}"]
    for rrset in resp.answer + resp.authority:
        lines += [f"  {line}" for line in rrset.to_text().splitlines()]
    return lines


__all__ = ["DEFAULT_CLIENT", "explain", "fetch_health", "health_from_status", "parse_ecs", "parse_name",
           "parse_qtype"]
