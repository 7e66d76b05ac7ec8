"""The ``lbdns`` command: ``serve``, ``check``, ``explain``, ``status`` (and importers). The only
module that prints for the user and exits.

Every user error ends in one line on stderr, ``lbdns <command>: <what is wrong>`` (configuration
problems: one ``file:line:col: key.path: CODE: message`` line each), and a non-zero exit status:
1 for an invalid configuration or a failed start, 2 for bad arguments, 3 for ``status`` when the
admin listener cannot be reached.
"""

from __future__ import annotations

import signal
import sys
import time
from typing import Any

_startup_sighups: list[float] = []
"""SIGHUPs received while ``serve`` starts, before the event loop handles them (see main)."""


def _queue_sighup(signum: int, frame: Any) -> None:
    _startup_sighups.append(time.monotonic())


if sys.argv[1:2] == ["serve"] and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
    # `lbdns serve` as a process: a SIGHUP (logrotate, systemctl reload) that arrives while the
    # modules below are still being imported must not kill it; main() installs the same handler
    # for callers that pass argv. Queued SIGHUPs become one reload once the server is up.
    signal.signal(signal.SIGHUP, _queue_sighup)

# The imports below come after the early SIGHUP handler on purpose (pydantic alone takes
# ~0.2 s to import); E402 is waived for this file in pyproject.toml.
import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from lbdns.config.read_settings import load_settings
from lbdns.config.settings import Listener, ServerSettings
from lbdns.errors import ConfigError, LbdnsError

DEFAULT_PORT = Listener.model_fields["port"].default
"""The DNS port of the default listener (5300: not mDNS's 5353, not in /etc/services)."""


class CliError(Exception):
    """A user error: the one-line message (without the ``lbdns <command>:`` prefix) and the
    exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def _addr_port(option: str, spec: str, default_address: str) -> tuple[str, int]:
    """``ADDR:PORT``, ``[IPv6]:PORT`` or ``:PORT`` → (address, port). Raises CliError naming
    ``option`` when ``spec`` is not of that form."""
    addr, sep, port_text = spec.rpartition(":")
    bare = addr[1:-1] if addr.startswith("[") and addr.endswith("]") else addr
    example = f"e.g. 127.0.0.1:{DEFAULT_PORT} or [::1]:{DEFAULT_PORT}"
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise CliError(f"{option} {spec!r}: expected ADDRESS:PORT with a port 0–65535 ({example})")
    try:
        ipaddress.ip_address(bare or default_address)
    except ValueError:
        raise CliError(f"{option} {spec!r}: {bare!r} is not an IP address ({example})") from None
    return bare or default_address, int(port_text)


def _config_path(args: argparse.Namespace) -> Path | None:
    """The settings file: ``--config`` (which must exist), else ./lbdns.yaml when present."""
    given = getattr(args, "config", None)
    if given:
        path = Path(given)
        if not path.is_file():
            raise CliError(f"--config {given}: {'is a directory' if path.is_dir() else 'no such file'}")
        return path
    return Path("lbdns.yaml") if Path("lbdns.yaml").is_file() else None


def _settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The server settings: the settings file (see :func:`_config_path`) overridden by the
    command-line options. Raises CliError (bad option) or ConfigError (bad settings file)."""
    cfg_path = _config_path(args)
    args.config_path = cfg_path
    settings = load_settings(cfg_path)
    updates: dict[str, object] = {}
    if getattr(args, "zones", None):
        updates["zones_dir"] = args.zones
    if getattr(args, "pop", None):
        updates["pop"] = args.pop.upper()
    if getattr(args, "geoip_db", None):
        updates["geoip_city_db"] = args.geoip_db
    if getattr(args, "geoip_asn_db", None):
        updates["geoip_asn_db"] = args.geoip_asn_db
    if getattr(args, "plan", None):
        updates["plan"] = args.plan
    if getattr(args, "log_format", None):
        updates["log_format"] = args.log_format
    if getattr(args, "listen", None):
        listeners = []
        for spec in args.listen:
            address, port = _addr_port("--listen", spec, "127.0.0.1")
            listeners.append(Listener(address=address, port=port))
        updates["listen"] = listeners
    if getattr(args, "no_probes", False):
        updates["probes_enabled"] = False
    if getattr(args, "no_warm_start", False):
        updates["warm_start"] = False
    admin = getattr(args, "admin", None)
    if admin:
        if admin == "off":
            updates["admin"] = settings.admin.model_copy(update={"enabled": False})
        else:
            address, port = _addr_port("--admin", admin, "127.0.0.1")
            updates["admin"] = settings.admin.model_copy(update={"enabled": True, "address": address, "port": port})
    return settings.model_copy(update=updates) if updates else settings


