"""``tipc node``: identity, address, network id, the peer list and symmetric keys."""

from __future__ import annotations

import errno
import logging
from typing import Any

from tipcpy.addr import node_id_from_str, node_id_to_str
from tipcpy.core.crypto import AeadKey, CryptoError, CryptoEvent
from tipcpy.core.stack_crypto import CryptoDrop

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
    check_args,
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
    """``tipc node set key``: validated as iproute2 + the kernel would, then attached
    to the node's crypto (tipcpy.core.crypto): from then on every packet it sends is
    encrypted.  ``clear refuse|accept`` is a tipcpy extension (refuse-clear mode)."""
    now = ctx.runtime.now()
    enc = ctx.stack.encryption
    if "clear" in args:
        if len(args) != 1:
            raise bad("clear is set on its own: tipc node set key clear {refuse|accept}")
        enc.set_refuse_clear(args["clear"] == "refuse")
        log.info("refuse-clear mode %s", "on" if enc.refuse_clear else "off")
        return _key_state(ctx)
    if "rekeying" in args:
        if len(args) != 1:
            raise bad("rekeying is set on its own (no key, algname, master or nodeid)")
        val = args["rekeying"]
        minutes = None if val == "now" else int(str(val), 0)
        enc.set_rekeying(now, minutes)
        ctx.keys["rekeying"] = val
        ctx.runtime.pump()
        log.info("rekeying %s", "now" if minutes is None else f"every {minutes} min")
        return _key_state(ctx)
    if "key" not in args:
        raise bad("missing key")
    raw = parse_key(args["key"])
    alg = args.get("algname", "gcm(aes)")
    master = bool(args.get("master"))
    nodeid = args.get("nodeid")
    if master and nodeid is not None:
        raise bad("master and nodeid are mutually exclusive")
    if ctx.node_id() is None:
        raise bad("set the node identity before a key (tipc node set identity)", errno.EPERM)
    nid = parse_identity(nodeid) if nodeid is not None else None
    try:
        key = AeadKey(raw, alg)
        slot = enc.set_key(key, now, master=master, node_id=nid)
    except CryptoError as e:
        # the kernel answers EBUSY while its three key slots are all in use
        raise ControlError(errno.EBUSY if e.reason == "busy" else errno.EINVAL,
                           str(e)) from None
    ctx.runtime.pump()
    kind = ("master" if master else f"per-node ({node_id_to_str(nid)})" if nid is not None
            else "cluster")
    ctx.keys["algname"] = alg
    log.info("%s key set (gcm(aes)-%d, hint ...%s) in slot %d: traffic is encrypted",
             kind, key.bits, key.hint, slot)
    return _key_state(ctx)


def _key_state(ctx: OpsContext) -> dict[str, Any]:
    info = ctx.stack.encryption.key_info()
    return {"encrypting": bool(info["working"]), "refuse_clear": bool(info["refuse_clear"])}


def node_key_flush(ctx: OpsContext, args: dict[str, Any]) -> None:
    ctx.stack.encryption.flush()
    ctx.keys.update(algname=None, rekeying=None)
    log.warning("all keys flushed: traffic is sent in clear again")


def node_key_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, Any]:
    """The key slots (hints only, never key material) and the counters per link."""
    info = ctx.stack.encryption.key_info()
    info["links"] = {f"{a:08x}/{b}": c for (a, b), c in ctx.stack.encryption.stats.items()}
    return info


def key_words(words: list[str]) -> dict[str, Any]:
    """``KEY [algname ALGNAME] [master | nodeid NODEID]`` (the words of ``tipc node set
    key``, as in a ``--key-file``) -> the op's arguments."""
    if not words:
        raise bad("missing key")
    args: dict[str, Any] = {"key": words[0]}
    rest = list(words[1:])
    while rest:
        word = rest.pop(0)
        if word == "master":
            args["master"] = True
        elif word in ("algname", "nodeid") and rest:
            args[word] = rest.pop(0)
        else:
            raise bad(f"invalid key option {word[:40]!r} (algname ALGNAME, master or "
                      "nodeid NODEID)")
    return args


def apply_crypto_config(ctx: OpsContext, refuse_clear: bool, key_file: str | None) -> None:
    """tipcd's start: log key events and drops, refuse-clear mode, and a key from a
    file (read before any bearer is enabled, so not one packet leaves in clear).  The
    file holds the words of ``tipc node set key`` on one line (# comments allowed), so
    the key never shows on a command line."""
    import os
    import shlex

    ctx.stack.encryption.random_bytes = os.urandom
    ctx.runtime.add_listener(CryptoLog(ctx.runtime.now))
    ctx.stack.encryption.set_refuse_clear(refuse_clear)
    if key_file:
        try:
            with open(key_file, encoding="ascii") as f:
                lines = [ln.split("#", 1)[0].strip() for ln in f]
        except (OSError, UnicodeDecodeError) as e:
            raise bad(f"key file {key_file}: {e}") from None
        words = shlex.split(" ".join(ln for ln in lines if ln))
        args = key_words(words)
        check_args("node.key.set", SCHEMAS["node.key.set"], args)
        node_key_set(ctx, args)


class CryptoLog:
    """Log key changes, and dropped packets at most once per 10 s per (peer, bearer,
    reason): a wrong key shows up as one clear line, not a flood."""

    HINTS = {"bad_tag": "authentication failed: the peer uses another key, or the packet "
                        "was forged",
             "no_key": "no key to decrypt it: set one with `tipc node set key`",
             "unknown_key_id": "the peer uses a key id we do not have (a key change we "
                               "missed?)",
             "too_old": "sent under a key we already retired",
             "replay": "a replayed (or too late) packet",
             "clear_dropped": "a clear packet while refuse-clear is on",
             "malformed": "a malformed encrypted packet or key message"}

    def __init__(self, monotonic: Any) -> None:
        self._now = monotonic
        self._last: dict[tuple[int, int, str], float] = {}
        self._missed: dict[tuple[int, int, str], int] = {}

    def __call__(self, ev: object) -> None:
        if isinstance(ev, CryptoDrop):
            k = (ev.peer, ev.bearer_id, ev.reason)
            t = self._now()
            if t - self._last.get(k, -1e18) < 10.0:
                self._missed[k] = self._missed.get(k, 0) + 1
                return
            self._last[k] = t
            more = self._missed.pop(k, 0)
            who = f"node {ev.peer:08x}" if ev.peer else "an unknown node"
            log.warning("crypto: dropped a packet from %s on bearer %d: %s (%s)%s", who,
                        ev.bearer_id, ev.reason, self.HINTS.get(ev.reason, ev.detail),
                        f"; {more} more since the last report" if more else "")
        elif isinstance(ev, CryptoEvent):
            log.info("crypto: %s key %d %s%s", ev.side, ev.key, ev.kind,
                     f" ({ev.detail})" if ev.detail else "")


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
                                                       "a rekeying interval in minutes"),
                     "clear": Enum(("refuse", "accept"))},
    "node.key.flush": {},
    "node.key.get": {},
}

HANDLERS = {"node.set": node_set, "node.get": node_get, "node.list": node_list,
            "node.key.set": node_key_set, "node.key.flush": node_key_flush,
            "node.key.get": node_key_get}
