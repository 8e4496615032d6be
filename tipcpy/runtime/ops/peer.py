"""``tipc peer remove``."""

from __future__ import annotations

import errno
from typing import Any

from ..control import ControlError
from .context import OpsContext
from .validate import ADDRESS, IDENTITY, Schema, bad, parse_address, parse_identity


def peer_remove(ctx: OpsContext, args: dict[str, Any]) -> None:
    """``tipc peer remove {address ADDR | identity ID}``: EBUSY while the peer is up,
    ENXIO if there is no such peer; otherwise its node object is gone."""
    peers = ctx.stack.peers
    addr: int | None
    if "identity" in args:
        raw = parse_identity(args["identity"])
        addr = next((a for a, p in peers.items() if p.node_id == raw), None)
    elif "address" in args:
        addr = parse_address(args["address"])
    else:
        raise bad("missing address or identity")
    if addr is None or addr not in peers:
        raise bad("no such peer node", errno.ENXIO)
    if peers[addr].is_up:
        raise bad(f"peer {ctx.node_name(addr)} is up: it can only be removed when "
                  "it is down", errno.EBUSY)
    try:
        ctx.stack.remove_peer(addr, ctx.runtime.now())
    except OSError as e:
        raise ControlError(e.errno or errno.EIO, str(e)) from None
    ctx.runtime.pump()


SCHEMAS: dict[str, Schema] = {"peer.remove": {"address": ADDRESS, "identity": IDENTITY}}
HANDLERS = {"peer.remove": peer_remove}