def _check_pops(settings: ServerSettings, args: argparse.Namespace) -> None:
    """Every PoP the server would use (``pop``, ``listen[].pop``) is in the PoP catalogue.
    Raises CliError blaming ``--pop`` or the settings file, whichever named the PoP."""
    from lbdns.geo.data import GeoDataError, load_pops

    try:
        catalogue = load_pops(Path(settings.pops_file) if settings.pops_file else None)
    except GeoDataError as exc:
        raise CliError(f"pops_file: {exc}", 1) from None
    where = f"pops_file {settings.pops_file}" if settings.pops_file else "the PoP catalogue"
    hint = f"not in {where} (IATA codes such as IAD, LHR, NRT; pops_file in lbdns.yaml adds your own)"
    if settings.pop not in catalogue:
        if getattr(args, "pop", None):
            raise CliError(f"--pop {settings.pop}: unknown PoP, {hint}")
        raise CliError(f"{args.config_path or 'the default settings'}: pop {settings.pop}: unknown PoP, {hint}", 1)
    for i, lst in enumerate(settings.listen):
        if lst.pop is not None and lst.pop not in catalogue:
            raise CliError(f"{args.config_path}: listen[{i}].pop {lst.pop}: unknown PoP, {hint}", 1)


def _print_issues(exc: ConfigError) -> None:
    errors = [i for i in exc.issues if i.is_error]
    for issue in exc.issues:
        print(issue, file=sys.stderr if issue.is_error else sys.stdout)
    if len(exc.issues) > 1:
        print(f"{len(errors)} error(s), {len(exc.issues) - len(errors)} warning(s)", file=sys.stderr)


