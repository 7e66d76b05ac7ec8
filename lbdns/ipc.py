"""Length-prefixed frames between lbdns and its child processes (the probe worker, the snapshot
builder): a 4-byte big-endian length and a body, usually a pickled tuple. The pipes are
private to two processes of the same installation, so pickle is safe here.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

FRAME = struct.Struct("!I")
MAX_FRAME = 1 << 30
"""Largest accepted frame in bytes (a target list or snapshot chunk of a very large configuration fits)."""


def frame(body: bytes) -> bytes:
    """``body`` with its length prefix."""
    return FRAME.pack(len(body)) + body


def encode(message: tuple[Any, ...]) -> bytes:
    """One frame: length prefix + pickled ``message``."""
    return frame(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's body from ``reader``, or None at EOF (also inside a frame). Raises
    ValueError for a frame longer than :data:`MAX_FRAME`."""
    try:
        head = await reader.readexactly(FRAME.size)
        (size,) = FRAME.unpack(head)
        if size > MAX_FRAME:
            raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError:
        return None


async def read_message(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next pickled-tuple message from ``reader``, or None at EOF. Raises ValueError for a
    frame longer than :data:`MAX_FRAME` or a body that is not a non-empty tuple."""
    body = await read_frame(reader)
    if body is None:
        return None
    msg = pickle.loads(body)
    if not isinstance(msg, tuple) or not msg:
        raise ValueError(f"message is not a tuple: {type(msg).__name__}")
    return msg
