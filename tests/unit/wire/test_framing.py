"""TcpFramer / frame (RFC 1035 §4.2.2, RFC 7766 §8)."""

from __future__ import annotations

import dns.message
import pytest

from lbdns.errors import FormError
from lbdns.wire import parse_query
from lbdns.wire.framing import TcpFramer, frame

MESSAGES = [
    dns.message.make_query("www.example.com", "A", id=1).to_wire(),
    dns.message.make_query("b.example.com", "AAAA", id=2, use_edns=0).to_wire(),
    b"x",
    b"\xab" * 65535,
    dns.message.make_query("c.example.com", "TXT", id=3).to_wire(),
]
STREAM = b"".join(frame(m) for m in MESSAGES)


def test_frame_prefixes_length() -> None:
    assert frame(b"abc") == b"\x00\x03abc"
    assert frame(b"") == b"\x00\x00"
    assert frame(b"\x00" * 65535)[:2] == b"\xff\xff"
    with pytest.raises(ValueError):
        frame(b"\x00" * 65536)


def test_one_message_one_chunk() -> None:
    framer = TcpFramer()
    assert framer.feed(frame(MESSAGES[0])) == [MESSAGES[0]]
    assert framer.buffered == 0
    assert parse_query(MESSAGES[0]).id == 1


def test_pipelined_messages_in_one_chunk() -> None:
    framer = TcpFramer()
    assert framer.feed(STREAM) == MESSAGES
    assert framer.buffered == 0


def test_byte_by_byte() -> None:
    framer = TcpFramer()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += framer.feed(STREAM[i : i + 1])
    assert out == MESSAGES
    assert framer.buffered == 0


@pytest.mark.parametrize("size", [2, 3, 7, 100, 1000, 4096, 70000])
def test_fixed_size_chunks(size: int) -> None:
    framer = TcpFramer()
    out: list[bytes] = []
    for i in range(0, len(STREAM), size):
        out += framer.feed(STREAM[i : i + size])
    assert out == MESSAGES


def test_split_length_prefix() -> None:
    framer = TcpFramer()
    data = frame(MESSAGES[0])
    assert framer.feed(data[:1]) == []
    assert framer.buffered == 1
    assert framer.feed(data[1:2]) == []
    assert framer.feed(data[2:10]) == []
    assert framer.buffered == 10
    assert framer.feed(data[10:] + frame(MESSAGES[1])[:1]) == [MESSAGES[0]]
    assert framer.buffered == 1
    assert framer.feed(frame(MESSAGES[1])[1:]) == [MESSAGES[1]]


def test_complete_then_partial_in_one_chunk() -> None:
    framer = TcpFramer()
    first, second = frame(MESSAGES[0]), frame(MESSAGES[1])
    assert framer.feed(first + second[:5]) == [MESSAGES[0]]
    assert framer.buffered == 5
    assert framer.feed(b"") == []
    assert framer.feed(second[5:]) == [MESSAGES[1]]
    assert framer.buffered == 0


def test_returns_bytes() -> None:
    framer = TcpFramer()
    framer.feed(frame(b"abc")[:3])
    (message,) = framer.feed(b"bc")
    assert type(message) is bytes


def test_zero_length_prefix_is_formerr() -> None:
    with pytest.raises(FormError) as info:
        TcpFramer().feed(b"\x00\x00")
    assert not info.value.answerable
    framer = TcpFramer()
    assert framer.feed(frame(b"abc") + b"\x00") == [b"abc"]
    assert framer.buffered == 1
    with pytest.raises(FormError):
        framer.feed(b"\x00")
    framer = TcpFramer()
    with pytest.raises(FormError):
        framer.feed(frame(b"abc") + b"\x00\x00")
