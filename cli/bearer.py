"""`tipc bearer` - enable, disable, add peers to, configure and list bearers.

Arguments are iproute2's words (`media udp name b0 localip 10.0.0.1 ...`), parsed by
tipcpy.runtime.words so `tipcd --bearer` accepts the same. Output and error statuses
follow ../shared/reference/cli/tipc-bearer.txt; `-j` is ignored here, as in iproute2.
A missing word prints iproute2's usage text (exit 255); a wrong property word gives
click's usage error listing the valid ones (exit 2); values out of range are refused
by the daemon with the valid range in the message (exit 255, node unchanged).
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import choose, die, group
from tipcpy.bearer.media import MEDIA, bearer_name_of
from tipcpy.runtime.ctlclient import cli_call
from tipcpy.runtime.words import WordError, pairs, parse_media, udp_tail

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

SET_USAGE = """Usage: tipc bearer set OPTION media MEDIA ARGS...
OPTIONS
 priority\t\t- Bearer link priority
 tolerance\t\t- Bearer link tolerance
 window\t\t- Bearer link window
 mtu\t\t\t- Bearer link mtu

MEDIA
 udp\t\t\t- User Datagram Protocol
 ib\t\t\t- Infiniband
 eth\t\t\t- Ethernet"""

PROPS = ("priority", "tolerance", "window", "mtu")
UDP_OPTS = ("localip", "localport", "remoteip", "remoteport")

WORDS: dict[str, Any] = {"nargs": -1, "type": click.UNPROCESSED}
CTX = {"ignore_unknown_options": True}


def _media_usage(words: tuple[str, ...], default: str) -> str:
    if "media" in words:
        i = words.index("media")
        if i + 1 < len(words):
            m = MEDIA.get(words[i + 1])
            if m is not None:   # udp is named by `name`, the L2 media by `device`
                return (ENABLE_UDP_USAGE if m.name_key == "name"
                        else ENABLE_ETH_USAGE.replace("eth", m.name, 2))
    return default


@group("bearer")
def cmd() -> None:
    """Enable, disable, list and configure bearers."""


@cmd.command("enable", context_settings=CTX)
@click.argument("words", metavar="[domain D] [priority P] media MEDIA ARGS...", **WORDS)
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
@click.argument("words", metavar="media MEDIA ARGS...", **WORDS)
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
@click.argument("words", metavar="media udp name NAME remoteip REMOTEIP [remoteport PORT]", **WORDS)
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
    req = {"bearer": args["bearer"], "remoteip": args["remoteip"]}
    if "remoteport" in args:
        req["remoteport"] = args["remoteport"]
    cli_call("bearer.add", req)


@cmd.command("list", context_settings=CTX)
@click.argument("words", metavar="", **WORDS)
def list_(words: tuple[str, ...]) -> None:
    """List enabled bearers."""
    if words:
        die("Usage: tipc bearer list")
    for name in cli_call("bearer.list"):
        click.echo(name)


def _target(words: list[str]) -> dict[str, str]:
    """`media MEDIA {name NAME | device DEV}` -> {"bearer": "udp:NAME"}."""
    if not words or words[0] != "media":
        die("error, missing media")
    if len(words) < 2:
        die("error, missing media")
    media = words[1]
    try:
        args = pairs(words[2:], ("name", "device"))
    except WordError as e:
        die(str(e))
    m = MEDIA.get(media)
    if m is None:
        die(f"error, invalid media type \"{media}\"")
    name = bearer_name_of(media, args)
    if name is None:
        die("error, missing bearer name" if m.name_key == "name" else "error, missing device")
    return {"bearer": name, "media": media}


@cmd.command("get", context_settings=CTX)
@click.argument("words", metavar="[PROPERTY] media MEDIA ARGS... [UDP-OPTION]", **WORDS)
def get(words: tuple[str, ...]) -> None:
    """Get a bearer property:

    get [priority|tolerance|window|mtu] media {eth|ib} device DEV

    get [priority|tolerance|window|mtu] media udp name NAME
    [localip|localport|remoteip|remoteport]
    """
    w = list(words)
    if not w or (w[0] != "media" and "media" not in w):
        die(GET_USAGE)
    prop = None
    if w[0] != "media":
        prop = choose(w[0], PROPS, "OPTION")
        w = w[1:]
    rest, udp_opt = udp_tail(w, UDP_OPTS)
    target = _target(rest)
    if udp_opt is not None and target["media"] != "udp":
        die(GET_USAGE)
    if prop is None and udp_opt is None:
        die(GET_USAGE)
    info = cli_call("bearer.get", {"bearer": target["bearer"]})
    if prop is not None:
        click.echo(str(info[prop]))
    if udp_opt == "remoteip":
        remotes = info.get("remotes") or []
        ips = [r.rsplit(":", 1)[0] for r in remotes] if remotes else [info.get("remoteip")]
        for ip in ips:
            click.echo(str(ip))
    elif udp_opt is not None:
        click.echo(str(info.get(udp_opt)))


@cmd.command("set", context_settings=CTX)
@click.argument("words", metavar="PROPERTY VALUE media MEDIA ARGS...", **WORDS)
def set_(words: tuple[str, ...]) -> None:
    """Set a bearer property of its links (existing and future; mtu: future links,
    udp only):

    set {priority P | tolerance T | window W | mtu M} media {eth|ib} device DEV

    set {priority P | tolerance T | window W | mtu M} media udp name NAME
    """
    w = list(words)
    if not w:
        die(SET_USAGE)
    prop = choose(w[0], PROPS, "OPTION")
    if len(w) < 2 or w[1] == "media":
        die("error, missing value")
    value = w[1]
    target = _target(w[2:])
    cli_call("bearer.set", {"bearer": target["bearer"], prop: value})
