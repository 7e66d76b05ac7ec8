"""Edges: UDP/TCP transports, the bytes→bytes handler, the published state."""
