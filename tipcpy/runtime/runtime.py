"""The asyncio runtime: the only place in tipcpy with sockets and clocks.

:class:`Runtime` drives one sans-IO ``Stack``:

    datagram(s) in  -> stack.receive(bearer_id, data, loop.time())
                    -> flush stack.take_transmits() to the bearers
                    -> stack.take_events() to the layer above (logged, fanned out)
                    -> re-arm the single timer at stack.next_deadline()

Bearers hand over every datagram available per wakeup as one batch, so transmits are
flushed once per batch. The timer is one ``loop.call_at`` handle, re-armed only when the
deadline changes.

Containment (guard.py): every callback the runtime runs -- a bearer's batch, the timer,
the after-pump hooks, event listeners -- handles its input inside a guard that counts an
unexpected exception by site and type, logs it once, and carries on; the timer is
re-armed in a ``finally``, so no input can stop the node's timers. Every callback is timed
(``Guard.callback_max``) and a probe measures how late the loop runs timers (loop lag).

It knows nothing of config files, control ops or the process around it (daemon.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tipcpy.addr import node_id_to_str
from tipcpy.bearer.addr import from_media_addr, to_media_addr
from tipcpy.bearer.base import Bearer
from tipcpy.core.discover import DuplicateAddress, TrialFailed
from tipcpy.core.node import LinkStateChanged, NodeDown, NodeUp
from tipcpy.core.stack import AddressCommitted, Stack

from .budget import Budget
from .control import ControlError
from .guard import Guard, clock

log = logging.getLogger("tipcpy.daemon")

MAX_BEARERS = 3
STREAM_EVENTS_BUDGET = 100_000
"""Events queued, unread, for all event streams together (~300 bytes each)."""
TURN_BUDGET = 0.004
"""Seconds of received datagrams handled per loop turn; the rest waits one turn."""
TIMER_SLACK = 0.1
"""Stack.timer_slack: a link timer due within this (at most a quarter of its
interval) runs with the ones due now.  63 links at random phases otherwise wake the
daemon 168 times a second to send one probe each; coalesced, a few times."""
RX_BACKLOG_MAX = 8192
"""Datagrams held for later turns per bearer; beyond it they are dropped and counted,
as a full socket buffer would drop them (the links retransmit)."""


@dataclass
class RuntimeCounters:
    """What the runtime itself counts (the Stack counts protocol-level things)."""

    rx_batches: int = 0
    rx_packets: int = 0
    rx_dropped_no_bearer: int = 0
    rx_errors: int = 0          # exceptions raised by stack.receive for a received packet
    tx_packets: int = 0
    tx_no_bearer: int = 0
    tx_errors: int = 0          # transmits a bearer refused with an exception
    rx_deferred_turns: int = 0  # loop turns that went on with datagrams of an earlier one
    rx_dropped_backlog: int = 0  # datagrams dropped: RX_BACKLOG_MAX held already
    timer_fires: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Runtime:
    """Drives one Stack with real bearers and one timer on an asyncio loop."""

    def __init__(self, stack: Stack, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.stack = stack
        stack.timer_slack = TIMER_SLACK
        self.loop = loop or asyncio.get_event_loop()
        self.bearers: dict[int, Bearer] = {}
        self.by_name: dict[str, int] = {}
        self.counters = RuntimeCounters()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._listeners: list[Callable[[Any], None]] = []
        self._native: dict[int, tuple[Any, Any]] = {}    # id(media addr) -> (it, native)
        self._closed = False
        self.guard = Guard(self.loop)
        self.guard.start()
        # what `tipc node get stats` shows beside the runtime's own counters
        self.stats_sources: dict[str, Callable[[], dict[str, Any]]] = {}
        self.stream_budget = Budget("event streams", STREAM_EVENTS_BUDGET)
        # datagrams read but left for the next loop turn, per bearer (in order)
        self._rxq: dict[int, collections.deque[tuple[bytes, Any]]] = {}
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
            # one send reaches every node (Ethernet, UDP multicast), or the bearer
            # replicates it per remote IP (UDP unicast): multicast data then replicasts
            kw.setdefault("bcast_support", bool(getattr(bearer, "multicast", True)))
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
        t0 = clock()
        try:
            self._receive_batch(bid, batch)
        except Exception as e:
            self.guard.failed("bearer read", e)
        finally:
            self.guard.timed("bearer read", t0)

    def _receive_batch(self, bid: int, batch: list[tuple[bytes, Any]]) -> None:
        if self._closed:
            return
        if bid not in self.bearers:
            self.counters.rx_dropped_no_bearer += len(batch)
            return
        counters = self.counters
        counters.rx_batches += 1
        counters.rx_packets += len(batch)
        q = self._rxq.get(bid)
        if q is not None:
            # a backlog from an earlier turn goes first: datagrams stay in order
            room = RX_BACKLOG_MAX - len(q)
            if room < len(batch):
                counters.rx_dropped_backlog += len(batch) - max(room, 0)
                batch = batch[:max(room, 0)]
            q.extend(batch)
            return
        q = collections.deque(batch)
        if self._receive_some(bid, q):
            self._rxq[bid] = q
            self.loop.call_soon(self._drain_rx, bid)

    def _receive_some(self, bid: int, q: collections.deque[tuple[bytes, Any]]) -> bool:
        """Hand datagrams from ``q`` to the Stack for at most TURN_BUDGET seconds (a
        bearer reads up to 512 per wakeup, ~100 us each when they carry work); True if
        some are left in ``q`` for the next loop turn."""
        counters = self.counters
        now = self.now()                 # one clock read per batch
        receive = self.stack.receive
        t_end = time.perf_counter() + TURN_BUDGET
        n = 0
        take = q.popleft
        while q:
            data = take()[0]
            try:
                receive(bid, data, now)
            except Exception as e:
                # The codec raises DecodeError and the Stack should count it itself; this
                # is the last line of defence so a bug on the receive path drops one
                # packet instead of the daemon.
                counters.rx_errors += 1
                self.guard.failed("stack.receive", e)
            n += 1
            if not n & 7 and time.perf_counter() > t_end:
                break
        self.pump()
        return bool(q)

    def _drain_rx(self, bid: int) -> None:
        t0 = clock()
        try:
            q = self._rxq.pop(bid, None)
            if q is None or self._closed or bid not in self.bearers:
                return
            self.counters.rx_deferred_turns += 1
            if self._receive_some(bid, q):
                self._rxq[bid] = q
                self.loop.call_soon(self._drain_rx, bid)
        except Exception as e:
            self.guard.failed("bearer read", e)
        finally:
            self.guard.timed("bearer read", t0)

    def _on_timer(self) -> None:
        t0 = clock()
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        self.counters.timer_fires += 1
        try:
            self.stack.tick(self.now())
            self.pump()
        except Exception as e:
            self.guard.failed("timer", e)
        finally:
            # whatever happened above, the node's timers go on
            try:
                self._rearm()
            except Exception as e:
                self.guard.failed("timer re-arm", e)
                if self._timer is None and not self._closed:
                    self._timer = self.loop.call_later(0.1, self._on_timer)
            self.guard.timed("timer", t0)

    def pump(self) -> None:
        """Flush transmits, dispatch events, re-arm the timer. Call after touching the Stack."""
        try:
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
                    try:
                        if maddr is None:
                            bearer.send(None, data)
                            continue
                        # the Stack hands the same media address object for a peer again
                        # and again: convert it once (kept alive by the cache, so its id is
                        # stable)
                        ent = native.get(id(maddr))
                        if ent is None or ent[0] is not maddr:
                            if len(native) > 256:
                                native.clear()
                            ent = native[id(maddr)] = (maddr, from_media_addr(maddr))
                        bearer.send(ent[1], data)
                    except Exception as e:     # a media address we cannot use, a bearer bug
                        self.counters.tx_errors += 1
                        self.guard.failed("bearer send", e)
                self.counters.tx_packets += sent
            events = stack.take_events()
            if events:
                for ev in events:
                    try:
                        self._on_event(ev)
                    except Exception as e:
                        self.guard.failed("event", e)
            for fn in self.after_pump:
                try:
                    fn()
                except Exception as e:
                    self.guard.failed("after pump", e)
        finally:
            self._rearm()   # never leave the node without its timer

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

    def _on_event(self, ev: object) -> None:
        if isinstance(ev, LinkStateChanged):
            if ev.up or not ev.reason:
                log.info("link %s: %s", "up" if ev.up else "down", ev.link_name)
            else:
                log.info("link down: %s (%s)", ev.link_name, ev.reason)
        elif isinstance(ev, NodeUp | NodeDown):
            ident = node_id_to_str(ev.node_id) if len(ev.node_id) == 16 else ""
            log.info("node %s: %s (%08x)", "up" if isinstance(ev, NodeUp) else "down",
                     ident, ev.addr)
        elif isinstance(ev, AddressCommitted):
            log.info("node address %08x committed", ev.addr)
        elif isinstance(ev, DuplicateAddress | TrialFailed):
            log.warning("%r", ev)
        else:
            log.debug("event %r", ev)
        for fn in list(self._listeners):
            try:
                fn(ev)
            except Exception as e:
                self.guard.failed("event listener", e)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Stream of Stack events as dicts (for a future ``events`` control op)."""
        q = self.stream_budget.queue()

        def put(ev: Any) -> None:
            q.put(ev)

        self.add_listener(put)
        try:
            while True:
                ev = await q.get()
                raw = ({f.name: getattr(ev, f.name) for f in dataclasses.fields(ev)}
                       if dataclasses.is_dataclass(ev) else {"repr": repr(ev)})
                d = {k: (v if isinstance(v, int | str | float | bool | None) else str(v))
                     for k, v in raw.items()}
                d["event"] = type(ev).__name__
                yield d
        finally:
            self.remove_listener(put)
            q.close()

    # -- shutdown -----------------------------------------------------------------------
    def close(self) -> None:
        """Disable every bearer politely, then stop the timer."""
        for name in list(self.by_name):
            try:
                self.disable_bearer(name)
            except Exception:
                log.exception("disabling %s failed", name)
        self._closed = True
        self.guard.stop()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
