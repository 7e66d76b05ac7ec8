"""Type stub of the C extension lbdns/server/_mmsg.c (the UDP batch loop, Linux only)."""

from collections.abc import Callable
from typing import Any

class Batch:
    """The recvmmsg/sendmmsg buffers of one non-blocking UDP socket ``fd`` for up to ``n``
    (1–1024) datagrams per system call. Raises ValueError for other values, OSError when the
    buffers cannot be mapped."""

    def __init__(self, fd: int, n: int) -> None: ...
    def serve(self, handle: Callable[[bytes, str, bool, Any], bytes | None], pop: Any,
              filter: Callable[[str, bytes, bytes], bytes | None] | None, peers: dict[bytes, str],
              peer_of: Callable[[bytes], str], rounds: int) -> int:
        """Read and answer batches until one is short of ``n`` datagrams (at most ``rounds``);
        returns the answers that could not be sent."""
