"""lbdns: an authoritative DNS server with DNS-only load balancing in the manner of
Cloudflare Load Balancing (unproxied / gray-cloud mode).

``lbdns.__version__`` is the installed distribution's version (package metadata, from
``pyproject.toml``; ``0+unknown`` in a checkout that was never installed). It is read on first
access, so importing the pure core does not load ``importlib.metadata`` (which imports
``socket``, ``random`` and ``zipfile``).
"""

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("lbdns")
        except PackageNotFoundError:  # pragma: no cover - a checkout that was never installed
            value = "0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'lbdns' has no attribute {name!r}")
