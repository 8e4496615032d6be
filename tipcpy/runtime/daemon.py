"""tipcd, the process: wires Stack -> Runtime -> control ops -> servers.

The one-way arrows: ``config`` (plain data) and ``runtime`` (the asyncio driver of a
Stack) know nothing of each other or of the ops; ``ops`` use both; this module builds
them in that order and adds the process around them: run dir, pid file, the client and
control servers, signals (SIGTERM/SIGINT disable bearers politely, so peers see RESET
with peer_stopping, then remove the socket and pid file), and logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import resource
import signal
import sys
from pathlib import Path

from tipcpy.bearer.base import BearerError
from tipcpy.node import Node, build_stack

from .clientsrv import ClientServer
from .config import DaemonConfig
from .control import ControlError, ControlServer
from .ops import NodeOps
from .runtime import Runtime

__all__ = ["Daemon", "DaemonConfig", "build_stack", "run", "setup_logging"]

log = logging.getLogger("tipcpy.daemon")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Daemon:
    """tipcd: a Runtime, its control server, pid file and signal handling."""

    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.pid_path = self.run_dir / "tipcd.pid"
        self.ctl_path = self.run_dir / "ctl.sock"
        self.runtime: Runtime | None = None
        self.control: ControlServer | None = None
        self.clients: ClientServer | None = None      # $RUN_DIR/tipc.sock
        self.ops: NodeOps | None = None
        self.node: Node | None = None
        self._stop = asyncio.Event()

    def _claim_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            old = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            old = None
        if old and old != os.getpid() and _pid_alive(old) and self.ctl_path.exists():
            raise SystemExit(f"tipcd: already running as pid {old} (run dir {self.run_dir}); "
                             "use another --run-dir for a second node")
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(self.pid_path)

    def _release_run_dir(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if int(self.pid_path.read_text().strip()) == os.getpid():
                self.pid_path.unlink()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._claim_run_dir()
        _raise_nofile()
        node: Node | None = None
        try:
            # the embedded node, serving the run dir: tipcd is this program around it
            node = self.node = Node(config=self.config, serve_run_dir=self.run_dir)
            await node.start()
            self.runtime, self.ops = node.runtime, node.ops
            self.clients, self.control = node.clients, node.control
            assert self.ops is not None
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
            _tune_gc()
            log.info("tipcd %d ready (run dir %s, netid %d)", os.getpid(), self.run_dir,
                     self.ops.netid)
            await self._stop.wait()
            log.info("shutting down")
        finally:
            if node is not None:
                await node.aclose()
            self._release_run_dir()

    def _on_signal(self, sig: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()


def _tune_gc() -> None:
    """The cyclic GC is a pause on the loop: everything built at start (modules, the
    Stack) is frozen out of it (a collection first would cost 6 ms and free nothing),
    and the young generation is collected every 10,000 allocations instead of 700
    (each young collection stays ~1 ms; a burst of events queued for many streams no
    longer triggers hundreds of them)."""
    gc.freeze()  # (no collect first: start-up leaves next to no cyclic garbage)
    _g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(10_000, g1, g2)
    gc.enable()  # cli/tipcd_start.py turns it off while the modules load


def _raise_nofile(want: int = 65536) -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: tipcd's own connection caps (clients,
    control) must be what refuses a client, not accept() failing with EMFILE (asyncio
    then stops accepting anyone, `tipc` included, for a second)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(hard, want)
        if soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        log.debug("could not raise RLIMIT_NOFILE", exc_info=True)


def setup_logging(level: str = "info") -> None:
    """Rich output on a terminal, plain timestamped lines otherwise (journald, files)."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    root = logging.getLogger()
    root.handlers.clear()
    if sys.stderr.isatty():
        try:
            from rich.logging import RichHandler

            handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=True)
            handler.setFormatter(logging.Formatter("%(message)s"))
        except ImportError:  # pragma: no cover
            handler = logging.StreamHandler()
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(lvl)


def run(config: DaemonConfig) -> int:
    """Run tipcd until SIGTERM/SIGINT; uses uvloop when installed."""
    daemon = Daemon(config)
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(daemon.run())
    except BearerError as e:
        log.error("%s", e)
        return 1
    except ControlError as e:
        log.error("%s", e)
        return 1
    except OSError as e:
        log.error("%s", e)
        return 1 if e.errno != errno.EACCES else 77
    return 0
