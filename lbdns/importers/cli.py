"""The ``lbdns import-cloudflare`` and ``lbdns import-zone`` subcommands.

Registered by :func:`lbdns.cli.build_parser` through :func:`add_import_commands`. Warnings go
to stderr as ``lbdns import-…: warning: …``; after writing, the output is checked with the
same validator as ``lbdns check`` (on a private copy, so unrelated files in the output
directory do not interfere) and the command exits 1 if that check finds errors, 2 on bad
input, 0 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from lbdns.errors import ConfigError
from lbdns.importers import ImportFailed


def add_import_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import-cloudflare`` and ``import-zone`` to the ``lbdns`` subcommand parser
    ``sub``; each sets ``func`` to its handler (``args → exit status``)."""
    cf = sub.add_parser(
        "import-cloudflare", help="convert Cloudflare Load Balancing API exports to lbdns YAML",
        description="Convert the JSON of GET /accounts/{a}/load_balancers/monitors, …/pools, "
                    "GET /zones/{z}/load_balancers and optionally GET /zones/{z}/dns_records (API envelope, "
                    "bare array or single object) into DIR/_account.yaml (monitors, pools) and DIR/<zone>.yaml "
                    "(zone, soa, ns, records, load_balancers). Cloudflare ids become names; proxied-only settings "
                    "are kept with a warning saying what DNS-only does instead. The SOA is synthesised: MNAME = the "
                    "first NS, RNAME = hostmaster.<zone>, serial = today as YYYYMMDD01, refresh 7200, retry 3600, "
                    "expire 1209600, minimum 300, TTL 3600 (override with the --soa-* flags).")
    cf.add_argument("--monitors", required=True, metavar="FILE", help="monitors export (JSON)")
    cf.add_argument("--pools", required=True, metavar="FILE", help="pools export (JSON)")
    cf.add_argument("--load-balancers", required=True, metavar="FILE", help="load balancers export (JSON)")
    cf.add_argument("--dns-records", metavar="FILE", help="DNS records export (JSON), optional")
    cf.add_argument("--zone", required=True, metavar="NAME", help="the zone the load balancers belong to")
    cf.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    cf.add_argument("--ns", action="append", metavar="NAME",
                    help="apex NS name (repeatable; default: apex NS records of the DNS export, else ns1/ns2.<zone>)")
    cf.add_argument("--soa-mname", metavar="NAME", help="SOA MNAME (default: the first NS)")
    cf.add_argument("--soa-rname", metavar="NAME", help="SOA RNAME (default: hostmaster.<zone>.)")
    cf.add_argument("--soa-serial", type=int, metavar="N", help="SOA serial (default: today as YYYYMMDD01)")
    cf.add_argument("--soa-refresh", type=int, default=7200, metavar="S")
    cf.add_argument("--soa-retry", type=int, default=3600, metavar="S")
    cf.add_argument("--soa-expire", type=int, default=1209600, metavar="S")
    cf.add_argument("--soa-minimum", type=int, default=300, metavar="S", help="negative-caching TTL")
    cf.add_argument("--soa-ttl", type=int, default=3600, metavar="S", help="TTL of the SOA RR")
    cf.add_argument("--force", action="store_true", help="overwrite existing output files")
    cf.set_defaults(func=cmd_import_cloudflare)

    zf = sub.add_parser(
        "import-zone", help="convert an RFC 1035 zone file to lbdns zone YAML",
        description="Parse a master file with dnspython and write the zone as lbdns YAML (soa, ns, records). "
                    "A, AAAA, CNAME, MX, SRV, TXT, NS, CAA, PTR, HTTPS, SVCB, TLSA, SSHFP, NAPTR, DS, LOC, HINFO, "
                    "DNAME and URI keep their TTLs; other types (DNSKEY, RRSIG, NSEC, …) are reported on stderr "
                    "with their owner names and skipped.")
    zf.add_argument("file", metavar="FILE", help="zone file")
    zf.add_argument("--origin", metavar="NAME", help="zone name when the file has no $ORIGIN")
    zf.add_argument("--out", metavar="FILE", help="output YAML file (default: standard output)")
    zf.add_argument("--force", action="store_true", help="overwrite an existing output file")
    zf.set_defaults(func=cmd_import_zone)


