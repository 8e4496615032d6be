"""``tipc link``: list, properties, the broadcast link, statistics and the monitor."""

from __future__ import annotations

import errno
from typing import Any

from tipcpy.core.stack_bcast import mode_from_name

from ..control import ControlError
from .context import OpsContext
from .validate import (
    BCAST_METHODS,
    BEARER,
    LINK,
    MONITOR_THRESHOLD_MAX,
    Bool,
    Enum,
    Int,
    Schema,
    bad,
    parse_int,
    parse_prop,
    props,
)

#: CLI counter name <- the kernel's ``struct tipc_stats`` name the core's LinkStats uses
CLI_STATS: dict[str, str] = {
    "rx_packets": "recv_pkts", "rx_fragments": "recv_fragments",
    "rx_fragmented": "recv_fragmented", "rx_bundles": "recv_bundles",
    "rx_bundled": "recv_bundled", "tx_packets": "sent_pkts",
    "tx_fragments": "sent_fragments", "tx_fragmented": "sent_fragmented",
    "tx_bundles": "sent_bundles", "tx_bundled": "sent_bundled",
    "rx_states": "recv_states", "rx_probes": "recv_probes", "rx_naks": "recv_nacks",
    "rx_defs": "deferred_recv", "rx_dups": "duplicates", "tx_states": "sent_states",
    "tx_probes": "sent_probes", "tx_naks": "sent_nacks", "tx_acks": "sent_acks",
    "tx_retrans": "retransmitted", "congestion": "link_congs",
    "queue_max": "max_queue_sz", "queue_total": "accu_queue_sz",
    "queue_samples": "queue_sz_counts", "profile_sample": "msg_length_counts",
    "profile_total": "msg_lengths_total",
    "failovers": "failovers", "synchs": "synchs",
}


def cli_link_stats(d: dict[str, Any], bc_window: int) -> dict[str, Any]:
    """One entry of ``Stack.link_stats()`` -> the flat shape ``cli/link.py`` formats.

    State follows iproute2: ACTIVE if the link is an active link of its peer, STANDBY
    if up, else DEFUNCT; the broadcast link has no state line."""
    bc = d["name"] == "broadcast-link"
    st: dict[str, Any] = d.get("stats", {})
    out: dict[str, Any] = {"name": d["name"], "broadcast": bc}
    for cli_name, core_name in CLI_STATS.items():
        out[cli_name] = int(st.get(core_name, 0))
    out["profile_counts"] = [int(x) for x in st.get("msg_length_profile", [0] * 7)][:7]
    if "avg_queue_sz" in st:
        out["queue_avg"] = int(st["avg_queue_sz"])
    crypto = st.get("crypto")
    if crypto and any(crypto.values()):  # tipcpy: received packets by crypto outcome
        out["crypto"] = {str(k): int(v) for k, v in crypto.items()}
    if bc:
        out.update(mtu=0, priority=10, tolerance=1500, window=bc_window, state="ACTIVE")
    else:
        out.update(mtu=int(d["mtu"]), priority=int(d["priority"]),
                   tolerance=int(d["tolerance"]), window=int(d["window"]),
                   state="ACTIVE" if d["active"] else "STANDBY" if d["up"] else "DEFUNCT")
    return out


def link_list(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": str(ln["name"]), "up": bool(ln["up"])} for ln in ctx.stack.link_list()]


def link_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, int]:
    name = args.get("link")
    if not name:
        raise bad("missing link")
    if name == "broadcast-link":
        return {"window": ctx.bc_window}
    lk, _, _ = ctx.link_obj(name)
    return {"priority": int(lk.priority), "tolerance": int(lk.tolerance),
            "window": int(lk.window)}


def link_set(ctx: OpsContext, args: dict[str, Any]) -> None:
    name = args.get("link")
    if not name:
        raise bad("missing link")
    prop_vals = {k: parse_prop(k, args[k]) for k in ("priority", "tolerance", "window")
                 if k in args}
    if not prop_vals:
        raise bad("nothing to set: give priority, tolerance or window")
    if name == "broadcast-link":
        if set(prop_vals) != {"window"}:
            raise bad("the broadcast link has only a window")
        win = parse_int("window", prop_vals["window"], 32, 8191)
        try:
            ctx.stack.bcast.set_window(win)
        except OSError as e:
            raise ControlError(e.errno or errno.EINVAL, str(e)) from None
        ctx.bc_window = ctx.stack.bcast.link.max_win
        return
    ctx.link_obj(name)
    try:
        ctx.stack.set_link_prop(name, ctx.runtime.now(), **prop_vals)
    except OSError as e:
        raise ControlError(e.errno or errno.EINVAL, str(e)) from None
    ctx.runtime.pump()


def _bcast_report(ctx: OpsContext) -> dict[str, Any]:
    b = ctx.stack.bcast.get_broadcast()
    out: dict[str, Any] = {"method": str(b["method"])}
    out["ratio"] = int(b.get("ratio", ctx.stack.bcast.link.rc_ratio))
    ctx.bcast.update(out)
    return out


def link_bcast_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    """What the broadcast link's method selection uses now (tipc_bcast_get_mode)."""
    return _bcast_report(ctx)


