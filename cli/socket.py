"""`tipc socket list` - the node's sockets (ports), their connections and bindings.

Layout exactly as iproute2 6.1 (../shared/reference/cli/tipc-socket.txt)::

    socket <portid>
      connected to <node %x>:<port> [via {type,instance}]
      bound to {type,lower,upper}
      group {type,instance} scope cluster|node, N members     (tipcpy only)

A member of a communication group (TIPC_GROUP_JOIN) shows its group binding as the
kernel does and, beyond iproute2, a ``group`` line with the number of other members it
knows. `-j` is ignored, as in iproute2.  The daemon reads its socket layer; before that layer
exists the list is empty.
"""

from __future__ import annotations

import click

from cli.common import die, group
from tipcpy.runtime.ctlclient import cli_call


@group("socket")
def cmd() -> None:
    """Show sockets.

    \b
    socket list
    """


def format_socket(s: dict) -> str:
    lines = [f"socket {s['port']}"]
    conn = s.get("connected")
    if conn:
        via = s.get("via")
        lines.append(f"  connected to {conn[0]:x}:{conn[1]}"
                     + (f" via {{{via[0]},{via[1]}}}" if via else ""))
    else:
        for t, lo, up in s.get("bound") or []:
            lines.append(f"  bound to {{{t},{lo},{up}}}")
    g = s.get("group")
    if g:
        n = g["members"]
        lines.append(f"  group {{{g['type']},{g['instance']}}} scope {g['scope']}, "
                     f"{n} member{'' if n == 1 else 's'}")
    return "\n".join(lines)


@cmd.command("list", context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def list_(words: tuple[str, ...]) -> None:
    """List sockets (ports)."""
    if words:
        die("Usage: tipc socket list")
    for s in cli_call("socket.list"):
        click.echo(format_socket(s))