# -- check --------------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    """``lbdns check [DIR]``: print every problem; exit 1 when there are errors (or no zones
    and no ``--allow-empty``)."""
    from lbdns.config.validate import load_config

    if args.directory and args.zones and Path(args.directory) != Path(args.zones):
        raise CliError(f"two zones directories given: DIR {args.directory!r} and --zones {args.zones!r} "
                       "(give one)")
    if args.directory:
        args.zones = args.directory
    settings = _settings_from_args(args)
    directory = Path(settings.zones_dir)
    try:
        loaded = load_config(directory, settings)
    except ConfigError as exc:
        _print_issues(exc)
        return 1
    _check_pops(settings, args)
    for w in loaded.config.warnings:
        print(w)
    zones = len(loaded.config.zones)
    lbs = sum(len(z.load_balancers) for z in loaded.config.zones)
    summary = (f"{zones} zone(s), {lbs} load balancer(s), {len(loaded.config.pools)} pool(s), "
               f"{len(loaded.config.monitors)} monitor(s), {len(loaded.config.warnings)} warning(s)")
    if zones == 0 and not args.allow_empty:
        print(f"lbdns check: {directory}: no zones (no file with 'zone:' among its *.yaml files); "
              f"the server would answer REFUSED to everything ({summary}; --allow-empty accepts this)",
              file=sys.stderr)
        return 1
    print(f"ok: {summary}")
    return 0


# -- serve --------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    """``lbdns serve``: run the server until SIGTERM."""
    from lbdns import logpipe

    settings = _settings_from_args(args)
    _check_pops(settings, args)
    pipe = logpipe.install(getattr(logging, args.log_level.upper()), fmt=settings.log_format)
    try:
        return _serve(args, settings)
    finally:
        pipe.stop()


def _serve(args: argparse.Namespace, settings: ServerSettings) -> int:
    from lbdns.app import App

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    app = App(settings, Path(settings.zones_dir), startup_sighups=_startup_sighups, prestart_builder=True)

    async def main() -> int:
        from lbdns.listeners import ListenError

        try:
            await app.start()
        except ConfigError as exc:
            await _stop_quietly(app)
            _print_issues(exc)
            return 1
        except LbdnsError as exc:  # GeoDataError: a GeoIP database or data file
            await _stop_quietly(app)
            print(f"lbdns serve: {exc}", file=sys.stderr)
            return 1
        except ListenError as exc:
            await _stop_quietly(app)
            print(f"lbdns serve: {exc}", file=sys.stderr)
            return 1
        except (OSError, ValueError) as exc:  # spawning the probe worker, an upstream resolver
            await _stop_quietly(app)
            print(f"lbdns serve: cannot start: {exc}", file=sys.stderr)
            return 1
        log = logging.getLogger("lbdns")
        for line in startup_summary(app):
            log.info("%s", line)
        await app.run_forever(watch=not args.no_watch)
        return 0

    try:
        return asyncio.run(main())
    finally:  # the loop gave SIGHUP back to its default action (terminate) when it closed
        signal.signal(signal.SIGHUP, signal.SIG_IGN)


async def _stop_quietly(app: Any) -> None:
    with contextlib.suppress(Exception):  # cleaning up after a failed start, whose error is reported
        await app.stop()


def startup_summary(app: Any) -> list[str]:
    """The start-up summary lines of a started :class:`~lbdns.app.App`: version, PoP,
    configuration counts, GeoIP database (file, type, build date), health probing, admin
    listener. The listeners have their own ``listening on`` lines."""
    from lbdns import __version__
    from lbdns.listeners import host_port

    s = app.settings
    cfg = app.loaded.config
    names = sorted(z.origin.to_text() for z in cfg.zones)
    shown = ", ".join(names[:5]) + (f", … ({len(names) - 5} more)" if len(names) > 5 else "")
    pop = app.pops.get(s.pop)
    lbs = sum(len(z.load_balancers) for z in cfg.zones)
    lines = [
        f"lbdns {__version__} started: PoP {s.pop}" + (f" ({pop.region})" if pop else "")
        + f", plan {s.plan}, configuration generation {app.generation}",
        f"configuration: {len(names)} zone(s) from {app.zones_dir} ({shown or 'none'}), {lbs} load balancer(s), "
        f"{len(cfg.pools)} pool(s), {len(cfg.monitors)} monitor(s)",
    ]
    if app.geo_db is not None:
        embedded = "" if s.geoip_city_db else " [embedded demo data: set geoip_city_db to a current database]"
        lines.append(f"GeoIP: {app.geo_db.describe()}{embedded}")
    else:
        lines.append("GeoIP: none (locations come from the PoP)")
    if app.health_runtime is not None:
        where = "in a worker process" if s.probe_isolation == "process" else "in the server process"
        lines.append(f"health: {len(cfg.monitors)} monitor(s), probes {where}"
                     + (", warm start done" if s.warm_start else ", no warm start"))
    else:
        lines.append("health: " + ("no monitors" if s.probes_enabled else "probes disabled")
                     + (f", {len(s.health_overrides)} static override(s)" if s.health_overrides else ""))
    if getattr(app, "workers", None) is not None:
        lines.append(f"answering: {app.workers.count} worker processes (workers: {s.workers}), "
                     "this process is the control process")
    if app.admin is not None:
        lines.append(f"admin: http://{host_port(s.admin.address, app.admin.port)} (/status, /metrics)")
    else:
        lines.append("admin: off")
    return lines


# -- explain ------------------------------------------------------------------------------------

def cmd_explain(args: argparse.Namespace) -> int:
    """``lbdns explain NAME [TYPE]``: show why the answer is what it is."""
    from lbdns.explain import explain

    logging.getLogger("lbdns").addHandler(logging.NullHandler())  # failures are in the report
    settings = _settings_from_args(args)
    try:
        text = explain(settings, args.name, args.qtype, client=args.client, ecs=args.ecs, pop=args.pop,
                       admin_url=args.health_from, use_geoip=not args.no_geoip)
    except ConfigError as exc:
        _print_issues(exc)
        return 1
    except LbdnsError as exc:  # GeoDataError
        raise CliError(str(exc), 1) from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    print(text)
    return 0


# -- status -------------------------------------------------------------------------------------

def _admin_token(args: argparse.Namespace) -> str | None:
    """The admin API token: ``--token-file`` (first line), else ``$LBDNS_ADMIN_TOKEN``, else None."""
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"--token-file {args.token_file}: {exc.strerror or exc}") from None
        if not token:
            raise CliError(f"--token-file {args.token_file}: the file is empty")
        return token
    return os.environ.get("LBDNS_ADMIN_TOKEN") or None


def fetch_status(url: str, token: str | None, timeout: float) -> dict[str, Any]:
    """GET ``url``/status of a running lbdns (``Authorization: Bearer`` when ``token``).
    Returns the JSON document. Raises CliError with one line (exit 3) when the admin listener
    cannot be reached or does not answer like lbdns."""
    target = url.rstrip("/") + "/status"
    req = urllib.request.Request(target, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:
        hint = " (give the admin token: $LBDNS_ADMIN_TOKEN or --token-file)" if exc.code in (401, 403) else ""
        raise CliError(f"{target}: HTTP {exc.code} {exc.reason}{hint}", 3) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        text = getattr(reason, "strerror", None) or str(reason)
        raise CliError(f"cannot reach the admin listener at {url}: {text} (is `lbdns serve` running with "
                       "its admin listener there? see --admin)", 3) from None
    except ValueError as exc:  # a malformed URL
        raise CliError(f"--admin {url!r}: {exc}") from None
    try:
        doc = json.loads(body)
        if not isinstance(doc, dict) or not isinstance(doc.get("pools"), list):
            raise ValueError
    except ValueError:
        raise CliError(f"{target}: the answer is not an lbdns status document", 3) from None
    return doc


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [[str(c) for c in header]] + [["-" if c is None or c == "" else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]


def format_status(doc: dict[str, Any]) -> str:
    """The ``/status`` document as readable tables: load balancers, pools, origins."""
    out = [f"generation {doc.get('generation', '?')}, health version {doc.get('health_version', '?')}", ""]
    lbs = doc.get("load_balancers") or []
    if lbs:
        out += _table(["LOAD BALANCER", "ENABLED", "POLICY", "STATUS", "DEFAULT POOLS", "FALLBACK", "TTL"], [
            [lb.get("name"), "yes" if lb.get("enabled") else "no", lb.get("steering_policy") or "''",
             lb.get("status"), ", ".join(lb.get("default_pools") or []), lb.get("fallback_pool"), lb.get("ttl")]
            for lb in lbs])
        out.append("")
    pools = doc.get("pools") or []

    def rtt(v: object) -> str:
        return f"{v:.1f} ms" if isinstance(v, int | float) else "-"

    def operator(ctl: object) -> str:
        if not isinstance(ctl, dict):
            return "-"
        drain = ctl.get("drain")
        done = "" if not isinstance(drain, dict) else " (complete)" if drain.get("complete") else " (in progress)"
        return f"{ctl.get('state')}{done}"

    out += _table(["POOL", "ENABLED", "STATUS", "OPERATOR", "HEALTH FROM", "HEALTHY", "RTT", "FALLBACK FOR"], [
        [p.get("name"), "yes" if p.get("enabled") else "no", p.get("status"), operator(p.get("control")),
         p.get("monitor") or (f"group {p['monitor_group']}" if p.get("monitor_group") else "not monitored"),
         f"{sum(1 for o in p.get('origins', []) if o.get('healthy_for_steering'))}/{len(p.get('origins', []))}"
         f" (min {p.get('minimum_origins')})", rtt(p.get("rtt_ewma_ms")),
         ", ".join(p.get("serving_as_fallback_for") or [])]
        for p in pools])
    out.append("")
    rows = []
    for p in pools:
        for o in p.get("origins", []):
            reason = o.get("failure_reason") or ""
            if reason == "static override":
                reason = "override (health_overrides)"
            elif o.get("health") == "healthy":
                reason = ""  # the probe's "No failures"
            elif o.get("response_code") is not None and reason:
                reason += f" (response code {o['response_code']})"
            rows.append([f"{p.get('name')}/{o.get('name')}", o.get("address"), "yes" if o.get("enabled") else "no",
                         o.get("weight"), o.get("health"), operator(o.get("control")), rtt(o.get("rtt_ms")),
                         reason])
    out += _table(["POOL/ORIGIN", "ADDRESS", "ENABLED", "WEIGHT", "HEALTH", "OPERATOR", "RTT", "REASON"], rows)
    workers = doc.get("workers") or []
    if workers:  # workers: N (docs/operations.md "Workers")
        out.append("")
        out += _table(["WORKER", "PID", "RUNNING", "GENERATION", "HEALTH VERSION", "QUERIES", "RESTARTS"], [
            [w.get("worker"), w.get("pid"), "yes" if w.get("running") else "no", w.get("generation"),
             w.get("health_version"), w.get("queries"), w.get("restarts")] for w in workers])
    return "\n".join(out)


def _admin_url(args: argparse.Namespace) -> str:
    """The admin listener URL: ``--admin``, else the settings file's admin address."""
    from lbdns.listeners import host_port

    if args.admin:
        return str(args.admin) if "://" in args.admin else f"http://{args.admin}"
    a = _settings_from_args(argparse.Namespace(config=args.config)).admin
    if not a.enabled:
        raise CliError("the admin listener is off in the settings file; give --admin URL")
    return f"http://{host_port(a.address, a.port)}"


