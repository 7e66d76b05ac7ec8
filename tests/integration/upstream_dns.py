"""A tiny real DNS server on loopback for hostname-origin tests: the ``upstream_resolvers`` of an
lbdns under test. It counts every packet it receives, answers A/AAAA from a mutable table after an
optional delay, and can act like a recursive resolver whose path leads back into lbdns: a name in
``forward`` is answered with a CNAME to the mapped name plus the address records lbdns itself
gives for that name (the forwarder asks lbdns over UDP, as a real resolver would).

It runs its own asyncio loop in a thread; :meth:`UpstreamDns.stop` ends it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import Counter
from concurrent.futures import Future
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset


class UpstreamDns:
    """UDP DNS server on 127.0.0.1 (``port``). ``records``: lower-case FQDN → list of
    addresses (IPv4 or IPv6 text); a name not in ``records`` or ``forward`` is NXDOMAIN.
    ``forward``: FQDN → (lbdns address, port, target FQDN). ``delay``: seconds before each
    answer. ``packets`` counts received queries by (qname, qtype text); ``forwarded`` counts
    the queries sent on to lbdns."""

    def __init__(self, records: dict[str, list[str]] | None = None, *, delay: float = 0.0) -> None:
        self.records: dict[str, list[str]] = dict(records or {})
        self.forward: dict[str, tuple[str, int, str]] = {}
        self.delay = delay
        self.packets: Counter[tuple[str, str]] = Counter()
        self.forwarded = 0
        self.ttl = 300
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port: int = self._call(self._start())

    def _call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(10)

    async def _start(self) -> int:
        server = self

        class Proto(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                task = asyncio.ensure_future(server._answer(data, addr))
                server._tasks.add(task)
                task.add_done_callback(server._tasks.discard)

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)  # count bursts, do not drop them
        sock.bind(("127.0.0.1", 0))
        transport, _ = await self.loop.create_datagram_endpoint(Proto, sock=sock)
        self.transport = transport
        return int(transport.get_extra_info("sockname")[1])

    @property
    def total(self) -> int:
        """Packets received so far."""
        return sum(self.packets.values())

    async def _answer(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            q = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        question = q.question[0]
        name = question.name.to_text().lower()
        self.packets[(name, dns.rdatatype.to_text(question.rdtype))] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        r = dns.message.make_response(q)
        r.flags |= dns.flags.RA
        if name in self.forward:
            host, port, target = self.forward[name]
            r.answer.append(dns.rrset.from_text(question.name, 30, "IN", "CNAME", target))
            self.forwarded += 1
            try:
                sub = await dns.asyncquery.udp(dns.message.make_query(target, question.rdtype), host, port=port,
                                               timeout=2.0)
                r.answer.extend(sub.answer)
            except (dns.exception.DNSException, OSError):
                r.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.records:
            want = 4 if question.rdtype == dns.rdatatype.A else 6 if question.rdtype == dns.rdatatype.AAAA else 0
            values = [a for a in self.records[name] if (":" in a) == (want == 6)] if want else []
            if values:
                r.answer.append(dns.rrset.from_text_list(question.name, self.ttl, "IN",
                                                         dns.rdatatype.to_text(question.rdtype), values))
        else:
            r.set_rcode(dns.rcode.NXDOMAIN)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(r.to_wire(), addr)

    def stop(self) -> None:
        """Close the socket and end the loop thread."""
        async def close() -> None:
            if self.transport is not None:
                self.transport.close()
            for t in list(self._tasks):
                t.cancel()

        self._call(close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
