"""Building a reloaded configuration's snapshot in another process, so that a reload never
stalls answering (docs/architecture.md, "Reloads: built elsewhere, installed in slices").

Why a process: validating and compiling a configuration is CPU-bound Python (YAML, pydantic,
dnspython). In a thread of the server it holds the GIL most of the time, and the garbage
collections its million allocations trigger pause the whole process: a 30,000-record reload
took ~10 s and held answering up to 1.2 s. In another process it runs on another CPU at a
lower priority, with garbage collection off, in ~3 s; a configuration that exhausts memory
takes down that process, not the server.

The builder (``python -m lbdns.builder``, :class:`Builder` on the server side) is started once,
while the server is still small, and imports the validator once. For each build it forks a
child — cheap, unlike forking the server, which holds answering ~20 ms per 200 MB — that
builds, answers and exits, so its memory returns to the system after every build.

Protocol (frames of :mod:`lbdns.ipc`) on the builder's stdin/stdout: the server writes
``("build", zones_dir, settings, generation, chunk_nodes)``. The child answers
``("started", pid)``, then ``("rejected", issues)`` when the configuration has errors, or
``("head", blob)`` (configuration models, compiled pools, load-balancer plans, zone
headers), one ``("nodes", zone_index, blob)`` per at most ``chunk_nodes`` owner names and
``("done", node_count)``, or ``("failed", text)`` after an unexpected exception. The builder
then reaps it and writes ``("exit", status)``. Each ``blob`` is a pickle that the server loads
in its own event-loop step (:class:`Assembly`), so no single step holds the query loop long.

Compiled rule conditions are closures: they travel as their source text and are compiled
again on arrival, counting their run-time errors into the receiving side's counter
(:class:`Assembly`'s ``rule_errors``); ``Node.lb`` travels as the plan's name (a pickle persistent id), so every
node points at the one plan object of the head.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from lbdns.errors import ConfigError
from lbdns.ipc import FRAME, MAX_FRAME, encode, read_message

if TYPE_CHECKING:  # imported where used: the builder process lowers its priority before these
    from lbdns.config.settings import ServerSettings
    from lbdns.config.validate import Config
    from lbdns.rules.compiler import CompiledCondition
    from lbdns.snapshot import LbPlan, Node, Snapshot

CHUNK_NODES = 250
"""Owner names per ``nodes`` frame: 1–3 ms of unpickling on the server's loop."""
BUILD_TIMEOUT_S = 900.0
"""Seconds a build may take before the builder is killed and the reload fails."""

_NO_RRSETS: Mapping[Any, Any] = MappingProxyType({})


class BuildError(Exception):
    """The builder process failed (could not start, crashed, timed out, or sent nonsense)."""


def lean_config(config: Config) -> Config:
    """``config`` with every zone's dnspython RRsets dropped: a served snapshot holds them
    encoded in its node index, and nothing else reads them after the build. About half of a
    record-heavy configuration's memory and unpickling time."""
    return replace(config, zones=tuple(replace(z, rrsets=_NO_RRSETS) for z in config.zones))


# -- pickling ------------------------------------------------------------------------------------


