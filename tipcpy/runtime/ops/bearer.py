"""``tipc bearer``: enable, disable, add a remote, list, get and set properties."""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import socket
import struct
from typing import Any

from tipcpy.bearer.base import Bearer, BearerError
from tipcpy.bearer.eth import EthBearer
from tipcpy.bearer.media import MEDIA
from tipcpy.bearer.udp import UDP_PORT_DEFAULT, UdpBearer

from ..control import ControlError
from .context import MEDIA_DEFAULTS, OpsContext
from .validate import (
    BEARER_REF,
    IP,
    PORT,
    RANGES,
    U32,
    Schema,
    bad,
    parse_prop,
    props,
)

log = logging.getLogger("tipcpy.daemon")

SIOCGIFADDR = 0x8915


def device_ipv4(dev: str) -> str:
    """The IPv4 address of a network device (what `bearer enable ... udp ... device DEV`
    binds to), via SIOCGIFADDR."""
    if not dev or len(dev.encode()) > 15:
        raise bad(f"invalid device '{dev}'", errno.ENODEV)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", dev.encode()))
    except OSError as e:
        if e.errno == errno.ENODEV:
            raise bad(f"no device '{dev}' on this host", errno.ENODEV) from None
        raise bad(f"device '{dev}' has no IPv4 address; give localip instead",
                  errno.EADDRNOTAVAIL) from None
    finally:
        s.close()
    return str(ipaddress.IPv4Address(res[20:24]))


def _make_bearer(ctx: OpsContext, args: dict[str, Any], mtu: int | None) -> Bearer:
    media = args.get("media")
    if media == "udp":
        name = args.get("name") or str(args.get("bearer", ""))[4:]
        if not name:
            raise bad("missing bearer name")
        if len(name) > 15:
            raise bad(f"bearer name '{name}' is too long (at most 15 characters)")
        localip = args.get("localip")
        if not localip:
            if not args.get("device"):
                raise bad("missing localip (or device)")
            localip = device_ipv4(str(args["device"]))
        return UdpBearer(name, localip, args.get("localport", UDP_PORT_DEFAULT),
                         args.get("remoteip"), args.get("remoteport", UDP_PORT_DEFAULT),
                         netid=ctx.netid, mtu=args.get("mtu") or mtu, loop=ctx.loop)
    if media == "eth":
        return EthBearer(args.get("device") or str(args.get("bearer", ""))[4:],
                         mtu=args.get("mtu"), loop=ctx.loop)
    if media in MEDIA and not MEDIA[media].supported:
        raise bad(f"media {media} is not supported by tipcpy", errno.EOPNOTSUPP)
    raise bad(f"invalid media '{media}': expected udp or eth")


def bearer_enable(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    media = str(args.get("media"))
    mdef = ctx.media.get(media, {})
    prop_vals = {k: parse_prop(k, args.get(k, mdef.get(k)))
                 for k in ("priority", "tolerance", "window")
                 if args.get(k, mdef.get(k)) is not None}
    mtu: int | None = mdef.get("mtu")
    if mtu == MEDIA_DEFAULTS.get(media, {}).get("mtu"):
        mtu = None              # the bearer's own default (1280 on IPv6)
    try:
        bearer = _make_bearer(ctx, args, mtu)
        if bearer.name in ctx.runtime.by_name:
            raise bad("Already enabled")
        bid = ctx.runtime.enable_bearer(bearer, **prop_vals)
    except BearerError as e:
        raise ControlError(e.errno or errno.EIO, e.message) from None
    ctx.table_generation.setdefault(bearer.name, 0)
    info = bearer.info()
    log.info("enabled bearer %s (%s)", bearer.name, info.get("localip", info.get("device")))
    return {"bearer": bearer.name, "bearer_id": bid}


def bearer_disable(ctx: OpsContext, args: dict[str, Any]) -> None:
    name = ctx.bearer_name(args)
    if name not in ctx.runtime.by_name:
        raise bad("Bearer not found")
    ctx.runtime.disable_bearer(name)
    ctx.table_generation.pop(name, None)
    log.info("disabled bearer %s", name)


def bearer_add(ctx: OpsContext, args: dict[str, Any]) -> None:
    name = ctx.bearer_name({**args, "media": args.get("media", "udp")})
    bid = ctx.runtime.by_name.get(name)
    if bid is None:
        raise bad("Bearer not found")
    bearer = ctx.runtime.bearers[bid]
    if not isinstance(bearer, UdpBearer):
        raise bad(f"{name} is not a udp bearer")
    if not args.get("remoteip"):
        raise bad("missing remoteip")
    try:
        bearer.add_remote(args["remoteip"], args.get("remoteport", UDP_PORT_DEFAULT))
    except BearerError as e:
        raise ControlError(e.errno or errno.EINVAL, e.message) from None
    ctx.runtime.pump()


def bearer_list(ctx: OpsContext, args: dict[str, Any]) -> list[str]:
    return list(ctx.runtime.by_name)


def bearer_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    name = ctx.bearer_name(args)
    bid = ctx.runtime.by_name.get(name)
    if bid is None:
        raise bad("Bearer not found")
    info = ctx.runtime.bearers[bid].info()
    sb = next(b for b in ctx.stack.bearer_list() if b["name"] == name)
    info.update(bearer_id=bid, priority=sb["priority"], tolerance=sb["tolerance"],
                window=sb["window"], mtu=sb["mtu"])
    info.pop("counters", None)
    return info


def bearer_set(ctx: OpsContext, args: dict[str, Any]) -> None:
    """``tipc bearer set PROP VALUE media ...``: the bearer's existing links and the
    links it makes later (mtu: later links only, udp only - as the kernel)."""
    name = ctx.bearer_name(args)
    prop_vals = {k: parse_prop(k, args[k]) for k in RANGES if k in args}
    if not prop_vals:
        raise bad("nothing to set: give priority, tolerance, window or mtu")
    bid = ctx.runtime.by_name.get(name)
    if bid is None:
        raise bad("Bearer not found")
    b = ctx.runtime.bearers[bid]
    medium = MEDIA.get(b.media)
    if "mtu" in prop_vals and (medium is None or not medium.mtu_settable):
        raise bad("MTU property is unsupported for this media type")
    try:
        ctx.stack.set_bearer_prop(name, ctx.runtime.now(), **prop_vals)
    except OSError as e:
        raise ControlError(e.errno or errno.EINVAL, str(e)) from None
    for k, v in prop_vals.items():
        setattr(b, k, v)
    ctx.runtime.pump()


SCHEMAS: dict[str, Schema] = {
    "bearer.enable": {**BEARER_REF, "localip": IP(), "localport": PORT, "remoteip": IP(),
                      "remoteport": PORT, "domain": U32, **props(text=False)},
    "bearer.disable": BEARER_REF,
    "bearer.add": {**BEARER_REF, "remoteip": IP(), "remoteport": PORT},
    "bearer.list": {},
    "bearer.get": BEARER_REF,
    "bearer.set": {**BEARER_REF, **props(text=True)},
}

HANDLERS = {"bearer.enable": bearer_enable, "bearer.disable": bearer_disable,
            "bearer.add": bearer_add, "bearer.list": bearer_list, "bearer.get": bearer_get,
            "bearer.set": bearer_set}