def admin_post(url: str, path: str, body: dict[str, Any], token: str | None, timeout: float) -> dict[str, Any]:
    """POST ``body`` as JSON to ``url``+``path`` with the bearer ``token``; returns the JSON
    answer. Raises CliError: exit 3 when unreachable, 1 when the server refuses (its error text,
    and the valid names for an unknown pool or origin)."""
    target = url.rstrip("/") + path
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(target, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc: dict[str, Any] = json.loads(resp.read())
            return doc
    except urllib.error.HTTPError as exc:
        try:
            err = json.loads(exc.read())
        except ValueError:
            err = {}
        text = err.get("error", exc.reason) if isinstance(err, dict) else exc.reason
        valid = next((v for k, v in (err.items() if isinstance(err, dict) else ()) if k.startswith("valid_")), None)
        hint = f" (valid: {', '.join(map(str, valid))})" if valid else ""
        if exc.code in (401, 403):
            hint = " (give the admin token: $LBDNS_ADMIN_TOKEN or --token-file)"
        raise CliError(f"{target}: HTTP {exc.code}: {text}{hint}", 1) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach the admin listener at {url}: {getattr(reason, 'strerror', None) or reason}",
                       3) from None


def cmd_control(args: argparse.Namespace) -> int:
    """``lbdns control``: set the operator state of a pool or origin (POST /control)."""
    doc = admin_post(_admin_url(args), "/control",
                     {"pool": args.pool, "origin": args.origin, "state": args.state,
                      "who": args.who or os.environ.get("USER", ""), "why": args.why or ""},
                     _admin_token(args), args.timeout)
    what = f"pool {args.pool}" + (f" origin {args.origin}" if args.origin else "")
    print(f"{what}: {doc.get('previous')} -> {doc.get('state')}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``lbdns report``: push the health of an origin (POST /report)."""
    body: dict[str, Any] = {"pool": args.pool, "origin": args.origin, "healthy": args.healthy}
    if args.rtt_ms is not None:
        body["rtt_ms"] = args.rtt_ms
    if args.reason:
        body["reason"] = args.reason
    if args.expires_in is not None:
        body["expires_in"] = args.expires_in
    doc = admin_post(_admin_url(args), "/report", body, _admin_token(args), args.timeout)
    print(f"pool {args.pool} origin {args.origin}: {'healthy' if args.healthy else 'unhealthy'} "
          f"for {doc.get('expires_in')} s")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``lbdns status``: pools, origins and health of a running server, from its admin API."""
    url = _admin_url(args)
    doc = fetch_status(url, _admin_token(args), args.timeout)
    print(json.dumps(doc, indent=2) if args.json else format_status(doc))
    return 0


# -- parser -------------------------------------------------------------------------------------

_FMT = argparse.RawDescriptionHelpFormatter

SERVE_EPILOG = f"""\
examples:
  lbdns serve                                  # ./lbdns.yaml if present, else zones/ on 127.0.0.1:{DEFAULT_PORT}
  lbdns serve --zones /etc/lbdns/zones --listen 0.0.0.0:53 --listen [::]:53 --pop FRA
  lbdns serve --config /etc/lbdns/lbdns.yaml --log-format json

SIGHUP (or a change in the zones directory) reloads; a bad reload keeps the last good
configuration. SIGTERM stops. Logs go to stderr. The admin listener (default
127.0.0.1:8053) serves /status, /metrics and /healthz; see `lbdns status`."""

CHECK_EPILOG = """\
examples:
  lbdns check                      # the zones directory of ./lbdns.yaml, else zones/
  lbdns check /etc/lbdns/zones
  lbdns check --config /etc/lbdns/lbdns.yaml

Each problem is printed as FILE:LINE:COLUMN: KEY.PATH: CODE: MESSAGE, with FILE as you
named the directory. Exit status: 0 valid, 1 errors (or no zones, unless --allow-empty),
2 bad arguments."""

EXPLAIN_EPILOG = f"""\
examples:
  lbdns explain www.example.com                    # A, from 127.0.0.1, at this server's PoP
  lbdns explain geo.example.net A --ecs 81.2.69.0/24
  lbdns explain www.example.com AAAA --pop LHR --client 198.51.100.7
  lbdns explain www.example.com --health-from http://127.0.0.1:8053

The report runs the server's own answer code with tracing on: rules, client location,
every pool tried and why it was used or skipped, the chosen pool, single or multi answer,
and the answer records. Health comes from a running server's /status when one answers at
--health-from; otherwise monitored origins count as unknown (down). Hostname origins are
resolved through upstream_resolvers as the server resolves them. The default --client
is the address `dig @127.0.0.1 -p {DEFAULT_PORT}` queries come from on this host."""

STATUS_EPILOG = """\
examples:
  lbdns status                                     # the admin listener of ./lbdns.yaml, else 127.0.0.1:8053
  lbdns status --admin http://10.0.0.5:8053 --token-file /etc/lbdns/admin-token
  lbdns status --json | jq '.pools[] | {name, status}'

Exit status: 0, 2 bad arguments, 3 the admin listener cannot be reached."""


def add_health_commands(sub: Any) -> None:
    """The ``control`` and ``report`` sub-commands (operator state and pushed health)."""
    def admin_client(p: argparse.ArgumentParser) -> None:
        p.add_argument("--admin", metavar="URL",
                       help="admin listener URL (default: admin in the settings file, else http://127.0.0.1:8053)")
        p.add_argument("--config", metavar="FILE", help="settings file to take the admin address from")
        p.add_argument("--token-file", metavar="FILE",
                       help="file holding the admin API token (default: $LBDNS_ADMIN_TOKEN if set)")
        p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS", help="request timeout (default 10)")

    ctl = sub.add_parser("control", help="set the operator state of a pool or origin", formatter_class=_FMT,
                         description="Set the durable operator state of a pool or one of its origins through the "
                                     "admin API (POST /control): auto (monitors decide), force_up, force_down, "
                                     "drain. It survives probe results, reloads and restarts.",
                         epilog="examples:\n  lbdns control drain p-eu eu1 --why 'kernel upgrade'\n"
                                "  lbdns control auto p-eu eu1\n  lbdns control force_down p-eu\n")
    ctl.add_argument("state", choices=["auto", "force_up", "force_down", "drain"], help="the operator state")
    ctl.add_argument("pool", help="pool name")
    ctl.add_argument("origin", nargs="?", help="origin name (omit for the whole pool)")
    ctl.add_argument("--who", help="who decides (default: $USER)")
    ctl.add_argument("--why", help="why (kept in /status and the log)")
    admin_client(ctl)
    ctl.set_defaults(func=cmd_control)

    rep = sub.add_parser("report", help="push the health of an origin", formatter_class=_FMT,
                         description="Report an origin's health from an external system (POST /report); the pool "
                                     "needs a monitor of type external. The report expires after --expires-in "
                                     "seconds (default: 3 × that monitor's interval).")
    rep.add_argument("pool", help="pool name")
    rep.add_argument("origin", help="origin name")
    up = rep.add_mutually_exclusive_group(required=True)
    up.add_argument("--healthy", dest="healthy", action="store_true")
    up.add_argument("--unhealthy", dest="healthy", action="store_false")
    rep.add_argument("--rtt-ms", type=float, help="round-trip time in milliseconds (feeds dynamic steering)")
    rep.add_argument("--reason", help="failure reason for an unhealthy report")
    rep.add_argument("--expires-in", type=float, metavar="SECONDS")
    admin_client(rep)
    rep.set_defaults(func=cmd_report)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``lbdns`` command."""
    from lbdns import __version__
    from lbdns.explain import DEFAULT_CLIENT

    parser = argparse.ArgumentParser(
        prog="lbdns", formatter_class=_FMT,
        description="Authoritative DNS server with DNS-only load balancing modelled on Cloudflare Load "
                    "Balancing.",
        epilog=f"Run `lbdns COMMAND --help` for a command's options and examples. Default DNS listener: "
               f"127.0.0.1:{DEFAULT_PORT} (UDP and TCP).")
    parser.add_argument("--version", action="version", version=f"lbdns {__version__}",
                        help="print the installed version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE",
                       help="server settings file (default: ./lbdns.yaml if present, else built-in defaults)")
        p.add_argument("--zones", metavar="DIR",
                       help="zones directory (default: zones_dir of the settings file, else ./zones)")
        p.add_argument("--plan", choices=["enterprise", "non_enterprise"],
                       help="feature set to validate against (default: plan in the settings file, else enterprise)")

    serve = sub.add_parser("serve", help="serve the zones over UDP and TCP", formatter_class=_FMT,
                           description="Serve the zones over UDP and TCP until SIGTERM.", epilog=SERVE_EPILOG)
    common(serve)
    serve.add_argument("--listen", action="append", metavar="ADDR:PORT",
                       help=f"listen on ADDR:PORT (UDP and TCP; IPv6 as [::1]:{DEFAULT_PORT}); repeatable "
                            f"(default: listen in the settings file, else 127.0.0.1:{DEFAULT_PORT})")
    serve.add_argument("--pop", metavar="CODE", help="this server's PoP, an IATA code such as IAD or LHR "
                                                     "(default: pop in the settings file, else IAD)")
    serve.add_argument("--geoip-db", metavar="FILE",
                       help="GeoIP2/GeoLite2/DB-IP City MMDB (default: the embedded GeoLite2-City of 2018)")
    serve.add_argument("--geoip-asn-db", metavar="FILE", help="GeoLite2 ASN MMDB for the rule field ip.src.asnum")
    serve.add_argument("--admin", metavar="ADDR:PORT|off",
                       help="admin HTTP listener for /status and /metrics (default 127.0.0.1:8053), or off")
    serve.add_argument("--no-probes", action="store_true", help="do not run health monitors")
    serve.add_argument("--no-warm-start", action="store_true",
                       help="answer at once instead of after one probe round")
    serve.add_argument("--no-watch", action="store_true", help="do not poll the zones directory for changes")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="lowest level logged to stderr (default info)")
    serve.add_argument("--log-format", choices=["text", "json"],
                       help="log line format (default: log_format in the settings file, else text)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate the zones and print every problem", formatter_class=_FMT,
                           description="Validate the settings and every zone file, and print every problem.",
                           epilog=CHECK_EPILOG)
    common(check)
    check.add_argument("directory", nargs="?", metavar="DIR", help="zones directory (the same as --zones)")
    check.add_argument("--allow-empty", action="store_true",
                       help="exit 0 even when the directory holds no zones")
    check.set_defaults(func=cmd_check)

    exp = sub.add_parser("explain", help="explain the answer to a query", formatter_class=_FMT,
                         description="Explain the answer lbdns gives to one query.", epilog=EXPLAIN_EPILOG)
    common(exp)
    exp.add_argument("name", metavar="NAME", help="query name, e.g. www.example.com")
    exp.add_argument("qtype", nargs="?", default="A", metavar="TYPE", help="query type (default A)")
    exp.add_argument("--client", default=DEFAULT_CLIENT, metavar="IP",
                     help=f"address of the resolver sending the query (default {DEFAULT_CLIENT})")
    exp.add_argument("--ecs", metavar="SUBNET",
                     help="EDNS Client Subnet of the query, e.g. 203.0.113.0/24 or 2001:db8::/56 (default none)")
    exp.add_argument("--pop", metavar="CODE",
                     help="PoP receiving the query (default: pop in the settings file, else IAD)")
    exp.add_argument("--geoip-db", metavar="FILE", help="GeoIP City MMDB (default: as the server)")
    exp.add_argument("--health-from", metavar="URL",
                     help="admin URL of a running server to take health from (default: the admin listener "
                          "of the settings, http://127.0.0.1:8053)")
    exp.add_argument("--no-geoip", action="store_true", help="ignore GeoIP (the location is the PoP)")
    exp.set_defaults(func=cmd_explain)

    st = sub.add_parser("status", help="show pools, origins and health of a running server", formatter_class=_FMT,
                        description="Show load balancers, pools, origins and their health from the admin API "
                                    "(GET /status) of a running lbdns.", epilog=STATUS_EPILOG)
    st.add_argument("--admin", metavar="URL",
                    help="admin listener URL (default: admin in the settings file, else http://127.0.0.1:8053)")
    st.add_argument("--config", metavar="FILE", help="settings file to take the admin address from "
                                                      "(default: ./lbdns.yaml if present)")
    st.add_argument("--token-file", metavar="FILE",
                    help="file holding the admin API token (default: $LBDNS_ADMIN_TOKEN if set)")
    st.add_argument("--json", action="store_true", help="print the /status JSON document as it is")
    st.add_argument("--timeout", type=float, default=3.0, metavar="SECONDS", help="request timeout (default 3)")
    st.set_defaults(func=cmd_status)

    add_health_commands(sub)

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
    try:
        rc: int = args.func(args)
    except CliError as exc:
        print(f"lbdns {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except ConfigError as exc:  # the settings file
        _print_issues(exc)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `lbdns status --json | head`: the reader left; exit quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return rc


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
