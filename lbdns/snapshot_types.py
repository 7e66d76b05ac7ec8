"""The immutable :class:`Snapshot` and its parts: the types the query path reads.

Pure data classes, no builder: :func:`lbdns.snapshot.build_snapshot` compiles a validated
configuration into them. Configuration and settings models are referenced for typing only,
so importing this module loads neither pydantic nor dnspython.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lbdns.steering.plan import CompiledPool, Effective
from lbdns.wire.codec import QTYPE_AAAA, QTYPE_CNAME, QTYPE_MX, QTYPE_SRV

if TYPE_CHECKING:
    from lbdns.config.loaded import Config
    from lbdns.config.model import LoadBalancer
    from lbdns.config.settings import ServerSettings


@dataclass(frozen=True, slots=True)
class EncodedRRset:
    """An RRset pre-encoded for answers. ``tails`` are the per-RR bytes after the owner name
    (TYPE, CLASS, TTL, RDLENGTH, RDATA; names in RDATA uncompressed); ``at_qname`` the whole
    RRset with the owner written as a pointer to the question name (offset 12);
    ``targets`` the lower-case wire names the RDATA points to (CNAME/NS/MX/SRV/DNAME targets).

    For the apex NS RRset and MX/SRV RRsets, the additional-section data of an answer
    (RFC 1034 §4.3.2 step 6, RFC 2181 §5.4.1): ``optional_parts`` the A and AAAA RRsets (owner in
    full, count) of targets that are ordinary names in a served zone, in target order, joined in
    ``optional`` with ``opcount`` records; ``lb_targets`` the (target wire name, LB plan) of
    targets that are load balancers, steered per query."""

    rtype: int
    ttl: int
    tails: tuple[bytes, ...]
    at_qname: bytes
    targets: tuple[bytes, ...] = ()
    optional: bytes = b""
    opcount: int = 0
    optional_parts: tuple[tuple[bytes, int], ...] = ()
    lb_targets: tuple[tuple[bytes, LbPlan], ...] = ()

    @property
    def count(self) -> int:
        """Number of RRs."""
        return len(self.tails)

    def with_owner(self, owner: bytes) -> bytes:
        """The RRset with ``owner`` (wire form) written in full before every RR."""
        return b"".join(owner + t for t in self.tails)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One enabled custom rule in evaluation order (Cloudflare docs: Load Balancing › Custom
    rules). ``condition`` is a :class:`lbdns.rules.compiler.CompiledCondition`; ``apply`` maps an
    Effective to the Effective with this rule's overrides; ``stops`` is ``terminates`` or a
    ``fixed_response`` (docs/rules.md)."""

    name: str
    index: int
    condition: Any
    apply: Callable[[Effective], Effective]
    stops: bool
    overrides: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LbPlan:
    """A compiled load balancer. ``name`` is the LB hostname (lower case, trailing dot);
    ``rule_name`` the ``cf.load_balancer.name`` value; ``base`` the effective config
    without rules; ``rules`` enabled rules sorted by (priority, array index);
    ``rule_fields`` every rule field any condition reads; ``types`` the query types the LB
    answers (A, AAAA, CNAME; MX, SRV with plan enterprise; HTTPS, SVCB when configured);
    ``service`` the :func:`service_template` per HTTPS/SVCB query type configured."""

    name: str
    rule_name: str
    zone: str
    base: Effective
    rules: tuple[CompiledRule, ...]
    rule_fields: frozenset[str]
    model: LoadBalancer
    serves_mx_srv: bool
    types: frozenset[int] = frozenset()
    service: Mapping[int, tuple[bytes, bytes, bytes]] = field(default_factory=dict)


@dataclass(slots=True)
class Node:
    """One owner name of a zone: its RRsets by type, an enabled LB (or None), and whether
    it is a delegation point."""

    name: bytes
    rrsets: dict[int, EncodedRRset] = field(default_factory=dict)
    lb: LbPlan | None = None
    is_cut: bool = False


@dataclass(frozen=True, slots=True)
class ZoneIndex:
    """A served zone. ``origin`` is the lower-case wire apex; ``nodes`` every existing name
    including empty non-terminals; ``cuts`` the delegation points below the apex;
    ``negative_soa`` the SOA RR (owner in full) with TTL min(SOA TTL, MINIMUM) for
    NXDOMAIN/NODATA (RFC 2308 §3, §5); ``dnames`` the owners of DNAME records (RFC 6672),
    empty for most zones, so only zones with a DNAME pay for the ancestor check."""

    origin: bytes
    origin_text: str
    nodes: Mapping[bytes, Node]
    cuts: frozenset[bytes]
    negative_soa: bytes
    soa_ttl: int
    dnames: frozenset[bytes] = frozenset()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the query path reads about configuration, immutable once built.

    ``zones`` maps the lower-case wire apex to its :class:`ZoneIndex`; ``pools`` the
    compiled pools by id; ``plans`` every LB plan (enabled or not) by name; ``config`` the
    validated model (for explain, status and probes); ``settings`` the server settings.
    """

    zones: Mapping[bytes, ZoneIndex]
    pools: Mapping[str, CompiledPool]
    plans: Mapping[str, LbPlan]
    config: Config
    settings: ServerSettings
    generation: int = 0


LB_TYPES_BASE = frozenset({1, QTYPE_AAAA, QTYPE_CNAME})
LB_TYPES_ENTERPRISE = frozenset({1, QTYPE_AAAA, QTYPE_CNAME, QTYPE_MX, QTYPE_SRV})
