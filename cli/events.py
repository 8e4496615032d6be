"""`tipc events [TYPE [LOWER [UPPER]]]`, `tipc events group TYPE` - watch the topology
live (tipcpy; not in iproute2).

One line per event until Ctrl-C: nodes coming and going (bindings of type 0), links
going up and down (type 2), and services being published and withdrawn.  Bindings that
exist when the command starts are reported first, as the topology server does.  With
TYPE (and a range) the daemon subscribes to the topology server for exactly that, so
the events are what a TIPC application subscribing to {TYPE, LOWER, UPPER} sees.
`-j` prints one JSON object per line (JSON lines), flushed as it happens::

    $ tipc events
    12:00:01.117 node up    n1 (6e310000)
    12:00:03.402 link up    n1:b0-n2:b0
    12:00:03.403 node up    n2 (6e320000)
    12:00:04.950 published  {1000,1,1} port 2368412090 on n2

`tipc events group TYPE` watches the membership of communication group TYPE: a member
is a socket that joined with TIPC_GROUP_JOIN and so bound {TYPE, instance}; its binding
coming and going is what every member's group sees as JOIN and LEAVE (the kernel's
groups follow the same topology events). The watcher does not join::

    $ tipc events group 4711
    12:00:05.001 member join  {4711,1} port 3401353302 on n1
    12:00:09.730 member leave {4711,1} port 3401353302 on n1
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from typing import Any

import click

from cli.common import state
from tipcpy.runtime.control import ControlError
from tipcpy.runtime.ctlclient import ControlClient, DaemonNotRunning

#: the words `tipc events` takes besides numbers (tests/unit/test_manpages.py)
KEYWORDS = ("group",)


def format_event(ev: dict[str, Any]) -> str:
    t = datetime.datetime.fromtimestamp(float(ev.get("time") or 0)).strftime("%H:%M:%S.%f")
    t = t[:-3]
    what = ev.get("what")
    if what == "member":
        return (f"{t} member {ev['event']:<5} {{{ev['type']},{ev['instance']}}} "
                f"port {ev['port']} on {ev['node']}")
    if what == "node":
        return f"{t} node {ev['state']:<5} {ev['node']} ({ev['hash']})"
    if what == "link":
        return f"{t} link {ev['state']:<5} {ev['link']}"
    rng = f"{{{ev['type']},{ev['lower']},{ev['upper']}}}"
    if ev["event"] == "timeout":
        return f"{t} timeout    {rng}"
    return f"{t} {ev['event']:<10} {rng} port {ev['port']} on {ev['node']}"


def member_event(ev: dict[str, Any]) -> dict[str, Any] | None:
    """A topology event on the group's type as a membership change (None: timeout)."""
    if ev.get("event") not in ("published", "withdrawn"):
        return None
    return {"time": ev.get("time"), "what": "member",
            "event": "join" if ev["event"] == "published" else "leave",
            "type": ev["type"], "instance": ev["lower"], "port": ev["port"],
            "node": ev["node"], "hash": ev.get("hash")}


def _num(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        n = int(value, 0)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an integer 0-4294967295.",
                                 param_hint=f"'{what}'") from None
    if not 0 <= n <= 0xFFFFFFFF:
        raise click.BadParameter(f"{n} is not in the range 0-4294967295.",
                                 param_hint=f"'{what}'")
    return n


@click.command("events")
@click.argument("type_", metavar="[TYPE", required=False)
@click.argument("lower", metavar="[LOWER", required=False)
@click.argument("upper", metavar="[UPPER]]]", required=False)
def cmd(type_: str | None, lower: str | None, upper: str | None) -> None:
    """Watch topology events live: nodes up/down (type 0), links up/down (type 2),
    services published/withdrawn; one line each (-j: JSON lines) until Ctrl-C.

    Without TYPE: every binding of every type.  With TYPE [LOWER [UPPER]]: a topology
    server subscription to that range (LOWER alone means LOWER..LOWER; no LOWER means
    the whole range).  `group TYPE`: members of communication group TYPE joining and
    leaving.
    """
    args: dict[str, Any] = {}
    grp = type_ == "group"
    if grp:
        if lower is None or upper is not None:
            raise click.UsageError("Usage: tipc events group TYPE")
        type_, lower = lower, None
    for key, val in (("type", type_), ("lower", lower), ("upper", upper)):
        n = _num(val, key.upper())
        if n is not None:
            args[key] = n
    as_json = state().json
    client = ControlClient()
    try:
        client.connect()
        for ev in client.stream("events", args):
            if grp:
                mev = member_event(ev)
                if mev is None:
                    continue
                ev = mev
            line = json.dumps(ev, separators=(",", ":")) if as_json else format_event(ev)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except DaemonNotRunning as e:
        click.echo(e.message, err=True)
        sys.exit(1)
    except ControlError as e:
        msg = e.message.rstrip()
        click.echo(f"Error: {msg}{'' if msg.endswith('.') else '.'}", err=True)
        click.echo(f"kernel answers: {os.strerror(e.errno)}", err=True)
        sys.exit(255)
    except KeyboardInterrupt:
        sys.exit(0)
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    finally:
        client.close()
