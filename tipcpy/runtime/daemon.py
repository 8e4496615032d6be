"""The asyncio runtime: the only place in tipcpy with sockets and clocks.

:class:`Runtime` drives one sans-IO ``Stack``:

    datagram(s) in  -> stack.receive(bearer_id, data, loop.time())
                    -> flush stack.take_transmits() to the bearers
                    -> stack.take_events() to the layer above (logged, fanned out)
                    -> re-arm the single timer at stack.next_deadline()

Bearers hand over every datagram available per wakeup as one batch, so transmits are
flushed once per batch. The timer is one ``loop.call_at`` handle, re-armed only when the
deadline changes. Any exception from the Stack while handling *received* bytes is counted
and logged, never propagated: bad input must not take the node down.

:class:`Daemon` adds the process around it: run dir, pid file, control server, signals
(SIGTERM/SIGINT disable bearers politely, so peers see RESET with peer_stopping, then
remove the socket and pid file), and logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import random
import signal
import sys
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tipcpy.bearer.addr import from_media_addr, to_media_addr
from tipcpy.bearer.base import Bearer, BearerError

from .control import ControlError, ControlServer

log = logging.getLogger("tipcpy.daemon")

MAX_BEARERS = 3


@dataclass
class RuntimeCounters:
    """What the runtime itself counts (the Stack counts protocol-level things)."""

    rx_batches: int = 0
    rx_packets: int = 0
    rx_dropped_no_bearer: int = 0
    rx_errors: int = 0          # exceptions raised by stack.receive for a received packet
    tx_packets: int = 0
    tx_no_bearer: int = 0
    timer_fires: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Runtime:
    """Drives one Stack with real bearers and one timer on an asyncio loop."""

    def __init__(self, stack: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.stack = stack
        self.loop = loop or asyncio.get_event_loop()
        self.bearers: dict[int, Bearer] = {}
        self.by_name: dict[str, int] = {}
        self.counters = RuntimeCounters()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._listeners: list[Callable[[Any], None]] = []
        self._native: dict[int, tuple[Any, Any]] = {}    # id(media addr) -> (it, native)
        self._closed = False
        # called at the end of every pump(): the client server drains SocketLayer events
        self.after_pump: list[Callable[[], None]] = []

    # -- time ---------------------------------------------------------------------------
    def now(self) -> float:
        return self.loop.time()

    # -- bearers ------------------------------------------------------------------------
    def enable_bearer(self, bearer: Bearer, **props: Any) -> int:
        """Open ``bearer`` and attach it to the Stack; on any failure nothing changes.

        The socket is opened first (the usual failure point: busy port, missing device),
        then the Stack is told; if the Stack refuses, the socket is closed again.
        """
        if bearer.name in self.by_name:
            raise ControlError(errno.EEXIST, f"bearer {bearer.name} is already enabled")
        if len(self.bearers) >= MAX_BEARERS:
            raise ControlError(errno.ENOSPC, f"at most {MAX_BEARERS} bearers can be enabled")
        bearer.open(self.loop)
        try:
            native = bearer.media_addr()
            # (a node without identity takes it from its first bearer: the Stack does that)
            kw = {k: v for k, v in props.items() if v is not None}
            bid = self.stack.enable_bearer(bearer.name, bearer.media,
                                           to_media_addr(bearer.media, native),
                                           bearer.mtu, self.now(), **kw)
        except BaseException:
            bearer.close()
            raise
        bearer.on_batch = self._make_batch_handler(bid)
        self.bearers[bid] = bearer
        self.by_name[bearer.name] = bid
        for k in ("priority", "tolerance", "window"):
            if props.get(k) is not None:
                setattr(bearer, k, props[k])
        self.pump()
        return bid

    def disable_bearer(self, name: str) -> None:
        """Politely detach: the Stack resets the links (RESET, peer_stopping), we flush
        those packets, then close the socket."""
        bid = self.by_name.get(name)
        if bid is None:
            raise ControlError(errno.ENODEV, f"bearer {name} is not enabled")
        try:
            self.stack.disable_bearer(name, self.now())
        finally:
            self.pump()
            bearer = self.bearers.pop(bid)
            del self.by_name[name]
            bearer.close()

    def _make_batch_handler(self, bid: int) -> Callable[[Bearer, list[tuple[bytes, Any]]], None]:
        def on_batch(_bearer: Bearer, batch: list[tuple[bytes, Any]]) -> None:
            self.receive_batch(bid, batch)
        return on_batch

    # -- the loop body ------------------------------------------------------------------
    def receive_batch(self, bid: int, batch: list[tuple[bytes, Any]]) -> None:
        if self._closed:
            return
        if bid not in self.bearers:
            self.counters.rx_dropped_no_bearer += len(batch)
            return
        counters = self.counters
        counters.rx_batches += 1
        counters.rx_packets += len(batch)
        now = self.now()                 # one clock read per batch
        receive = self.stack.receive
        for data, _src in batch:
            try:
                receive(bid, data, now)
            except Exception:
                # The codec raises DecodeError and the Stack should count it itself; this
                # is the last line of defence so a bug on the receive path drops one
                # packet instead of the daemon.
                counters.rx_errors += 1
                if counters.rx_errors <= 10:
                    log.exception("stack.receive failed on %d bytes from bearer %d",
                                  len(data), bid)
        self.pump()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self.counters.timer_fires += 1
        try:
            self.stack.tick(self.now())
        except Exception:
            log.exception("stack.tick failed")
        self.pump()

    def pump(self) -> None:
        """Flush transmits, dispatch events, re-arm the timer. Call after touching the Stack."""
        stack = self.stack
        tx = stack.take_transmits()
        if tx:
            bearers = self.bearers
            native = self._native
            sent = 0
            for bid, maddr, data in tx:
                bearer = bearers.get(bid)
                if bearer is None:
                    self.counters.tx_no_bearer += 1
                    continue
                sent += 1
                if maddr is None:
                    bearer.send(None, data)
                    continue
                # the Stack hands the same media address object for a peer again and
                # again: convert it once (kept alive by the cache, so its id is stable)
                ent = native.get(id(maddr))
                if ent is None or ent[0] is not maddr:
                    if len(native) > 256:
                        native.clear()
                    ent = native[id(maddr)] = (maddr, from_media_addr(maddr))
                bearer.send(ent[1], data)
            self.counters.tx_packets += sent
        events = stack.take_events()
        if events:
            for ev in events:
                self._on_event(ev)
        for fn in self.after_pump:
            fn()
        self._rearm()

    def _rearm(self) -> None:
        if self._closed:
            return
        deadline = self.stack.next_deadline()
        at = self._timer_at
        if self._timer is not None and at is not None and (
                deadline == at or (deadline is not None and at <= deadline)):
            # an armed timer at or before the new deadline: keep it (re-arming on every
            # pump costs a TimerHandle each time the deadline moves later, which it does
            # with every packet); firing early just ticks and re-arms at the real deadline
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(max(deadline, self.now()), self._on_timer)

    # -- events -------------------------------------------------------------------------
    def add_listener(self, fn: Callable[[Any], None]) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[Any], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(fn)

    def _on_event(self, ev: Any) -> None:
        kind = type(ev).__name__
        if kind == "LinkStateChanged":
            log.info("link %s: %s", "up" if ev.up else "down", ev.link_name)
        elif kind in ("NodeUp", "NodeDown"):
            from tipcpy.addr import node_id_to_str

            nid = getattr(ev, "node_id", b"")
            ident = node_id_to_str(nid) if len(nid) == 16 else ""
            log.info("node %s: %s (%08x)", "up" if kind == "NodeUp" else "down", ident,
                     ev.addr)
        elif kind == "AddressCommitted":
            log.info("node address %08x committed", ev.addr)
        elif kind in ("DuplicateAddress", "TrialFailed"):
            log.warning("%r", ev)
        else:
            log.debug("event %r", ev)
        for fn in list(self._listeners):
            try:
                fn(ev)
            except Exception:
                log.exception("event listener failed")

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Stream of Stack events as dicts (for a future ``events`` control op)."""
        q: asyncio.Queue[Any] = asyncio.Queue(maxsize=10000)

        def put(ev: Any) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(ev)

        self.add_listener(put)
        try:
            while True:
                ev = await q.get()
                d = dict(getattr(ev, "__dict__", {}) or {})
                d = {k: (v if isinstance(v, int | str | float | bool | None) else str(v))
                     for k, v in d.items()}
                d["event"] = type(ev).__name__
                yield d
        finally:
            self.remove_listener(put)

    # -- shutdown -----------------------------------------------------------------------
    def close(self) -> None:
        """Disable every bearer politely, then stop the timer."""
        for name in list(self.by_name):
            try:
                self.disable_bearer(name)
            except Exception:
                log.exception("disabling %s failed", name)
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# ===================================================================================
# Daemon process
# ===================================================================================