def _mapping_proxy(d: dict[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(d)


def _condition(source: str) -> CompiledCondition:
    """The reconstructor a pickled condition names: compiled again, run-time errors not counted
    (:class:`_Unpickler` swaps in its own, which counts them)."""
    from lbdns.rules import compile_counted

    return compile_counted(source, None)


class _Pickler(pickle.Pickler):
    """Pickles snapshot parts: mapping proxies as dicts, compiled conditions as their source;
    with ``plans_by_name`` every :class:`LbPlan` as a persistent id (its name)."""

    def __init__(self, file: io.BytesIO, *, plans_by_name: bool) -> None:
        from lbdns.rules.compiler import CompiledCondition
        from lbdns.snapshot import LbPlan

        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._plan_type: type[LbPlan] | None = LbPlan if plans_by_name else None
        self._condition_type = CompiledCondition

    def reducer_override(self, obj: Any) -> Any:
        t = type(obj)
        if t is MappingProxyType:
            return _mapping_proxy, (dict(obj),)
        if t is self._condition_type:
            return _condition, (obj.source,)
        return NotImplemented

    def persistent_id(self, obj: Any) -> Any:
        if self._plan_type is not None and isinstance(obj, self._plan_type):
            return obj.name
        return None


class _Unpickler(pickle.Unpickler):
    """Loads snapshot parts: plans by name from ``plans``; conditions compiled again with their
    run-time errors counted into ``rule_errors`` (None: not counted)."""

    def __init__(self, data: bytes, plans: Mapping[str, LbPlan],
                 rule_errors: MutableMapping[str, int] | None = None) -> None:
        super().__init__(io.BytesIO(data))
        self._plans = plans
        self._rule_errors = rule_errors

    def find_class(self, module: str, name: str) -> Any:
        if name == "_condition" and module == __name__:
            return self._condition
        return super().find_class(module, name)

    def _condition(self, source: str) -> CompiledCondition:
        from lbdns.rules import compile_counted

        return compile_counted(source, self._rule_errors)

    def persistent_load(self, pid: Any) -> Any:
        return self._plans[pid]


def _dumps(obj: Any, *, plans_by_name: bool = False) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, plans_by_name=plans_by_name).dump(obj)
    return buf.getvalue()


def snapshot_frames(snapshot: Snapshot, chunk_nodes: int = CHUNK_NODES) -> Iterator[bytes]:
    """The frames (``head``, ``nodes``…, ``done``) that carry ``snapshot`` to the server."""
    zones = list(snapshot.zones.values())
    head = (snapshot.generation, lean_config(snapshot.config), dict(snapshot.pools), dict(snapshot.plans),
            [replace(z, nodes=_NO_RRSETS) for z in zones])  # zone headers: every field but the nodes
    yield encode(("head", _dumps(head)))
    total = 0
    for zi, zone in enumerate(zones):
        nodes = list(zone.nodes.values())
        total += len(nodes)
        for i in range(0, len(nodes), chunk_nodes):
            yield encode(("nodes", zi, _dumps(nodes[i:i + chunk_nodes], plans_by_name=True)))
    yield encode(("done", total))


class Assembly:
    """The server side: takes the builder's messages one at a time (:meth:`take`) and makes
    the :class:`Snapshot` (:meth:`snapshot`). ``node_dicts`` are the zones' node tables;
    ``rule_errors`` is the receiving process's counter of rule conditions failing at run time,
    per condition text (None: not counted)."""

    def __init__(self, rule_errors: MutableMapping[str, int] | None = None) -> None:
        self.rule_errors = rule_errors
        self._head: tuple[Any, ...] | None = None
        self.node_dicts: list[dict[bytes, Node]] = []
        self._expected: int | None = None

    def take(self, msg: tuple[Any, ...]) -> bool:
        """Apply one message; True after ``done``. Raises BuildError for a message out of place."""
        kind = msg[0]
        if kind == "head" and self._head is None:
            self._head = _Unpickler(msg[1], {}, self.rule_errors).load()
            self.node_dicts = [{} for _ in self._head[4]]
            return False
        if self._head is None:
            raise BuildError(f"snapshot builder sent {kind!r} before its head")
        if kind == "nodes":
            table = self.node_dicts[msg[1]]
            for node in _Unpickler(msg[2], self._head[3], self.rule_errors).load():
                table[node.name] = node
            return False
        if kind == "done":
            self._expected = int(msg[1])
            return True
        raise BuildError(f"snapshot builder sent an unknown message {kind!r}")

    def snapshot(self, settings: ServerSettings) -> Snapshot:
        """The assembled snapshot (with ``settings``, the server's own). Raises BuildError when
        a part is missing."""
        from lbdns.snapshot import Snapshot

        if self._head is None or self._expected is None:
            raise BuildError("snapshot builder stopped before sending the whole snapshot")
        got = sum(len(d) for d in self.node_dicts)
        if got != self._expected:
            raise BuildError(f"snapshot builder sent {got} of {self._expected} names")
        generation, config, pools, plans, headers = self._head
        zones = {z.origin: replace(z, nodes=MappingProxyType(nodes))
                 for z, nodes in zip(headers, self.node_dicts, strict=True)}
        return Snapshot(MappingProxyType(zones), MappingProxyType(pools), MappingProxyType(plans), config, settings,
                        generation)


# -- server side ---------------------------------------------------------------------------------


async def yield_to_queries(started: float) -> None:
    """Pause a background job for as long as its last step took (``started`` is a
    ``time.perf_counter()`` reading from before the step), so that the event loop spends at
    least half its time on everything else. ``sleep(0)`` is not enough: one loop iteration
    reads at most 32 datagrams per socket (libuv), so at 10,000 queries/s a job taking 7 ms per
    iteration lets the socket backlog grow by ~40 queries each time."""
    await asyncio.sleep(max(time.perf_counter() - started, 0.0005))


def builder_command() -> tuple[str, ...]:
    """The default builder argv: this interpreter running ``-m lbdns.builder``."""
    return (sys.executable, "-m", "lbdns.builder")


class Builder:
    """The server's handle on the builder process (see the module docstring): started once,
    small (before the server loads a configuration, or on the first reload), it forks one
    child per build. ``command`` is its argv (default :func:`builder_command`)."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = tuple(command) if command is not None else builder_command()
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running builder, or None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def start(self) -> None:
        """Start the builder process if it is not running. Raises :class:`BuildError` when it
        cannot be started."""
        if self.pid is not None:
            return
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=MAX_FRAME)
        except OSError as exc:
            raise BuildError(f"cannot start the snapshot builder: {exc}") from None

    async def stop(self) -> None:
        """End the builder (closing its stdin; killing it after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def _kill(self, child: int | None) -> None:
        """Abandon a build: kill its child and the builder (a new one starts next time)."""
        if child is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def build(self, zones_dir: Path, settings: ServerSettings, generation: int, *,
                    chunk_nodes: int = CHUNK_NODES, timeout: float = BUILD_TIMEOUT_S,
                    assembly: Assembly | None = None, between_parts: Callable[[], None] | None = None) -> Snapshot:
        """Build the snapshot of ``zones_dir`` in a child of the builder and install its parts,
        pausing after each (:func:`yield_to_queries`; ``between_parts`` is called after each,
        e.g. to settle the garbage collector). Returns the snapshot (generation ``generation``,
        ``settings`` as given).

        Raises :class:`ConfigError` (the configuration has errors; every issue, warnings
        included) or :class:`BuildError` (the builder could not run, the build crashed, took
        longer than ``timeout`` seconds, or sent something unreadable). Cancelling kills the
        build."""
        await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        asm = assembly if assembly is not None else Assembly()
        child: int | None = None
        in_step = False  # True once the builder reported the end of this build
        outcome: BaseException | None = None
        try:
            proc.stdin.write(encode(("build", str(zones_dir), settings, generation, chunk_nodes)))
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        msg = await read_message(proc.stdout)
                    except (ValueError, pickle.UnpicklingError, EOFError) as exc:
                        raise BuildError(f"snapshot builder sent an unreadable message: {exc}") from None
                    if msg is None:
                        raise BuildError(f"snapshot builder exited (status {await proc.wait()})")
                    kind = msg[0]
                    if kind == "started":
                        child = int(msg[1])
                    elif kind == "rejected":
                        outcome = ConfigError(list(msg[1]))
                    elif kind == "failed":
                        outcome = BuildError(f"snapshot build failed: {msg[1]}")
                    elif kind == "exit":  # the builder reaped its child: the stream is ours again
                        in_step = True
                        if outcome is not None:
                            raise outcome
                        if msg[1] != 0:
                            raise BuildError(f"snapshot build ended with {msg[1]}")
                        return asm.snapshot(settings)
                    else:
                        started = time.perf_counter()
                        asm.take(msg)
                        if between_parts is not None:
                            between_parts()
                        await yield_to_queries(started)
        except TimeoutError:
            raise BuildError(f"snapshot build did not finish within {timeout:.0f} s") from None
        finally:
            if not in_step:  # cancelled, timed out, or the stream is out of step: start afresh
                await self._kill(child)


# -- builder side (the builder process and its children) -----------------------------------------


def _read_request(stream: Any) -> tuple[Any, ...] | None:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None
    (size,) = FRAME.unpack(head)
    if size > MAX_FRAME:
        raise ValueError(f"request of {size} bytes exceeds {MAX_FRAME}")
    msg = pickle.loads(stream.read(size))
    if not isinstance(msg, tuple) or not msg or msg[0] != "build":
        raise ValueError("snapshot builder: expected a build request")
    return msg


BUILDER_NICE = 10
"""Added to the builder's nice value: when it shares a CPU with the server, the server's query
loop gets ~9 times its share (Linux CFS weights)."""


def _stay_in_the_background() -> None:
    """Lower this process's CPU priority, and ask the kernel's OOM killer to pick it (and its
    children) before the server."""
    with contextlib.suppress(OSError):
        os.nice(BUILDER_NICE)
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("1000")


def _build(out: Any, request: tuple[Any, ...]) -> None:
    """In a forked child: build and write the frames (see the module docstring)."""
    from lbdns.config.validate import load_config
    from lbdns.snapshot import build_snapshot

    _, zones_dir, settings, generation, chunk_nodes = request
    out.write(encode(("started", os.getpid())))
    try:
        loaded = load_config(Path(zones_dir), settings)
        snapshot = build_snapshot(loaded, settings, generation)
    except ConfigError as exc:
        out.write(encode(("rejected", exc.issues)))
        return
    for f in snapshot_frames(snapshot, chunk_nodes):
        out.write(f)


def main() -> int:
    """Entry point of ``python -m lbdns.builder``: for each build request on stdin, fork a
    child that builds and answers on stdout, then report its exit (see the module docstring).
    Returns 0 when stdin closes."""
    _stay_in_the_background()  # first: importing the validator alone is ~0.3 s of CPU
    import traceback

    import lbdns.config.validate
    import lbdns.snapshot  # noqa: F401 (imported once here, inherited by every child)

    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    for sig in (signal.SIGINT, signal.SIGHUP):  # the server's to handle; it ends us when it stops
        signal.signal(sig, signal.SIG_IGN)
    gc.collect()
    gc.freeze()  # the imported modules: children do not touch (copy) their pages for collections
    while (request := _read_request(sys.stdin.buffer)) is not None:
        out.flush()
        pid = os.fork()
        if pid == 0:  # the child: short-lived, so its cyclic garbage goes with it (builds ~3× faster)
            gc.disable()
            code = 0
            try:
                _build(out, request)
            except BaseException:
                code = 1
                with contextlib.suppress(BaseException):
                    out.write(encode(("failed", traceback.format_exc(limit=-3).strip().splitlines()[-1])))
                    traceback.print_exc()
            with contextlib.suppress(BaseException):
                out.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        out.write(encode(("exit", code if code >= 0 else f"signal {-code}")))
        out.flush()
    return 0


if __name__ == "__main__":
    from lbdns.builder import main as _main  # pickles must name lbdns.builder, not __main__

    sys.exit(_main())