def _warn(prog: str, warnings: list[str]) -> None:
    for w in warnings:
        print(f"{prog}: warning: {w}", file=sys.stderr)


def _check(files: Mapping[str, str], prog: str) -> int:
    """Validate YAML texts (file name → text) like ``lbdns check``; print the outcome.
    Returns 0 when valid, 1 with errors."""
    from lbdns.config.validate import load_config

    with tempfile.TemporaryDirectory(prefix="lbdns-import-") as tmp:
        root = Path(tmp)
        for name, text in files.items():
            (root / name).write_text(text, encoding="utf-8")
        try:
            loaded = load_config(root, display_root=root)
        except ConfigError as exc:
            errors = [i for i in exc.issues if i.is_error]
            for issue in errors:
                print(f"{prog}: check: {issue}", file=sys.stderr)
            print(f"{prog}: the output does not pass `lbdns check`: {len(errors)} error(s)", file=sys.stderr)
            return 1
    n = len(loaded.config.warnings)
    print(f"{prog}: check: ok ({n} warning(s); `lbdns check` lists them)", file=sys.stderr)
    return 0


def cmd_import_cloudflare(args: argparse.Namespace) -> int:
    """``lbdns import-cloudflare``: convert the exports and write ``--out``; returns the exit
    status (0 ok, 1 output fails the check, 2 unusable input)."""
    from lbdns.importers.cloudflare import (
        SoaOptions,
        convert,
        load_export,
        render_account,
        render_zone,
        write_files,
    )

    prog = "lbdns import-cloudflare"
    try:
        monitors = load_export(args.monitors)
        pools = load_export(args.pools)
        lbs = load_export(args.load_balancers)
        records = load_export(args.dns_records) if args.dns_records else None
        soa = SoaOptions(mname=args.soa_mname, rname=args.soa_rname, serial=args.soa_serial,
                         refresh=args.soa_refresh, retry=args.soa_retry, expire=args.soa_expire,
                         minimum=args.soa_minimum, ttl=args.soa_ttl)
        result = convert(monitors, pools, lbs, records, zone=args.zone, ns=args.ns, soa=soa)
        sources = [Path(p).name for p in (args.monitors, args.pools, args.load_balancers, args.dns_records) if p]
        _warn(prog, result.warnings)
        account, zone = write_files(result, args.out, sources, force=args.force)
    except ImportFailed as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{prog}: error: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"{prog}: wrote {account} ({len(result.monitors)} monitor(s), {len(result.pools)} pool(s)) and {zone} "
          f"({len(result.zone['load_balancers'])} load balancer(s), {len(result.zone['records'])} owner name(s))",
          file=sys.stderr)
    return _check({account.name: render_account(result, sources), zone.name: render_zone(result, sources)}, prog)


def cmd_import_zone(args: argparse.Namespace) -> int:
    """``lbdns import-zone FILE``: convert the zone file and write ``--out`` (or stdout);
    returns the exit status (0 ok, 1 output fails the check, 2 unusable input)."""
    from lbdns.importers.zonefile import import_zone_file, render_zone

    prog = "lbdns import-zone"
    try:
        result = import_zone_file(args.file, args.origin)
    except ImportFailed as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    _warn(prog, result.warnings)
    text = render_zone(result, Path(args.file).name)
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.force:
            print(f"{prog}: error: {out} exists (use --force to overwrite)", file=sys.stderr)
            return 2
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"{prog}: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"{prog}: wrote {out} ({len(result.data['records'])} owner name(s))", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return _check({f"{result.data['zone']}.yaml": text}, prog)
