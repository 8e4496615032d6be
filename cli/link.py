"""`tipc link` - list links and show their statistics.

Text and `-j`/`-j -p` output match iproute2 6.1 byte for byte
(../shared/reference/cli/tipc-link.txt): `link list` prints `broadcast-link: up` first,
`link stat show` follows `_show_link_stat` / `_show_bc_link_stat` of iproute2's link.c.
The daemon answers with normalised counters (see tipcpy.runtime.ops); all formatting,
including the profile percentages and queue average, happens here.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import emit_json, group, state
from tipcpy.runtime.ctlclient import cli_call
from tipcpy.runtime.words import die

WORDS = {"nargs": -1, "type": click.UNPROCESSED}
CTX = {"ignore_unknown_options": True}
PROFILE_BINS = ("0-64", "-256", "-1024", "-4096", "-16384", "-32768", "-66000")

STAT_SHOW_USAGE = "Usage: tipc link stat show [ link { LINK | SUBSTRING | all } ]"


@group("link")
def cmd() -> None:
    """List links, show statistics."""


@cmd.command("list", context_settings=CTX)
@click.argument("words", **WORDS)
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


@group("statistics")
def statistics() -> None:
    """Show link statistics."""


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
    return d


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
            + tail)


@statistics.command("show", context_settings=CTX)
@click.argument("words", **WORDS)
def stat_show(words: tuple[str, ...]) -> None:
    """Show link statistics: [ link { LINK | SUBSTRING | all } ]."""
    args: dict[str, Any] = {}
    if words:
        if words[0] != "link" or len(words) != 2:
            die(STAT_SHOW_USAGE)
        args["link"] = words[1]
    stats = cli_call("link.stat.show", args)
    if state().json:
        emit_json([_json_link(s) for s in stats])
        return
    click.echo("".join(format_link_stats(s) for s in stats), nl=False)
