"""Shared health across lbdns instances through a Redis-compatible store (docs/scaling.md)."""
