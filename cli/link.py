"""`tipc link` - list links, get/set their properties, statistics and the monitor.

Text and `-j`/`-j -p` output match iproute2 6.1 byte for byte
(../shared/reference/cli/tipc-link.txt): `link list` prints `broadcast-link: up` first,
`link stat show` follows `_show_link_stat` / `_show_bc_link_stat` of iproute2's link.c.
The daemon answers with normalised counters (see tipcpy.runtime.ops); all formatting,
including the profile percentages and queue average, happens here.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import click

from cli.common import choose, die, emit_json, group, state
from tipcpy.bearer.media import bearer_name_of
from tipcpy.runtime.ctlclient import cli_call
from tipcpy.runtime.words import WordError, pairs

WORDS: dict[str, Any] = {"nargs": -1, "type": click.UNPROCESSED}
CTX = {"ignore_unknown_options": True}
PROFILE_BINS = ("0-64", "-256", "-1024", "-4096", "-16384", "-32768", "-66000")

STAT_SHOW_USAGE = "Usage: tipc link stat show [ link { LINK | SUBSTRING | all } ]"
STAT_RESET_USAGE = "Usage: tipc link stat reset link LINK\n"

GET_USAGE = """Usage: tipc link get PPROPERTY link LINK

PROPERTIES
 tolerance             - Get link tolerance
 priority              - Get link priority
 window                - Get link window
 broadcast             - Get link broadcast"""

SET_USAGE = """Usage: tipc link set PPROPERTY link LINK

PROPERTIES
 tolerance TOLERANCE   - Set link tolerance
 priority PRIORITY     - Set link priority
 window WINDOW         - Set link window
 broadcast BROADCAST   - Set link broadcast"""

SET_BCAST_USAGE = """Usage: tipc link set broadcast PROPERTY

PROPERTIES
 BROADCAST         - Forces all multicast traffic to be
                     transmitted via broadcast only,
                     irrespective of cluster size and number
                     of destinations

 REPLICAST         - Forces all multicast traffic to be
                     transmitted via replicast only,
                     irrespective of cluster size and number
                     of destinations

 AUTOSELECT        - Auto switching to broadcast or replicast
                     depending on cluster size and destination
                     node number

 ratio SIZE        - Set the AUTOSELECT criteria, percentage of
                     destination nodes vs cluster size
"""

# Every free word the link commands accept (the man-page test reads this): iproute2's
# usage texts above leave out some of them (the broadcast modes, `device`, `name`).
KEYWORDS = ("link", "all", "priority", "tolerance", "window", "broadcast", "BROADCAST",
            "REPLICAST", "AUTOSELECT", "ratio", "threshold", "media", "eth", "ib", "udp",
            "device", "name", "get", "set", "list", "show", "reset", "stat", "monitor")

MON_SET_USAGE = """Usage: tipc monitor set PPROPERTY

PROPERTIES
 threshold SIZE\t- Set monitor activation threshold"""

MON_GET_USAGE = """Usage: tipc monitor get PPROPERTY

PROPERTIES
 threshold\t- Get monitor activation threshold"""

MON_LIST_USAGE = """Usage: tipc monitor list [ media MEDIA ARGS...]


