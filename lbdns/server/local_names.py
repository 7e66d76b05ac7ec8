"""Answers for names inside the zones lbdns serves, taken from its own configuration instead of an
upstream resolver: the hostname resolver (:mod:`lbdns.server.hostnames`) asks here for hostname
origins (and CNAME targets) that lie in a served zone, so they need no round trip, resolve while
lbdns is still starting (warm start), and cannot make lbdns query itself.

The answer is the one a client would get over the wire: the query goes through a private
:class:`~lbdns.server.handler.Handler` reading the given state (counters of its own, no query
log, no location: the receiving PoP decides geo steering).
"""

from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rdatatype

from lbdns.answer import find_zone
from lbdns.geo.pops import Pop
from lbdns.server.handler import Handler
from lbdns.server.state import Current, StateRef
from lbdns.snapshot import name_wire
from lbdns.steering.origins import HostLookup

LOCAL_PEER = "127.0.0.1"
"""The client address local questions are asked from."""


class LocalAnswers:
    """Ask the configuration itself. ``state`` returns the (snapshot, health) to answer from —
    a snapshot about to be published, or the published one; ``pop`` is the PoP the questions
    are asked at; ``lookup`` gives the addresses of hostname origins met on the way."""

    def __init__(self, state: Callable[[], Current], pop: Pop, lookup: HostLookup) -> None:
        self.state = state
        self.pop = pop
        self._ref = StateRef(state())
        self._handler = Handler(self._ref, lookup=lookup)

    def serves(self, name: str) -> bool:
        """True when ``name`` (an FQDN, any case) lies in a zone of the current snapshot and not
        below one of its delegations (RFC 1034 §4.2.1: the delegated child's data is not ours)."""
        try:
            wire = name_wire(dns.name.from_text(name.lower()))
        except dns.exception.DNSException:
            return False
        zone, offs, apex = find_zone(self.state().snapshot, wire)
        if zone is None:
            return False
        return not any(wire[offs[k]:] in zone.cuts for k in range(apex))

    def ask(self, name: str, rdtype: dns.rdatatype.RdataType) -> dns.message.Message | None:
        """The response lbdns gives to ``name``/``rdtype`` (over TCP, so never truncated), or None
        when there is none (an unanswerable question)."""
        self._ref.current = self.state()
        query = dns.message.make_query(name, rdtype)
        query.flags &= ~dns.flags.RD
        out = self._handler.handle(query.to_wire(), LOCAL_PEER, True, self.pop)
        if out is None:
            return None
        try:
            return dns.message.from_wire(out)
        except dns.exception.DNSException:
            return None
