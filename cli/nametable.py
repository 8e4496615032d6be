"""`tipc nametable show` - the cluster-wide binding table as this node sees it.

Columns and `-j` layout exactly as iproute2 6.1 (../shared/reference/cli/tipc-nametable.txt):
header ``%-10s %-10s %-10s %-8s %-10s %-33s``, rows ``%-10u %-10u %-10u %-8s %-10u %s``,
node printed as its node-identity string.
"""

from __future__ import annotations

import click

from cli.common import die, emit_json, group, state
from tipcpy.runtime.ctlclient import cli_call

HEADER = f"{'Type':<10} {'Lower':<10} {'Upper':<10} {'Scope':<8} {'Port':<10} {'Node':<33}"


@group("nametable")
def cmd() -> None:
    """Show the name table."""


@cmd.command("show", context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def show(words: tuple[str, ...]) -> None:
    """Show the name table."""
    if words:
        die("Usage: tipc nametable show")
    rows = cli_call("nametable.show")
    if state().json:
        emit_json([{"type": r["type"], "lower": r["lower"], "upper": r["upper"],
                    "scope": r["scope"], "port": r["port"], "node": r["node"]} for r in rows])
        return
    click.echo(HEADER)
    for r in rows:
        click.echo(f"{r['type']:<10} {r['lower']:<10} {r['upper']:<10} {r['scope']:<8} "
                   f"{r['port']:<10} {r['node']}")
