"""Topology server core: subscriptions to the binding table, events to subscribers.

Mirrors net/tipc/topsrv.c + subscr.c. A subscriber connects (SEQPACKET) to
``{TIPC_TOP_SRV=1, 1}`` and sends 28-byte ``struct tipc_subscr`` records; it gets
48-byte ``struct tipc_event`` records back. The runtime owns the connection; this
object only sees an opaque ``conn_id``:

* byte order: the kernel reads the filter in host order and, if none of
  PORTS/SERVICE/CANCEL is set, treats the whole record as byte-swapped -- and answers
  in the order the subscriber used. Host order here is little-endian (the x86 kernel
  the reference was taken from; the same rule as ``tipcpy.wire.items.Subscr``);
* PORTS and SERVICE together, ``lower > upper``, a record that is not exactly 28 bytes,
  or the subscription limit reached: the kernel closes the connection. We return
  :class:`CloseConn` from :meth:`TopSrv.receive`, drop the connection's subscriptions
  and its queued events (the kernel's queued events die with the connection too);
* ``TIPC_SUB_CANCEL`` with an otherwise byte-identical record removes that subscription;
  cancelling one that does not exist is ignored (connection stays);
* existing bindings are reported at subscribe time, oldest first; afterwards every
  insert/remove in the table is reported (SERVICE: only the first publication / last
  withdrawal of an exact range); node up/down (type 0) and link up/down (type 2) need
  nothing special because they are bindings;
* a finite timeout yields one ``TIPC_SUBSCR_TIMEOUT`` event carrying the subscribed range
  and port 0, then the subscription is gone.
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Hashable
from dataclasses import dataclass

from tipcpy.core.name_table import NameTable, Publication
from tipcpy.wire.consts import (
    TIPC_FILTER_MASK,
    TIPC_MAX_SUBSCR,
    TIPC_NODE_SCOPE,
    TIPC_PUBLISHED,
    TIPC_SUB_CANCEL,
    TIPC_SUB_CLUSTER_SCOPE,
    TIPC_SUB_NO_STATUS,
    TIPC_SUB_NODE_SCOPE,
    TIPC_SUB_PORTS,
    TIPC_SUB_SERVICE,
    TIPC_SUBSCR_TIMEOUT,
    TIPC_WAIT_FOREVER,
    TIPC_WITHDRAWN,
)

__all__ = ["SUBSCR_SIZE", "EVENT_SIZE", "CloseConn", "TopSrv", "TopSrvStats"]

SUBSCR_SIZE = 28
EVENT_SIZE = 48
_LE = struct.Struct("<5I")
_BE = struct.Struct(">5I")


@dataclass(frozen=True)
class CloseConn:
    """Action: the runtime must close this subscriber connection (kernel
    ``tipc_conn_close``); ``reason`` says why, for logs and `tipc` stats."""

    conn_id: Hashable
    reason: str


@dataclass
class TopSrvStats:
    connections: int = 0
    subscriptions: int = 0
    subscribed_total: int = 0
    cancelled: int = 0
    cancel_unmatched: int = 0
    timeouts: int = 0
    events: int = 0
    rejected_malformed: int = 0
    rejected_limit: int = 0
    closed_by_server: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Sub:
    __slots__ = (
        "conn",
        "raw",
        "st",
        "type",
        "lower",
        "upper",
        "filter",
        "deadline",
        "active",
    )

    def __init__(self, conn: _Conn, raw: bytes, st: struct.Struct, vals: tuple[int, ...]) -> None:
        self.conn = conn
        self.raw = raw  # the subscriber's 28 bytes, echoed in every event
        self.st = st  # the subscriber's byte order
        self.type, self.lower, self.upper, timeout, self.filter = vals
        self.deadline: float | None = None
        self.active = True


class _Conn:
    __slots__ = ("conn_id", "subs")

    def __init__(self, conn_id: Hashable) -> None:
        self.conn_id = conn_id
        self.subs: list[_Sub] = []  # newest first (kernel list_add)


class TopSrv:
    """The node's topology server. Call :meth:`take_outgoing` after every call that can
    produce events (receive, tick, and any change of the name table)."""

    def __init__(self, table: NameTable, own_addr: int, limit: int = TIPC_MAX_SUBSCR) -> None:
        self.table = table
        self.own_addr = own_addr
        self.limit = limit
        self.stats = TopSrvStats()
        self._conns: dict[Hashable, _Conn] = {}
        self._by_type: dict[int, list[_Sub]] = {}  # oldest first; iterate reversed
        self._timers: list[tuple[float, int, _Sub]] = []
        self._tseq = 0
        self._count = 0
        self._out: list[tuple[Hashable, bytes]] = []
        table.add_observer(self._on_table)

    # ------------------------------------------------------------------ connections
    def open(self, conn_id: Hashable) -> None:
        """A subscriber connected."""
        if conn_id not in self._conns:
            self._conns[conn_id] = _Conn(conn_id)
            self.stats.connections += 1

    def close(self, conn_id: Hashable) -> None:
        """The subscriber went away (or we closed it): drop its subscriptions and events."""
        con = self._conns.pop(conn_id, None)
        if con is None:
            return
        self.stats.connections -= 1
        for sub in list(con.subs):
            self._unsubscribe(sub)
        con.subs.clear()
        if any(c == conn_id for c, _ in self._out):
            self._out = [(c, b) for c, b in self._out if c != conn_id]

    def _reject(self, conn_id: Hashable, reason: str) -> CloseConn:
        self.stats.closed_by_server += 1
        self.close(conn_id)
        return CloseConn(conn_id, reason)

    def receive(self, conn_id: Hashable, data: bytes, now: float) -> CloseConn | None:
        """One record from a subscriber. Returns :class:`CloseConn` when the kernel would
        close the connection (the runtime must then close it; state is already gone)."""
        con = self._conns.get(conn_id)
        if con is None:
            self.open(conn_id)
            con = self._conns[conn_id]
        data = bytes(data)
        if len(data) != SUBSCR_SIZE:
            self.stats.rejected_malformed += 1
            return self._reject(conn_id, f"subscription is {len(data)} bytes, not {SUBSCR_SIZE}")
        native = _LE.unpack_from(data, 0)
        if native[4] & TIPC_FILTER_MASK:
            st, vals = _LE, native
        else:
            st, vals = _BE, _BE.unpack_from(data, 0)
        typ, lower, upper, timeout, filt = vals
        if filt & TIPC_SUB_CANCEL:
            # the kernel clears the bit (in the subscriber's order) and compares all bytes
            raw = st.pack(typ, lower, upper, timeout, filt & ~TIPC_SUB_CANCEL) + data[20:]
            for sub in con.subs:
                if sub.raw == raw:
                    self._unsubscribe(sub)
                    con.subs.remove(sub)
                    self.stats.cancelled += 1
                    break
            else:
                self.stats.cancel_unmatched += 1
            return None
        if self._count >= self.limit:
            self.stats.rejected_limit += 1
            return self._reject(conn_id, f"subscription limit reached ({self.limit} on this node)")
        if (filt & TIPC_SUB_PORTS and filt & TIPC_SUB_SERVICE) or lower > upper:
            self.stats.rejected_malformed += 1
            return self._reject(
                conn_id,
                "illegal subscription: "
                + (
                    "PORTS and SERVICE both set"
                    if lower <= upper
                    else f"lower {lower} > upper {upper}"
                ),
            )
        sub = _Sub(con, data, st, vals)
        con.subs.insert(0, sub)
        self._by_type.setdefault(typ, []).append(sub)
        self._count += 1
        self.stats.subscriptions = self._count
        self.stats.subscribed_total += 1
        if not filt & TIPC_SUB_NO_STATUS:
            for p in self.table.subscription_snapshot(
                typ, lower, upper, bool(filt & TIPC_SUB_PORTS)
            ):
                self._report(sub, p, TIPC_PUBLISHED, True)
        if timeout != TIPC_WAIT_FOREVER:
            sub.deadline = now + timeout / 1000.0
            self._tseq += 1
            heapq.heappush(self._timers, (sub.deadline, self._tseq, sub))
        return None

    def _unsubscribe(self, sub: _Sub) -> None:
        if not sub.active:
            return
        sub.active = False
        lst = self._by_type.get(sub.type)
        if lst is not None:
            lst.remove(sub)
            if not lst:
                del self._by_type[sub.type]
        self._count -= 1
        self.stats.subscriptions = self._count

    # ------------------------------------------------------------------ events
    def _emit(self, sub: _Sub, event: int, lower: int, upper: int, ref: int, node: int) -> None:
        self._out.append((sub.conn.conn_id, sub.st.pack(event, lower, upper, ref, node) + sub.raw))
        self.stats.events += 1

    def _report(self, sub: _Sub, p: Publication, event: int, must: bool) -> None:
        """kernel ``tipc_sub_report_overlap``."""
        if p.lower > sub.upper or p.upper < sub.lower:
            return
        f = sub.filter
        if not must and not f & TIPC_SUB_PORTS:
            return
        if f & TIPC_SUB_CLUSTER_SCOPE and p.scope == TIPC_NODE_SCOPE:
            return
        if f & TIPC_SUB_NODE_SCOPE and p.scope != TIPC_NODE_SCOPE:
            return
        self._emit(sub, event, p.lower, p.upper, p.port, p.node)

    def _on_table(self, p: Publication, published: bool, edge: bool) -> None:
        subs = self._by_type.get(p.type)
        if not subs:
            return
        ev = TIPC_PUBLISHED if published else TIPC_WITHDRAWN
        for sub in reversed(subs):  # newest subscription first, as the kernel's list
            self._report(sub, p, ev, edge)

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Expire subscriptions whose timeout has passed: one SUBSCR_TIMEOUT event each
        (subscribed range, port 0), then the subscription is removed."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, sub = heapq.heappop(timers)
            if not sub.active:
                continue
            self._emit(sub, TIPC_SUBSCR_TIMEOUT, sub.lower, sub.upper, 0, 0)
            self.stats.timeouts += 1
            self._unsubscribe(sub)
            sub.conn.subs.remove(sub)

    def next_deadline(self) -> float | None:
        timers = self._timers
        while timers and not timers[0][2].active:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    def take_outgoing(self) -> list[tuple[Hashable, bytes]]:
        """48-byte events to write, in order, per connection ``(conn_id, bytes)``."""
        out, self._out = self._out, []
        return out

    # ------------------------------------------------------------------ inspection
    @property
    def subscription_count(self) -> int:
        return self._count

    def connection_subscriptions(self, conn_id: Hashable) -> int:
        con = self._conns.get(conn_id)
        return len(con.subs) if con else 0
