"""`tipc bearer` - enable, disable, add peers to and list bearers.

Arguments are iproute2's words (`media udp name b0 localip 10.0.0.1 ...`), parsed by
tipcpy.runtime.words so `tipcd --bearer` accepts the same. Output and error statuses
follow ../shared/reference/cli/tipc-bearer.txt; `-j` is ignored here, as in iproute2.
"""

from __future__ import annotations

import click

from cli.common import group
from tipcpy.runtime.ctlclient import cli_call
from tipcpy.runtime.words import WordError, die, pairs, parse_media

ENABLE_USAGE = """Usage: tipc bearer enable [OPTIONS] media MEDIA ARGS...

OPTIONS
 domain DOMAIN         - Discovery domain
 priority PRIORITY     - Bearer priority

MEDIA
 udp\t\t\t- User Datagram Protocol
 ib\t\t\t- Infiniband
 eth\t\t\t- Ethernet"""

ENABLE_UDP_USAGE = """Usage: tipc bearer enable [OPTIONS] media udp name NAME [localip IP|device DEVICE] [UDP OPTIONS]

OPTIONS
 domain DOMAIN\t\t- Discovery domain
 priority PRIORITY\t- Bearer priority

UDP OPTIONS
 localport PORT\t- Local UDP port (default 6118)
 remoteip IP\t\t- Remote IP address
 remoteport PORT\t- Remote UDP port (default 6118)"""

ENABLE_ETH_USAGE = """Usage: tipc bearer enable media eth device DEVICE [OPTIONS]

OPTIONS
 domain DOMAIN\t\t- Discovery domain
 priority PRIORITY\t- Bearer priority"""

DISABLE_USAGE = """Usage: tipc bearer disable media MEDIA ARGS...

MEDIA
 udp\t\t\t- User Datagram Protocol
 ib\t\t\t- Infiniband
 eth\t\t\t- Ethernet"""

ADD_USAGE = "Usage: tipc bearer add media udp name NAME remoteip REMOTEIP"

GET_USAGE = """Usage: tipc bearer get [OPTION] media MEDIA ARGS...
OPTIONS
 priority\t\t- Bearer link priority
 tolerance\t\t- Bearer link tolerance
 window\t\t- Bearer link window
 mtu\t\t\t- Bearer link mtu

MEDIA
 udp\t\t\t- User Datagram Protocol
 ib\t\t\t- Infiniband
 eth\t\t\t- Ethernet"""

WORDS = {"nargs": -1, "type": click.UNPROCESSED}
CTX = {"ignore_unknown_options": True}


def _media_usage(words: tuple[str, ...], default: str) -> str:
    if "media" in words:
        i = words.index("media")
        if i + 1 < len(words):
            if words[i + 1] == "udp":
                return ENABLE_UDP_USAGE
            if words[i + 1] in ("eth", "ib"):
                return ENABLE_ETH_USAGE.replace("eth", words[i + 1], 2)
    return default


@group("bearer")
def cmd() -> None:
    """Enable, disable, list and configure bearers."""


@cmd.command("enable", context_settings=CTX)
@click.argument("words", **WORDS)
def enable(words: tuple[str, ...]) -> None:
    """Enable a bearer: [domain D] [priority P] media {udp name NAME localip IP
    [localport P] [remoteip IP] [remoteport P] | eth device DEV}."""
    if "media" not in words:
        die(ENABLE_USAGE)
    try:
        args = parse_media(words)
    except WordError as e:
        msg = str(e)
        die(_media_usage(words, ENABLE_USAGE) if "missing media" in msg else msg)
    cli_call("bearer.enable", args)


@cmd.command("disable", context_settings=CTX)
@click.argument("words", **WORDS)
def disable(words: tuple[str, ...]) -> None:
    """Disable a bearer: media {udp name NAME | eth device DEV}."""
    if "media" not in words:
        die(DISABLE_USAGE)
    try:
        args = parse_media(words, extra_keys=(), need_local=False)
    except WordError as e:
        die(str(e))
    cli_call("bearer.disable", {"bearer": args["bearer"]})


@cmd.command("add", context_settings=CTX)
@click.argument("words", **WORDS)
def add(words: tuple[str, ...]) -> None:
    """Add a remote peer to a UDP bearer: media udp name NAME remoteip IP [remoteport P]."""
    if "media" not in words:
        die(ADD_USAGE)
    try:
        args = parse_media(words, extra_keys=(), need_local=False)
    except WordError as e:
        die(str(e))
    if args["media"] != "udp":
        die(ADD_USAGE)
    if "remoteip" not in args:
        die("error, missing remoteip")
    cli_call("bearer.add", {"bearer": args["bearer"], "remoteip": args["remoteip"],
                            "remoteport": args.get("remoteport")})


@cmd.command("list", context_settings=CTX)
@click.argument("words", **WORDS)
def list_(words: tuple[str, ...]) -> None:
    """List enabled bearers."""
    if words:
        die("Usage: tipc bearer list")
    for name in cli_call("bearer.list"):
        click.echo(name)


@cmd.command("get", context_settings=CTX)
@click.argument("words", **WORDS)
def get(words: tuple[str, ...]) -> None:
    """Get a bearer property: {priority|tolerance|window|mtu} media MEDIA ARGS..."""
    if not words or words[0] not in ("priority", "tolerance", "window", "mtu") \
            or "media" not in words:
        die(GET_USAGE)
    prop = words[0]
    try:
        i = words.index("media")
        if i + 1 >= len(words):
            die("error, missing media")
        media = words[i + 1]
        args = pairs(words[i + 2:], ("name", "device"))
    except WordError as e:
        die(str(e))
    if media == "udp" and "name" not in args:
        die("error, missing bearer name")
    if media != "udp" and "device" not in args:
        die("error, missing device")
    bname = f"udp:{args['name']}" if media == "udp" else f"{media}:{args['device']}"
    click.echo(str(cli_call("bearer.get", {"bearer": bname})[prop]))