@dataclass
class DaemonConfig:
    """Everything tipcd is told at start (flags and/or a TOML file)."""

    run_dir: Path = Path("/run/tipcpy")
    identity: str | None = None
    netid: int = 4711
    bearers: list[dict[str, Any]] = field(default_factory=list)
    link: dict[str, int] = field(default_factory=dict)   # defaults: priority/tolerance/window
    log_level: str = "info"
    seed: int | None = None

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str], base: DaemonConfig | None = None
                  ) -> DaemonConfig:
        """Read a TOML config. Keys: ``run_dir identity netid log_level``, a ``[link]``
        table and ``[[bearer]]`` tables with the CLI's argument names (media, name,
        localip, localport, remoteip, remoteport, device, priority, tolerance, window)."""
        with open(path, "rb") as f:
            data = tomllib.load(f)
        cfg = base or cls()
        known = {"run_dir", "identity", "netid", "clusterid", "log_level", "link", "bearer",
                 "seed"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}")
        if "run_dir" in data:
            cfg.run_dir = Path(data["run_dir"])
        if "identity" in data:
            cfg.identity = str(data["identity"])
        if "netid" in data or "clusterid" in data:
            cfg.netid = int(data.get("netid", data.get("clusterid")))
        if "log_level" in data:
            cfg.log_level = str(data["log_level"])
        if "seed" in data:
            cfg.seed = int(data["seed"])
        link = data.get("link", {})
        if not isinstance(link, dict):
            raise ValueError(f"{path}: [link] must be a table")
        cfg.link.update({k: int(v) for k, v in link.items()})
        bearers = data.get("bearer", [])
        if not isinstance(bearers, list):
            raise ValueError(f"{path}: use [[bearer]] tables")
        for b in bearers:
            if "media" not in b:
                raise ValueError(f"{path}: a [[bearer]] lacks 'media'")
            cfg.bearers.append(dict(b))
        return cfg


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

    def __init__(self, config: DaemonConfig, stack_factory: Callable[..., Any] | None = None
                 ) -> None:
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.pid_path = self.run_dir / "tipcd.pid"
        self.ctl_path = self.run_dir / "ctl.sock"
        self._stack_factory = stack_factory
        self.runtime: Runtime | None = None
        self.control: ControlServer | None = None
        self.clients: Any = None          # runtime.clientsrv.ClientServer ($RUN_DIR/tipc.sock)
        self.ops: Any = None
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
        from tipcpy.core.assembly import build_node

        from .ops import NodeOps

        loop = asyncio.get_running_loop()
        self._claim_run_dir()
        try:
            rng = random.Random(self.config.seed)
            self.ops = NodeOps(self.config, loop, rng,
                               stack_factory=self._stack_factory or build_node)
            self.runtime = self.ops.runtime
            self.ops.apply_startup_config()
            from .clientsrv import ClientServer

            # before ctl.sock: whoever sees ctl.sock can also open sockets
            self.clients = ClientServer(self.run_dir / "tipc.sock", self.runtime)
            await self.clients.start()
            self.control = ControlServer(self.ctl_path, self.ops.dispatch)
            await self.control.start()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
            log.info("tipcd %d ready (run dir %s, netid %d)", os.getpid(), self.run_dir,
                     self.ops.netid)
            await self._stop.wait()
            log.info("shutting down")
        finally:
            if self.clients is not None:
                await self.clients.close()
            if self.control is not None:
                await self.control.close()
            if self.runtime is not None:
                self.runtime.close()
                await asyncio.sleep(0)      # let queued sends go out
            self._release_run_dir()

    def _on_signal(self, sig: int) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()


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


def run(config: DaemonConfig, stack_factory: Callable[..., Any] | None = None) -> int:
    """Run tipcd until SIGTERM/SIGINT; uses uvloop when installed."""
    daemon = Daemon(config, stack_factory)
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
