"""`tipc peer remove` - forget a peer node that is down.

As iproute2 6.1 (../shared/reference/cli/tipc-peer.txt): a peer that is up gives
`Device or resource busy`, an unknown one `No such device or address`; removing a down
peer prints nothing and succeeds.  The address may be given as Z.C.N (iproute2's
syntax) or as the hash `tipc node list` shows.
"""

from __future__ import annotations

import click

from cli.common import choose, die, group
from tipcpy.runtime.ctlclient import cli_call

# Every free word `tipc peer` accepts (iproute2's usage text shows only `identity`).
KEYWORDS = ("remove", "address", "identity")

REMOVE_USAGE = """Usage: tipc peer remove PROPERTY

PROPERTIES
 identity NODEID         - Remove peer node identity"""


@group("peer")
def cmd() -> None:
    """Peer related operations.

    \b
    peer remove address ADDRESS     (Z.C.N, or the hash shown by `tipc node list`)
    peer remove identity NODEID
    """


@cmd.command("remove", context_settings={"ignore_unknown_options": True})
@click.argument("words", nargs=-1, type=click.UNPROCESSED)
def remove(words: tuple[str, ...]) -> None:
    """Remove an offline peer node: {address ADDRESS | identity NODEID}."""
    w = list(words)
    if not w:
        die(REMOVE_USAGE)
    prop = choose(w[0], ("address", "identity"), "PROPERTY")
    if len(w) != 2:
        die("error, missing value" if len(w) < 2 else REMOVE_USAGE)
    cli_call("peer.remove", {prop: w[1]})
