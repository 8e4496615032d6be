"""`tipc node` - local node identity/network id and the list of peer nodes.

Output is byte-for-byte iproute2's (see ../shared/reference/cli/tipc-node.txt); like
iproute2, `-j` is ignored by this family.
"""

from __future__ import annotations

import click

from cli.common import group
from tipcpy.runtime.ctlclient import cli_call
from tipcpy.runtime.words import die

ID_HEADER = f"{'Node Identity':<32} Hash"
LIST_HEADER = f"{'Node Identity':<32} {'Hash':<8} State"

GET_USAGE = """Usage: tipc node get PROPERTY

PROPERTIES
 identity              - Get node identity
 clusterid             - Get local clusterid"""

SET_USAGE = """Usage: tipc node set PROPERTY

PROPERTIES
 identity NODEID       - Set node identity
 clusterid CLUSTERID   - Set local cluster id
 key PROPERTY          - Set symmetric-key"""


@group("node")
def cmd() -> None:
    """List remote nodes, get and set local node parameters."""


@cmd.command("list")
def node_list() -> None:
    """List remote nodes."""
    nodes = cli_call("node.list")
    click.echo(LIST_HEADER)
    for n in nodes:
        click.echo(f"{n['identity']:<32} {n['address']:08x} {'up' if n['up'] else 'down'}")


@group("get", invoke_without_command=True)
@click.pass_context
def get(ctx: click.Context) -> None:
    """Get local node parameters (address, identity, netid, clusterid)."""
    if ctx.invoked_subcommand is None:
        die(GET_USAGE)


cmd.add_command(get)


@get.command("address")
def get_address() -> None:
    """Node address (hash of the identity), as %08x."""
    click.echo(f"{cli_call('node.get')['address']:08x}")


@get.command("identity")
def get_identity() -> None:
    """Node identity and its hash."""
    info = cli_call("node.get")
    click.echo(ID_HEADER)
    click.echo(f"{info['identity']:<32} {info['address']:08x}")


@get.command("netid")
def get_netid() -> None:
    """Network (cluster) id."""
    click.echo(str(cli_call("node.get")["netid"]))


@get.command("clusterid")
def get_clusterid() -> None:
    """Cluster id (the same value as netid)."""
    click.echo(str(cli_call("node.get")["clusterid"]))


@group("set", invoke_without_command=True)
@click.pass_context
def set_(ctx: click.Context) -> None:
    """Set local node parameters (identity, netid, clusterid)."""
    if ctx.invoked_subcommand is None:
        die(SET_USAGE)


cmd.add_command(set_)


def _one(value: tuple[str, ...], what: str) -> str:
    if not value:
        die("error, missing value")
    if len(value) > 1:
        die(f"error, unexpected argument \"{value[1]}\" after {what}")
    return value[0]


@set_.command("identity")
@click.argument("value", nargs=-1)
def set_identity(value: tuple[str, ...]) -> None:
    """Set the 128-bit node identity (string of up to 16 chars, or hex)."""
    cli_call("node.set", {"identity": _one(value, "identity")})


@set_.command("netid")
@click.argument("value", nargs=-1)
def set_netid(value: tuple[str, ...]) -> None:
    """Set the network id (1-9999)."""
    cli_call("node.set", {"netid": _one(value, "netid")})


@set_.command("clusterid")
@click.argument("value", nargs=-1)
def set_clusterid(value: tuple[str, ...]) -> None:
    """Set the cluster id (same as netid)."""
    cli_call("node.set", {"clusterid": _one(value, "clusterid")})
