"""The ``lbdns`` command: ``serve``, ``check``, ``explain`` (and importers). The only module
that prints for the user and exits."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbdns.errors import ConfigError

if TYPE_CHECKING:
    from lbdns.config.settings import ServerSettings

_startup_sighups: list[float] = []
"""SIGHUPs received while ``serve`` starts, before the event loop handles them (see main)."""


def _queue_sighup(signum: int, frame: Any) -> None:
    _startup_sighups.append(time.monotonic())


def _settings_from_args(args: argparse.Namespace) -> ServerSettings:
    from lbdns.config.settings import Listener, load_settings

    cfg_path = Path(args.config) if getattr(args, "config", None) else None
    if cfg_path is None and Path("lbdns.yaml").exists():
        cfg_path = Path("lbdns.yaml")
    settings = load_settings(cfg_path)
    updates: dict[str, object] = {}
    if getattr(args, "zones", None):
        updates["zones_dir"] = args.zones
    if getattr(args, "pop", None):
        updates["pop"] = args.pop
    if getattr(args, "geoip_db", None):
        updates["geoip_city_db"] = args.geoip_db
    if getattr(args, "geoip_asn_db", None):
        updates["geoip_asn_db"] = args.geoip_asn_db
    if getattr(args, "plan", None):
        updates["plan"] = args.plan
    if getattr(args, "listen", None):
        listeners = []
        for spec in args.listen:
            addr, _, port = spec.rpartition(":")
            listeners.append(Listener(address=addr.strip("[]") or "127.0.0.1", port=int(port)))
        updates["listen"] = listeners
    if getattr(args, "no_probes", False):
        updates["probes_enabled"] = False
    if getattr(args, "no_warm_start", False):
        updates["warm_start"] = False
    if getattr(args, "admin", None):
        if args.admin == "off":
            updates["admin"] = settings.admin.model_copy(update={"enabled": False})
        else:
            addr, _, port = args.admin.rpartition(":")
            updates["admin"] = settings.admin.model_copy(
                update={"enabled": True, "address": addr.strip("[]") or "127.0.0.1", "port": int(port)})
    return settings.model_copy(update=updates) if updates else settings


def _print_issues(exc: ConfigError) -> None:
    errors = [i for i in exc.issues if i.is_error]
    for issue in exc.issues:
        print(issue, file=sys.stderr if issue.is_error else sys.stdout)
    print(f"{len(errors)} error(s), {len(exc.issues) - len(errors)} warning(s)", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    """``lbdns check [DIR]``: print every problem; exit 1 when there are errors."""
    from lbdns.config.validate import load_config

    try:
        settings = _settings_from_args(args)
        directory = Path(args.directory or settings.zones_dir)
        loaded = load_config(directory, settings)
    except ConfigError as exc:
        _print_issues(exc)
        return 1
    for w in loaded.config.warnings:
        print(w)
    zones = len(loaded.config.zones)
    lbs = sum(len(z.load_balancers) for z in loaded.config.zones)
    print(f"ok: {zones} zone(s), {lbs} load balancer(s), {len(loaded.config.pools)} pool(s), "
          f"{len(loaded.config.monitors)} monitor(s), {len(loaded.config.warnings)} warning(s)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``lbdns serve``: run the server until SIGTERM."""
    from lbdns import logpipe

    pipe = logpipe.install(getattr(logging, args.log_level.upper()))
    try:
        return _serve(args)
    finally:
        pipe.stop()


