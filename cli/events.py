"""`tipc events [TYPE [LOWER [UPPER]]]` - watch the topology live (tipcpy; not in iproute2).

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


def format_event(ev: dict[str, Any]) -> str:
    t = datetime.datetime.fromtimestamp(float(ev.get("time") or 0)).strftime("%H:%M:%S.%f")
    t = t[:-3]
    what = ev.get("what")
    if what == "node":
        return f"{t} node {ev['state']:<5} {ev['node']} ({ev['hash']})"
    if what == "link":
        return f"{t} link {ev['state']:<5} {ev['link']}"
    rng = f"{{{ev['type']},{ev['lower']},{ev['upper']}}}"
    if ev["event"] == "timeout":
        return f"{t} timeout    {rng}"
    return f"{t} {ev['event']:<10} {rng} port {ev['port']} on {ev['node']}"


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
    the whole range).
    """
    args: dict[str, Any] = {}
    for key, val in (("type", type_), ("lower", lower), ("upper", upper)):
        n = _num(val, key.upper())
        if n is not None:
            args[key] = n
    as_json = state().json
    client = ControlClient()
    try:
        client.connect()
        for ev in client.stream("events", args):
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