def link_bcast_set(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    """Select how multicast reaches other nodes: BROADCAST (one copy on the broadcast
    link), REPLICAST (one per node over its unicast link) or AUTOSELECT by the
    kernel's rule; ENOPROTOOPT when the bearers or peers cannot do it, as the
    kernel answers (tipc_nl_bc_link_set)."""
    method = args.get("method")
    if method is None:
        raise bad(f"missing method: expected one of {', '.join(BCAST_METHODS)}")
    ratio = args.get("ratio")
    if ratio is not None:
        if method != "AUTOSELECT":
            raise bad("ratio is only valid with AUTOSELECT")
        ratio = parse_int("ratio", ratio, 0, 100)
    bc = ctx.stack.bcast
    try:
        bc.set_mode(int(mode_from_name(str(method))))
        if ratio is not None:
            bc.set_ratio(ratio)
    except OSError as e:
        raise ControlError(e.errno or errno.EINVAL, str(e)) from None
    return _bcast_report(ctx)


def link_stat_show(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Counters per link; ``link`` selects by name, substring or ``all`` (iproute2
    semantics: no match prints nothing and succeeds).  ``extended`` adds probe round
    trips, up/down counts and the time of the last state change."""
    want = args.get("link")
    ext = bool(args.get("extended"))
    ids = {le.link.name: (addr, bid) for addr, peer in ctx.stack.peers.items()
           for bid, le in peer.links.items()}
    out = []
    for d in ctx.stack.link_stats():
        name = str(d["name"])
        if want and want != "all" and want not in name:
            continue
        n = cli_link_stats(d, ctx.bc_window)
        if ext and not n["broadcast"]:
            r = ctx.stack.link_rtt.get(ids.get(name, (-1, -1)))
            n["rtt"] = r.as_dict() if r is not None else {"count": 0, "min": None,
                                                          "avg": None, "max": None}
            h = ctx.link_history.get(name, {})
            n["up_count"] = h.get("up_count", 0)
            n["down_count"] = h.get("down_count", 0)
            n["last_change"] = h.get("last_change")
        out.append(n)
    return out


def link_stat_reset(ctx: OpsContext, args: dict[str, Any]) -> None:
    name = args.get("link")
    if not name:
        raise bad("missing link")
    if name == "broadcast-link":
        ctx.stack.bcast.link.stats.clear()  # tipc_bclink_reset_stats
        return
    lk, addr, bid = ctx.link_obj(name)
    lk.stats.clear()
    ctx.stack.link_rtt.pop((addr, bid), None)
    ctx.stack.encryption.stats.pop((addr, bid), None)  # the link's Crypto counters


# -- link monitor: the Stack's per-bearer Monitor (tipcpy/core/monitor.py) -------------
def monitor_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, int]:
    return {"threshold": ctx.stack.mon_threshold}


def monitor_set(ctx: OpsContext, args: dict[str, Any]) -> None:
    if "threshold" not in args:
        raise bad("missing threshold")
    value = parse_int("threshold", args["threshold"], 0, MONITOR_THRESHOLD_MAX)
    ctx.stack.set_mon_threshold(value)
    ctx.monitor_threshold = value


def monitor_summary(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Per bearer; a bearer whose node has no address yet has a monitor of one (the
    kernel creates it at enable and fills in the address later)."""
    mons = ctx.stack.monitors
    out = []
    for name, bid in ctx.runtime.by_name.items():
        m = mons.get(bid)
        if m is None:
            out.append({"bearer": name, "table_generation": 0, "cluster_size": 1,
                        "algorithm": "full-mesh"})
        else:
            s = m.summary()
            out.append({"bearer": name, "table_generation": s["table_generation"],
                        "cluster_size": s["cluster_size"], "algorithm": s["algorithm"]})
    return out


def monitor_list(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The ring of each bearer's monitor in the kernel's order (own node first): the
    applied part of a node's domain as U/D, the rest as addr:U/D, only for nodes whose
    domain record we hold (the kernel sends no domain attributes otherwise)."""
    want = args.get("bearer")
    if want and want not in ctx.runtime.by_name:
        raise bad("Bearer not found")
    mons = ctx.stack.monitors
    out = []
    for name, bid in ctx.runtime.by_name.items():
        if want and name != want:
            continue
        m = mons.get(bid)
        rows: list[dict[str, Any]] = []
        if m is None:
            rows.append({"addr": ctx.own_address(), "up": True, "direct": True,
                         "generation": 0, "applied": "", "non_applied": []})
        else:
            for p in m.list_peers():
                row: dict[str, Any] = {"addr": p["addr"], "up": p["status"] == "up",
                                       "direct": p["monitored"] == "direct",
                                       "generation": p["generation"]}
                if "applied_node_status" in p:
                    row["applied"] = "".join(p["applied_node_status"])  # type: ignore
                    row["non_applied"] = [[a, st] for a, st in p["non_applied"]]  # type: ignore
                rows.append(row)
        out.append({"bearer": name, "peers": rows})
    return out


SCHEMAS: dict[str, Schema] = {
    "link.list": {},
    "link.get": {"link": LINK},
    "link.set": {"link": LINK, **props(text=True, keys=("priority", "tolerance", "window"))},
    "link.broadcast.get": {},
    "link.broadcast.set": {"method": Enum(BCAST_METHODS), "ratio": Int(0, 100, text=True)},
    "link.stat.show": {"link": LINK, "extended": Bool()},
    "link.stat.reset": {"link": LINK},
    "link.monitor.get": {},
    "link.monitor.set": {"threshold": Int(0, MONITOR_THRESHOLD_MAX, text=True)},
    "link.monitor.summary": {},
    "link.monitor.list": {"bearer": BEARER},
}

HANDLERS = {
    "link.list": link_list, "link.get": link_get, "link.set": link_set,
    "link.broadcast.get": link_bcast_get, "link.broadcast.set": link_bcast_set,
    "link.stat.show": link_stat_show, "link.stat.reset": link_stat_reset,
    "link.monitor.get": monitor_get, "link.monitor.set": monitor_set,
    "link.monitor.summary": monitor_summary, "link.monitor.list": monitor_list,
}
