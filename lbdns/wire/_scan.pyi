"""Type stub of the C extension lbdns/wire/_scan.c (the twin of lbdns.wire.scan.scan_py)."""

def scan(data: bytes) -> tuple[int, bytes, bytes | None, int, int, int, int, int, int, bytes] | None:
    """See :func:`lbdns.wire.scan.scan_py`."""
