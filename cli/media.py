"""`tipc media` - the media types and their link defaults (media -> bearer -> link).

`media set` changes the defaults that bearers enabled *later* inherit (and, through
them, their links); existing bearers keep theirs, as in the kernel.  Output as iproute2
6.1 (../shared/reference/cli/tipc-media.txt): plain values, `-j` ignored.  tipcpy has
the media `eth` and `udp` (no InfiniBand), so `media list` shows those two.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import choose, die, group
from tipcpy.bearer.media import MEDIA
from tipcpy.runtime.ctlclient import cli_call

WORDS: dict[str, Any] = {"nargs": -1, "type": click.UNPROCESSED}
CTX = {"ignore_unknown_options": True}
PROPS = ("tolerance", "priority", "window", "mtu")

GET_USAGE = """Usage: tipc media get PPROPERTY media MEDIA

PROPERTIES
 tolerance             - Get media tolerance
 priority              - Get media priority
 window                - Get media window
 mtu                   - Get media mtu"""

SET_USAGE = """Usage: tipc media set PPROPERTY media MEDIA

PROPERTIES
 tolerance TOLERANCE   - Set media tolerance
 priority PRIORITY     - Set media priority
 window WINDOW         - Set media window
 mtu MTU               - Set media mtu"""


@group("media")
def cmd() -> None:
    """List media types, get and set their link defaults.

    \b
    media list
    media get {priority|tolerance|window|mtu} media MEDIA
    media set {priority P|tolerance T|window W|mtu M} media MEDIA
    (mtu: udp only)
    """


def _media(words: list[str], usage: str) -> str:
    if len(words) != 2 or words[0] != "media":
        die("error, missing media" if not words or words == ["media"] else usage)
    return words[1]


@cmd.command("list", context_settings=CTX)
@click.argument("words", metavar="", **WORDS)
def list_(words: tuple[str, ...]) -> None:
    """List the media types this node can use."""
    if words:
        die("Usage: tipc media list")
    for m in cli_call("media.list"):
        click.echo(m)


@cmd.command("get", context_settings=CTX)
@click.argument("words", metavar="PROPERTY media MEDIA", **WORDS)
def get(words: tuple[str, ...]) -> None:
    """Get a media default: {priority|tolerance|window|mtu} media MEDIA."""
    w = list(words)
    if not w:
        die(GET_USAGE)
    prop = choose(w[0], PROPS, "PROPERTY")
    media = _media(w[1:], GET_USAGE)
    if prop == "mtu" and ((m := MEDIA.get(media)) is None or not m.mtu_settable):
        die("error, not supported for media")
    click.echo(str(cli_call("media.get", {"media": media})[prop]))


@cmd.command("set", context_settings=CTX)
@click.argument("words", metavar="PROPERTY VALUE media MEDIA", **WORDS)
def set_(words: tuple[str, ...]) -> None:
    """Set a media default for bearers enabled later:
    {priority P|tolerance T|window W|mtu M} media MEDIA."""
    w = list(words)
    if not w:
        die(SET_USAGE)
    prop = choose(w[0], PROPS, "PROPERTY")
    if len(w) < 2 or w[1] == "media":
        die("error, missing value")
    media = _media(w[2:], SET_USAGE)
    if prop == "mtu" and ((m := MEDIA.get(media)) is None or not m.mtu_settable):
        die("error, not supported for media")
    cli_call("media.set", {"media": media, prop: w[1]})
