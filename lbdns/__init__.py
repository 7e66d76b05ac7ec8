"""lbdns: an authoritative DNS server with DNS-only load balancing in the manner of
Cloudflare Load Balancing (unproxied / gray-cloud mode)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("lbdns")
    """The installed distribution's version (package metadata, from ``pyproject.toml``)."""
except PackageNotFoundError:  # pragma: no cover - imported from a checkout that was never installed
    __version__ = "0+unknown"