MEDIA
 udp\t\t\t- User Datagram Protocol
 ib\t\t\t- Infiniband
 eth\t\t\t- Ethernet"""

LINK_PROPS = ("tolerance", "priority", "window")


@group("link")
def cmd() -> None:
    """List links, get and set their properties, statistics and link supervision.

    \b
    link list
    link get {priority|tolerance|window} link LINK | get broadcast
    link set {priority P|tolerance T|window W} link LINK
    link set broadcast {BROADCAST|REPLICAST|AUTOSELECT [ratio SIZE]}
    link statistics {show [link {LINK|SUBSTRING|all}] [-s] | reset link LINK}
    link monitor {set threshold SIZE | get threshold | summary | list [media ...]}
    """


@cmd.command("list", context_settings=CTX)
@click.argument("words", metavar="", **WORDS)
def list_(words: tuple[str, ...]) -> None:
    """List links ("<name>: up|down", broadcast-link included)."""
    if words:
        die("Usage: tipc link list")
    links = cli_call("link.list")
    if state().json:
        emit_json([{ln["name"]: "up" if ln["up"] else "down" for ln in links}])
        return
    for ln in links:
        click.echo(f"{ln['name']}: {'up' if ln['up'] else 'down'}")


def _link_arg(words: list[str], usage: str) -> str:
    """`link LINK` -> LINK (iproute2's "error, missing link" if absent)."""
    if not words or words[0] != "link":
        die("error, missing link" if not words else usage)
    if len(words) != 2:
        die("error, missing link" if len(words) < 2 else usage)
    return words[1]


@cmd.command("get", context_settings=CTX)
@click.argument("words", metavar="PROPERTY [link LINK]", **WORDS)
def get(words: tuple[str, ...]) -> None:
    """Get a link property: {priority|tolerance|window} link LINK, or broadcast."""
    w = list(words)
    if not w:
        die(GET_USAGE)
    prop = choose(w[0], LINK_PROPS + ("broadcast",), "PROPERTY")
    if prop == "broadcast":
        if len(w) > 1:
            die(GET_USAGE)
        b = cli_call("link.broadcast.get")
        known = b["method"] in ("BROADCAST", "REPLICAST", "AUTOSELECT")
        if state().json:
            # mode 0 (no bearer broadcast support, nothing forced): iproute2 prints
            # an empty object, as it does for any mode it does not know
            items: list[dict[str, Any]] = [{"method": b["method"]}] if known else [{}]
            if b["method"] == "AUTOSELECT":
                items.append({"ratio": b["ratio"]})
            emit_json(items)
        elif not known:
            pass
        elif b["method"] == "AUTOSELECT":
            click.echo(f"AUTOSELECT ratio:{b['ratio']}")
        else:
            click.echo(b["method"])
        return
    name = _link_arg(w[1:], GET_USAGE)
    v = cli_call("link.get", {"link": name})[prop]
    if state().json:
        emit_json([{prop: v}])
    else:
        click.echo(str(v))


@cmd.command("set", context_settings=CTX)
@click.argument("words", metavar="PROPERTY VALUE [link LINK]", **WORDS)
def set_(words: tuple[str, ...]) -> None:
    """Set a link property: {priority P|tolerance T|window W} link LINK, or
    broadcast {BROADCAST|REPLICAST|AUTOSELECT [ratio SIZE]}."""
    w = list(words)
    if not w:
        die(SET_USAGE)
    prop = choose(w[0], LINK_PROPS + ("broadcast",), "PROPERTY")
    if prop == "broadcast":
        rest = w[1:]
        if not rest:
            die(SET_BCAST_USAGE)
        method = choose(rest[0], ("BROADCAST", "REPLICAST", "AUTOSELECT"), "PROPERTY")
        args: dict[str, Any] = {"method": method}
        try:
            args.update(pairs(rest[1:], ("ratio",)))
        except WordError as e:
            die(str(e))
        cli_call("link.broadcast.set", args)
        return
    if len(w) < 2 or w[1] == "link":
        die("error, missing value")
    name = _link_arg(w[2:], SET_USAGE)
    cli_call("link.set", {"link": name, prop: w[1]})


@group("statistics")
def statistics() -> None:
    """Show or reset link statistics."""


cmd.add_command(statistics)


def _n(s: dict[str, Any], key: str) -> int:
    v = s.get(key, 0)
    return int(v) if v is not None else 0


def _profile(s: dict[str, Any]) -> tuple[int, int, list[int]]:
    """(sample count, average octets, percentages) - iproute2 computes these."""
    cnt = _n(s, "profile_sample")
    tot = _n(s, "profile_total")
    counts = list(s.get("profile_counts") or [0] * 7)
    pct = [(c * 100 // cnt) if cnt else 0 for c in counts]
    return cnt, (tot // cnt) if cnt else 0, pct


def _queue_avg(s: dict[str, Any]) -> int:
    if "queue_avg" in s:
        return _n(s, "queue_avg")
    cnt = _n(s, "queue_samples")
    return _n(s, "queue_total") // cnt if cnt else 0


def _json_link(s: dict[str, Any]) -> dict[str, Any]:
    def grp(direction: str) -> dict[str, int]:
        return {f"{direction} packets": _n(s, f"{direction}_packets"),
                "fragments": _n(s, f"{direction}_fragments"),
                "fragmented": _n(s, f"{direction}_fragmented"),
                "bundles": _n(s, f"{direction}_bundles"),
                "bundled": _n(s, f"{direction}_bundled")}

    if s.get("broadcast"):
        return {"link": s["name"], "window": _n(s, "window"),
                "rx packets": grp("rx"), "tx packets": grp("tx"),
                "rx naks": {"rx naks": _n(s, "rx_naks"), "defs": _n(s, "rx_defs"),
                            "dups": _n(s, "rx_dups")},
                "tx naks": {"tx naks": _n(s, "tx_naks"), "acks": _n(s, "tx_acks"),
                            "retrans": _n(s, "tx_retrans")},
                "congestion link": _n(s, "congestion"), "send queue max": _n(s, "queue_max"),
                "avg": _queue_avg(s)}
    cnt, avg, pct = _profile(s)
    d: dict[str, Any] = {"link": s["name"], "state": [s.get("state", "ACTIVE")],
                         "mtu": _n(s, "mtu"), "priority": _n(s, "priority"),
                         "tolerance": _n(s, "tolerance"), "window": _n(s, "window"),
                         "rx packets": grp("rx"), "tx packets": grp("tx"),
                         "tx profile sample": cnt, "packets average": avg}
    d.update(zip(PROFILE_BINS, pct, strict=True))
    d["rx states"] = {"rx states": _n(s, "rx_states"), "probes": _n(s, "rx_probes"),
                      "naks": _n(s, "rx_naks"), "defs": _n(s, "rx_defs"),
                      "dups": _n(s, "rx_dups")}
    d["tx states"] = {"tx states": _n(s, "tx_states"), "probes": _n(s, "tx_probes"),
                      "naks": _n(s, "tx_naks"), "acks": _n(s, "tx_acks"),
                      "retrans": _n(s, "tx_retrans")}
    d.update({"congestion link": _n(s, "congestion"), "send queue max": _n(s, "queue_max"),
              "avg": _queue_avg(s)})
    if s.get("crypto"):
        d["crypto"] = {k: int(v) for k, v in s["crypto"].items()}
    return d


def format_crypto(s: dict[str, Any]) -> str:
    """tipcpy's line for an encrypted link: received packets by crypto outcome (ok, and
    every reason one was dropped), shown once the node has a key."""
    c = s.get("crypto")
    if not c:
        return ""
    return "  Crypto " + " ".join(f"{k}:{int(v)}" for k, v in c.items()) + "\n"


def format_link_stats(s: dict[str, Any]) -> str:
    """One `Link <NAME>` block, blank line included, exactly as iproute2 prints it."""
    def pk(d: str) -> str:
        return (f"  {d.upper()} packets:{_n(s, d + '_packets')} "
                f"fragments:{_n(s, d + '_fragments')}/{_n(s, d + '_fragmented')} "
                f"bundles:{_n(s, d + '_bundles')}/{_n(s, d + '_bundled')}\n")

    tail = (f"  Congestion link:{_n(s, 'congestion')}  Send queue max:{_n(s, 'queue_max')} "
            f"avg:{_queue_avg(s)}\n\n")
    out = f"Link <{s['name']}>\n"
    if s.get("broadcast"):
        return (out + f"  Window:{_n(s, 'window')} packets\n" + pk("rx") + pk("tx")
                + f"  RX naks:{_n(s, 'rx_naks')} defs:{_n(s, 'rx_defs')} dups:{_n(s, 'rx_dups')}\n"
                + f"  TX naks:{_n(s, 'tx_naks')} acks:{_n(s, 'tx_acks')} "
                  f"retrans:{_n(s, 'tx_retrans')}\n"
                + tail)
    cnt, avg, pct = _profile(s)
    prof = " ".join(f"{b}:{p}%" for b, p in zip(PROFILE_BINS, pct, strict=True))
    return (out
            + f"  {s.get('state', 'ACTIVE')}  MTU:{_n(s, 'mtu')}  Priority:{_n(s, 'priority')}  "
              f"Tolerance:{_n(s, 'tolerance')} ms  Window:{_n(s, 'window')} packets\n"
            + pk("rx") + pk("tx")
            + f"  TX profile sample:{cnt} packets average:{avg} octets\n"
            + f"  {prof}\n"
            + f"  RX states:{_n(s, 'rx_states')} probes:{_n(s, 'rx_probes')} "
              f"naks:{_n(s, 'rx_naks')} defs:{_n(s, 'rx_defs')} dups:{_n(s, 'rx_dups')}\n"
            + f"  TX states:{_n(s, 'tx_states')} probes:{_n(s, 'tx_probes')} "
              f"naks:{_n(s, 'tx_naks')} acks:{_n(s, 'tx_acks')} retrans:{_n(s, 'tx_retrans')}\n"
            + format_crypto(s)
            + tail)


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:.3f}"


def _when(t: Any) -> str:
    if t is None:
        return "never"
    ago = max(0, int(time.time() - float(t)))
    stamp = datetime.datetime.fromtimestamp(float(t)).isoformat(sep=" ", timespec="seconds")
    return f"{stamp} ({ago}s ago)"


def format_extended(s: dict[str, Any]) -> str:
    """tipcpy's lines for `-s`: probe round trips, up/down counts, last change, and
    how often the link failed over to its parallel link / synched with it."""
    r = s.get("rtt") or {}
    return (f"  RTT min:{_ms(r.get('min'))} avg:{_ms(r.get('avg'))} max:{_ms(r.get('max'))} ms"
            f"  probes answered:{r.get('count', 0)}\n"
            f"  Up:{s.get('up_count', 0)} Down:{s.get('down_count', 0)}"
            f"  Last change:{_when(s.get('last_change'))}\n"
            f"  Failovers:{s.get('failovers', 0)} Synchs:{s.get('synchs', 0)}\n")


@statistics.command("show", context_settings=CTX)
@click.option("-s", "--extended", "extended", is_flag=True,
              help="Add probe round-trip min/avg/max, up/down counts, last change.")
@click.argument("words", metavar="[link LINK|SUBSTRING|all] [-s]", **WORDS)
def stat_show(words: tuple[str, ...], extended: bool = False) -> None:
    """Show link statistics: [ link { LINK | SUBSTRING | all } ] [-s|--extended].

    -s/--extended (tipcpy) adds the probe round-trip time min/avg/max, how often each
    link went up and down, and when it last changed state.
    """
    args: dict[str, Any] = {}
    w = list(words)
    ext = extended
    for flag in ("-s", "--extended"):
        while flag in w:
            w.remove(flag)
            ext = True
    if w:
        if w[0] != "link" or len(w) != 2:
            die(STAT_SHOW_USAGE)
        args["link"] = w[1]
    if ext:
        args["extended"] = True
    stats = cli_call("link.stat.show", args)
    if state().json:
        out = []
        for s in stats:
            d = _json_link(s)
            if ext and not s.get("broadcast"):
                d.update({"rtt": s.get("rtt"), "up count": s.get("up_count", 0),
                          "down count": s.get("down_count", 0),
                          "failovers": s.get("failovers", 0), "synchs": s.get("synchs", 0),
                          "last change": s.get("last_change")})
            out.append(d)
        emit_json(out)
        return
    text = []
    for s in stats:
        block = format_link_stats(s)
        if ext and not s.get("broadcast"):
            block = block[:-1] + format_extended(s) + "\n"
        text.append(block)
    click.echo("".join(text), nl=False)


@statistics.command("reset", context_settings=CTX)
@click.argument("words", metavar="link LINK", **WORDS)
def stat_reset(words: tuple[str, ...]) -> None:
    """Reset the statistics of one link: link LINK."""
    w = list(words)
    if len(w) != 2 or w[0] != "link":
        die(STAT_RESET_USAGE)
    cli_call("link.stat.reset", {"link": w[1]})


@group("monitor")
def monitor() -> None:
    """Show or set link supervision: the overlapping ring monitor of each bearer
    (full mesh up to the threshold)."""


cmd.add_command(monitor)


@monitor.command("set", context_settings=CTX)
@click.argument("words", metavar="threshold SIZE", **WORDS)
def mon_set(words: tuple[str, ...]) -> None:
    """Set the monitor activation threshold: threshold SIZE (0-4095, default 32)."""
    w = list(words)
    if not w:
        die(MON_SET_USAGE)
    choose(w[0], ("threshold",), "PROPERTY")
    if len(w) != 2:
        die("error, missing value" if len(w) < 2 else MON_SET_USAGE)
    cli_call("link.monitor.set", {"threshold": w[1]})


@monitor.command("get", context_settings=CTX)
@click.argument("words", metavar="threshold", **WORDS)
def mon_get(words: tuple[str, ...]) -> None:
    """Get the monitor activation threshold: threshold."""
    w = list(words)
    if len(w) != 1:
        die(MON_GET_USAGE)
    choose(w[0], ("threshold",), "PROPERTY")
    v = cli_call("link.monitor.get")["threshold"]
    if state().json:
        # iproute2 6.1 prints this (invalid) JSON; scripts may depend on the bytes
        click.echo(f'[ \n    "threshold": {v} ]' if state().pretty else f'["threshold":{v}]')
    else:
        click.echo(str(v))


@monitor.command("summary", context_settings=CTX)
@click.argument("words", **WORDS)
def mon_summary(words: tuple[str, ...]) -> None:
    """Show the local node's monitor summary per bearer."""
    if words:
        die("Usage: tipc monitor summary")
    rows = cli_call("link.monitor.summary")
    if state().json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"\nbearer {r['bearer']}\n    table_generation {r['table_generation']}\n"
                   f"    cluster_size {r['cluster_size']}\n    algorithm {r['algorithm']}")


def _zcn(addr: int) -> str:
    return f"{addr >> 24}.{(addr >> 12) & 0xFFF}.{addr & 0xFFF}"


@monitor.command("list", context_settings=CTX)
@click.argument("words", metavar="[media MEDIA ARGS...]", **WORDS)
def mon_list(words: tuple[str, ...]) -> None:
    """List all cluster members per bearer: [ media {eth|ib} device DEV | media udp name
    NAME ]."""
    args: dict[str, Any] = {}
    w = list(words)
    if w:
        if w[0] != "media" or len(w) < 2:
            die(MON_LIST_USAGE)
        try:
            kv = pairs(w[2:], ("name", "device"))
        except WordError as e:
            die(str(e))
        name = bearer_name_of(w[1], kv)
        if name is None:
            die(MON_LIST_USAGE)
        args["bearer"] = name
    data = cli_call("link.monitor.list", args)
    if state().json:
        out = []
        for b in data:
            peers = []
            for p in b["peers"]:
                d: dict[str, Any] = {"node": _zcn(p["addr"]), "status": "up" if p["up"]
                                     else "down", "monitored": "direct" if p["direct"]
                                     else "indirect", "generation": p["generation"]}
                if "applied" in p:
                    d["applied_node_status"] = list(p["applied"])
                    d["[non_applied_node:status]"] = [f"{a:x}:{st}"
                                                      for a, st in p["non_applied"]]
                peers.append(d)
            out.append({"bearer": b["bearer"], b["bearer"]: peers})
        emit_json(out)
        return
    for b in data:
        click.echo(f"\nbearer {b['bearer']}")
        click.echo("node          status monitored generation applied_node_status "
                   "[non_applied_node:status]")
        for p in b["peers"]:
            line = (f"{_zcn(p['addr']):<13} {'up' if p['up'] else 'down':<6} "
                    f"{'direct' if p['direct'] else 'indirect':<9} {p['generation']:<10} ")
            if "applied" in p:
                na = " ".join(f"{a:x}:{st}" for a, st in p["non_applied"])
                line += f"{p['applied']} [{na}]"
            click.echo(line)