def _serve(args: argparse.Namespace) -> int:
    import asyncio

    from lbdns.app import App

    try:
        settings = _settings_from_args(args)
    except ConfigError as exc:
        _print_issues(exc)
        return 1
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    app = App(settings, Path(settings.zones_dir), startup_sighups=_startup_sighups, prestart_builder=True)

    async def main() -> int:
        from lbdns.geo.data import GeoDataError

        try:
            await app.start()
        except ConfigError as exc:
            _print_issues(exc)
            return 1
        except (GeoDataError, ValueError) as exc:
            print(f"lbdns: invalid settings: {exc}", file=sys.stderr)
            await app.stop()
            return 1
        except OSError as exc:  # binding a listener, or spawning the probe worker
            print(f"lbdns: cannot start: {exc}", file=sys.stderr)
            return 1
        for b in app.listeners:  # one write per line: the log writer thread shares the terminal
            sys.stdout.write(f"lbdns: listening on {b.transport} {b.address}:{b.port} (PoP {b.pop})\n")
            sys.stdout.flush()
        await app.run_forever(watch=not args.no_watch)
        return 0

    try:
        return asyncio.run(main())
    finally:  # the loop gave SIGHUP back to its default action (terminate) when it closed
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


def cmd_explain(args: argparse.Namespace) -> int:
    """``lbdns explain NAME [TYPE]``: show why the answer is what it is."""
    from lbdns.explain import explain

    try:
        settings = _settings_from_args(args)
        text = explain(settings, args.name, args.qtype, client=args.client, ecs=args.ecs, pop=args.pop,
                       admin_url=args.health_from, use_geoip=not args.no_geoip)
    except ConfigError as exc:
        _print_issues(exc)
        return 1
    except ValueError as exc:
        print(f"lbdns explain: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lbdns`` command."""
    parser = argparse.ArgumentParser(prog="lbdns", description="Authoritative DNS with DNS-only load balancing")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="server settings file (default: ./lbdns.yaml if present)")
        p.add_argument("--zones", help="zones directory (default: zones)")
        p.add_argument("--plan", choices=["enterprise", "non_enterprise"])

    serve = sub.add_parser("serve", help="serve the zones over UDP and TCP")
    common(serve)
    serve.add_argument("--listen", action="append", metavar="ADDR:PORT",
                       help="listen on ADDR:PORT (UDP and TCP); repeatable (default 127.0.0.1:5353)")
    serve.add_argument("--pop", help="this server's PoP code (IATA, e.g. IAD)")
    serve.add_argument("--geoip-db", help="GeoIP2/GeoLite2/DB-IP City MMDB (default: embedded GeoLite2 2018)")
    serve.add_argument("--geoip-asn-db", help="GeoLite2 ASN MMDB for ip.src.asnum")
    serve.add_argument("--admin", metavar="ADDR:PORT|off", help="admin HTTP listener (default 127.0.0.1:8053)")
    serve.add_argument("--no-probes", action="store_true", help="do not run health monitors")
    serve.add_argument("--no-warm-start", action="store_true", help="answer before the first probe round")
    serve.add_argument("--no-watch", action="store_true", help="do not poll the zones directory for changes")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate the zones and print every problem")
    common(check)
    check.add_argument("directory", nargs="?", help="zones directory (default: zones)")
    check.set_defaults(func=cmd_check)

    exp = sub.add_parser("explain", help="explain the answer to a query")
    common(exp)
    exp.add_argument("name")
    exp.add_argument("qtype", nargs="?", default="A")
    exp.add_argument("--client", default="198.51.100.5", help="resolver IP the query comes from")
    exp.add_argument("--ecs", help="EDNS Client Subnet, e.g. 203.0.113.0/24")
    exp.add_argument("--pop", help="PoP receiving the query")
    exp.add_argument("--geoip-db")
    exp.add_argument("--health-from", metavar="URL",
                     help="admin URL of a running server to take health from (default http://127.0.0.1:8053)")
    exp.add_argument("--no-geoip", action="store_true", help="ignore GeoIP (location = PoP)")
    exp.set_defaults(func=cmd_explain)

    try:
        from lbdns.importers.cli import add_import_commands
    except ImportError:
        pass
    else:
        add_import_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lbdns`` console script; returns the exit status."""
    if list(sys.argv[1:] if argv is None else argv)[:1] == ["serve"]:
        # first: a SIGHUP (logrotate, systemctl reload) while serve starts must not kill it;
        # it is queued and becomes one reload once the server is up
        signal.signal(signal.SIGHUP, _queue_sighup)
    parser = build_parser()
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
