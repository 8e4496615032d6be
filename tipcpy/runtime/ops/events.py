"""``tipc events`` (topology event streams) and the daemon's diagnostics ops."""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from tipcpy.core.name_table import NameTable, Publication
from tipcpy.core.topsrv import TopSrv
from tipcpy.wire.consts import TIPC_SUB_PORTS, TIPC_WAIT_FOREVER

from .context import OpsContext
from .validate import U32, Bool, Schema, bad

_REC = struct.Struct("<?IIIII")       # published, type, lower, upper, port, node


def daemon_stats(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    """Everything tipcd counts: loop lag and contained errors (``loop``), the runtime,
    bearers, client and control servers, event-stream budget, and the Stack."""
    rt = ctx.runtime
    if args.get("reset"):
        rt.guard.reset_max()
    out: dict[str, Any] = {"loop": rt.guard.as_dict(), "runtime": rt.counters.as_dict(),
                           "bearers": {b.name: b.counters.as_dict()
                                       for b in rt.bearers.values()},
                           "streams": rt.stream_budget.as_dict()}
    for name, fn in rt.stats_sources.items():
        out[name] = fn()
    out["memory"] = memory_stats()
    out["names"] = {"publications": len(ctx.stack.name_table)}
    out["stack"] = ctx.stack.stats()
    return out


def memory_stats() -> dict[str, int]:
    """The process's resident set (current and peak), from /proc (0 where absent)."""
    res = {"rss_kb": 0, "rss_peak_kb": 0}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    res["rss_kb"] = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    res["rss_peak_kb"] = int(line.split()[1])
    except OSError:
        pass
    return res


def stack_events(ctx: OpsContext, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """Raw Stack events (LinkStateChanged, NodeUp, ...) as dicts - for debugging."""
    return ctx.runtime.events()


def events(ctx: OpsContext, args: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """``tipc events [TYPE [LOWER [UPPER]]]``: a stream of topology events.

    With a type: a subscription to the topology server (a TopSrv connection of the
    daemon's own, on the node's name table; ``TIPC_SUB_PORTS``, no timeout), so the
    events are exactly what a TIPC application subscribing to {TYPE, LOWER, UPPER}
    gets, existing bindings first.  Without: every binding of every type (the
    table itself; a subscription covers one type only), existing ones first.
    Bindings of type 0 are nodes coming and going, type 2 links going up and down.
    """
    table = ctx.stack.name_table
    typ = args.get("type")
    if typ is None:
        if "lower" in args or "upper" in args:
            raise bad("give a type with lower/upper")
        return _table_events(ctx, table)
    lower = args.get("lower", 0)
    upper = args.get("upper", 0xFFFFFFFF if "lower" not in args else lower)
    if lower > upper:
        raise bad(f"invalid range: lower {lower} > upper {upper}")
    return _topsrv_events(ctx, table, typ, lower, upper)


def _event(ctx: OpsContext, published: bool | None, typ: int, lower: int, upper: int,
           port: int, node: int) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event": "published" if published else "withdrawn" if published is not None
        else "timeout", "type": typ, "lower": lower, "upper": upper, "port": port,
        "node": ctx.node_name(node), "hash": f"{node:08x}", "time": round(time.time(), 3)}
    if typ == 0 and published is not None:
        ev.update(what="node", state="up" if published else "down",
                  node=ctx.node_name(lower), hash=f"{lower:08x}")
    elif typ == 2 and published is not None:
        key = (lower, port & 0xFFFF)
        name = ctx.link_names.get(key)
        peer = ctx.stack.peers.get(lower)
        le = peer.links.get(port & 0xFFFF) if peer is not None else None
        if le is not None:
            name = ctx.link_names[key] = le.link.name
        ev.update(what="link", state="up" if published else "down",
                  link=name or f"{lower:08x}/{port:x}")
    return ev


async def _table_events(ctx: OpsContext, table: NameTable) -> AsyncIterator[dict[str, Any]]:
    # existing bindings first: a snapshot of references, turned into events as the client
    # reads them; what changes meanwhile queues behind it within the streams' budget
    q = ctx.runtime.stream_budget.queue()

    def observer(p: Publication, published: bool, edge: bool) -> None:
        # a packed record queued (bytes: nothing for the cyclic GC to traverse, ~70
        # bytes); the event dict is built when the client reads it
        q.put(_REC.pack(published, p.type, p.lower, p.upper, p.port, p.node))

    try:
        snapshot = sorted(table, key=lambda p: p.id)
        table.add_observer(observer)
        try:
            for p in snapshot:
                yield _event(ctx, True, p.type, p.lower, p.upper, p.port, p.node)
            del snapshot
            while True:
                yield _event(ctx, *_REC.unpack(await q.get()))
        finally:
            table.remove_observer(observer)
    finally:
        q.close()


async def _topsrv_events(ctx: OpsContext, table: NameTable, typ: int, lower: int,
                         upper: int) -> AsyncIterator[dict[str, Any]]:
    q = ctx.runtime.stream_budget.queue()
    srv = TopSrv(table, ctx.stack.own_addr)
    conn = object()

    def records() -> list[tuple[int, ...]]:
        return [struct.unpack_from("<5I", data, 0) for _conn, data in srv.take_outgoing()]

    def event(r: tuple[int, ...]) -> dict[str, Any]:
        ev, lo, up, port, node = r
        pub = True if ev == 1 else False if ev == 2 else None
        return _event(ctx, pub, typ, lo, up, port, node)

    def drain(*_: Any) -> None:
        for _conn, data in srv.take_outgoing():
            q.put(data[:20])         # the event record, bytes as the TopSrv wrote it

    try:
        srv.open(conn)
        rec = struct.pack("<5I", typ, lower, upper, TIPC_WAIT_FOREVER, TIPC_SUB_PORTS)
        rec += b"tipc-cli"
        closed = srv.receive(conn, rec, ctx.runtime.now())
        if closed is not None:
            raise bad(closed.reason)
        initial = records()     # existing bindings: outside the queue's budget (see above)
        table.add_observer(drain)   # after the TopSrv's own observer: drain its output
        try:
            for r in initial:
                yield event(r)
            del initial
            while True:
                yield event(struct.unpack_from("<5I", await q.get(), 0))
        finally:
            table.remove_observer(drain)
            srv.close(conn)
            with contextlib.suppress(ValueError):
                table.remove_observer(srv._on_table)
    finally:
        q.close()


SCHEMAS: dict[str, Schema] = {
    "events": {"type": U32, "lower": U32, "upper": U32},
    "stack.events": {},
    "daemon.stats": {"reset": Bool()},
}
HANDLERS = {"events": events, "stack.events": stack_events, "daemon.stats": daemon_stats}
