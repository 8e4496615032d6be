"""``tipc node``: identity, address, network id, the peer list and symmetric keys."""

from __future__ import annotations

import errno
import logging
from typing import Any

from tipcpy.addr import node_id_from_str, node_id_to_str

from ..control import ControlError
from .context import OpsContext
from .validate import (
    ADDRESS,
    IDENTITY,
    INT_MAX,
    KEY_ALGS,
    NETID_MAX,
    NETID_MIN,
    Bool,
    Enum,
    Int,
    IntOr,
    Parsed,
    Schema,
    bad,
    parse_address,
    parse_identity,
    parse_key,
    parse_netid,
)

log = logging.getLogger("tipcpy.daemon")


def node_set(ctx: OpsContext, args: dict[str, Any]) -> None:
    ident = args.get("identity")
    netid = args.get("netid", args.get("clusterid"))
    address = args.get("address")
    if ident is None and netid is None and address is None:
        raise bad("nothing to set: give identity, address, netid or clusterid")
    raw = parse_identity(ident) if ident is not None else None
    nid = parse_netid(netid) if netid is not None else None
    addr = parse_address(address) if address is not None else None
    if addr == 0:
        raise bad("invalid network address 0.0.0: a node address must not be 0")
    if ctx.runtime.bearers:
        # the kernel answers EPERM once the node has an address in use; we are a bit
        # more lenient: allowed until a bearer is enabled
        raise bad("node identity, address and network id can only be changed while "
                  "no bearer is enabled (disable the bearers first)", errno.EPERM)
    if addr is not None and raw is None and ctx.node_id() is None:
        # kernel tipc_set_node_addr: a node without identity takes "%x" of its address
        raw = node_id_from_str(f"{addr:x}")
    try:
        if raw is not None:
            ctx.stack.set_identity(raw)
        if nid is not None:
            ctx.stack.set_netid(nid)
        if addr is not None:
            ctx.stack.trial_addr = addr
    except OSError as e:
        raise ControlError(e.errno or errno.EINVAL, str(e)) from None
    ctx.runtime.pump()


def node_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    nid = ctx.node_id()
    netid = ctx.netid
    return {"address": ctx.own_address(), "identity": node_id_to_str(nid) if nid else "",
            "netid": netid, "clusterid": netid}


def node_list(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Remote nodes only, as iproute2 lists them."""
    return [{"identity": n["identity"], "address": int(n["addr"]), "up": bool(n["up"])}
            for n in ctx.stack.node_list()]


def node_key_set(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    """``tipc node set key``: validated exactly as iproute2 + the kernel would, then
    stored.  tipcpy does not encrypt yet (the CLI says so on stderr)."""
    if "rekeying" in args:
        if len(args) != 1:
            raise bad("rekeying is set on its own (no key, algname, master or nodeid)")
        ctx.keys["rekeying"] = args["rekeying"]
        return {"encrypting": False}
    if "key" not in args:
        raise bad("missing key")
    key = parse_key(args["key"])
    alg = args.get("algname", "gcm(aes)")
    master = bool(args.get("master"))
    nodeid = args.get("nodeid")
    if master and nodeid is not None:
        raise bad("master and nodeid are mutually exclusive")
    if nodeid is not None:
        ctx.keys["nodes"][node_id_to_str(parse_identity(nodeid))] = key
    elif master:
        ctx.keys["master"] = key
    else:
        ctx.keys["cluster"] = key
    ctx.keys["algname"] = alg
    log.warning("symmetric key stored (%s, %d octets); tipcpy does not encrypt "
                "traffic yet", "master" if master else "per-node" if nodeid else
                "cluster", len(key))
    return {"encrypting": False}


def node_key_flush(ctx: OpsContext, args: dict[str, Any]) -> None:
    ctx.keys.update(cluster=None, master=None, nodes={}, algname=None)


_NETID = Int(NETID_MIN, NETID_MAX, text=True)

SCHEMAS: dict[str, Schema] = {
    "node.set": {"identity": IDENTITY, "address": ADDRESS, "netid": _NETID,
                 "clusterid": _NETID},
    "node.get": {},
    "node.list": {},
    # rekeying: minutes (iproute2 reads it with atoi, so at most INT_MAX) or "now"
    "node.key.set": {"key": Parsed("key", 2 + 2 * 36),
                     "algname": Enum(KEY_ALGS), "master": Bool(),
                     "nodeid": IDENTITY, "rekeying": IntOr("now", Int(0, INT_MAX, text=True),
                                                       "a rekeying interval in minutes")},
    "node.key.flush": {},
}

HANDLERS = {"node.set": node_set, "node.get": node_get, "node.list": node_list,
            "node.key.set": node_key_set, "node.key.flush": node_key_flush}
