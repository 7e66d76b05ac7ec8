"""Importers: other formats → lbdns zone YAML (issue "Operator experience").

* :mod:`lbdns.importers.cloudflare` — Cloudflare API JSON exports (monitors, pools, load
  balancers, DNS records) → an account file (``monitors:``, ``pools:``) and a zone file.
* :mod:`lbdns.importers.zonefile` — an RFC 1035 master file → a zone file.
* :mod:`lbdns.importers.yamlout` — the YAML writer both share (comments, flow-style records).
* :mod:`lbdns.importers.cli` — the ``lbdns import-cloudflare`` and ``lbdns import-zone``
  subcommands (registered by :func:`lbdns.cli.build_parser`).

Importers are edges: they read files and return plain data plus warnings; only the CLI prints.
"""

from __future__ import annotations

from lbdns.errors import LbdnsError


class ImportFailed(LbdnsError):
    """An input that cannot be turned into lbdns YAML (unreadable JSON, no zone origin, a
    load balancer left without pools…). The message says what and where."""
