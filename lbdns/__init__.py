"""lbdns: an authoritative DNS server with DNS-only load balancing in the manner of
Cloudflare Load Balancing (unproxied / gray-cloud mode)."""

__version__ = "0.1.0"
