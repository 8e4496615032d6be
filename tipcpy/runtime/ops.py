"""Control ops of tipcd: what each ``tipc`` command asks the daemon to do.

Each op validates its arguments completely *before* touching the node, so a failed op
leaves the node exactly as it was (bad IP, busy port, missing device, bad identity).
Results are plain JSON values; the CLI formats them exactly as iproute2 does.

Result shapes (the CLI depends on them):

* ``node.get``   -> ``{"address": int, "identity": str, "netid": int, "clusterid": int}``
* ``node.list``  -> ``[{"identity": str, "address": int, "up": bool}, ...]``
* ``bearer.list``-> ``["udp:b0", ...]``;  ``bearer.get`` -> the bearer's info dict
* ``link.list``  -> ``[{"name": str, "up": bool}, ...]`` (``broadcast-link`` first)
* ``link.stat.show`` -> ``[{"name", "broadcast", "state", "mtu", "priority", ...}]``
* ``nametable.show`` -> ``[{"type","lower","upper","scope","port","node"}, ...]``
"""

from __future__ import annotations

import asyncio
import errno
import random
from collections.abc import Callable
from typing import Any

from tipcpy.addr import hash128to32, node_id_from_str, node_id_to_str
from tipcpy.bearer.base import BearerError
from tipcpy.bearer.eth import EthBearer
from tipcpy.bearer.udp import UdpBearer

from .control import ControlError
from .daemon import DaemonConfig, Runtime, log

NETID_MIN, NETID_MAX = 1, 9999


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict or an attribute of an object (Stack introspection)."""
    if isinstance(obj, dict):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _as_dicts(items: Any) -> list[Any]:
    return list(items or [])


def _bad(msg: str, code: int = errno.EINVAL) -> ControlError:
    return ControlError(code, msg)


def parse_identity(text: Any) -> bytes:
    """Node identity text -> 16 bytes, with an error that says what a valid one is."""
    if not isinstance(text, str) or not text:
        raise _bad("missing node identity")
    try:
        raw = node_id_from_str(text)
    except (ValueError, UnicodeError) as e:
        raise _bad(f"invalid node identity: {e}") from None
    if not any(raw):
        raise _bad("invalid node identity: it must not be all zeros")
    return raw


def parse_netid(value: Any) -> int:
    try:
        n = int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid network id '{value}': expected {NETID_MIN}-{NETID_MAX}") from None
    if not NETID_MIN <= n <= NETID_MAX:
        raise _bad(f"invalid network id {n}: expected {NETID_MIN}-{NETID_MAX}")
    return n


class NodeOps:
    """Owns the Stack + Runtime of one daemon and implements the control ops on them."""

    def __init__(self, config: DaemonConfig, loop: asyncio.AbstractEventLoop,
                 rng: random.Random, stack_factory: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.loop = loop
        self.netid = parse_netid(config.netid)
        node_id = parse_identity(config.identity) if config.identity else None
        if stack_factory is None:
            from tipcpy.core.stack import Stack as stack_factory  # noqa: N813
        self.stack = stack_factory(node_id, self.netid, rng)
        self.runtime = Runtime(self.stack, loop)
        self.link_defaults = dict(config.link)
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "node.set": self.node_set,
            "node.get": self.node_get,
            "node.list": self.node_list,
            "bearer.enable": self.bearer_enable,
            "bearer.disable": self.bearer_disable,
            "bearer.add": self.bearer_add,
            "bearer.list": self.bearer_list,
            "bearer.get": self.bearer_get,
            "link.list": self.link_list,
            "link.stat.show": self.link_stat_show,
            "nametable.show": self.nametable_show,
            "daemon.stats": self.daemon_stats,
            "events": self.events,
        }

    # -- plumbing -----------------------------------------------------------------------
    def dispatch(self, op: str, args: dict[str, Any]) -> Any:
        fn = self._ops.get(op)
        if fn is None:
            raise ControlError(errno.EOPNOTSUPP, f"unknown op '{op}' (this tipcd knows: "
                               f"{', '.join(sorted(self._ops))})")
        return fn(args)

    def apply_startup_config(self) -> None:
        """Enable the bearers given by flags/TOML; a failure aborts the start, loudly."""
        for b in self.config.bearers:
            self.bearer_enable(dict(b))

    # -- node ---------------------------------------------------------------------------
    def _node_id(self) -> bytes | None:
        nid = getattr(self.stack, "node_id", None)
        if isinstance(nid, str):
            return node_id_from_str(nid)
        return bytes(nid) if nid else None

    def _node_info(self) -> Any:
        fn = getattr(self.stack, "node_info", None)
        return fn() if callable(fn) else {}

    def node_set(self, args: dict[str, Any]) -> None:
        ident = args.get("identity")
        netid = args.get("netid", args.get("clusterid"))
        if ident is None and netid is None:
            raise _bad("nothing to set: give identity, netid or clusterid")
        raw = parse_identity(ident) if ident is not None else None
        nid = parse_netid(netid) if netid is not None else None
        if self.runtime.bearers:
            # the kernel answers EPERM once the node has an address in use; we are a bit
            # more lenient: allowed until a bearer is enabled
            raise _bad("node identity and network id can only be changed while no bearer "
                       "is enabled (disable the bearers first)", errno.EPERM)
        if raw is not None:
            self.stack.set_identity(raw)
        if nid is not None:
            self.stack.set_netid(nid)
            self.netid = nid
        self.runtime.pump()
        return None

    def node_get(self, args: dict[str, Any]) -> dict[str, Any]:
        nid = self._node_id()
        info = self._node_info()
        addr = _get(info, "address") or _get(info, "addr")
        if addr is None:
            addr = hash128to32(nid) if nid else 0
        netid = _get(info, "netid") or _get(info, "net_id") or self.netid
        return {"address": int(addr), "identity": node_id_to_str(nid) if nid else "",
                "netid": int(netid), "clusterid": int(netid)}

    def node_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for n in _as_dicts(self.stack.node_list()):
            if _get(n, "self"):
                continue                    # iproute2 lists remote nodes only
            nid = _get(n, "node_id") or _get(n, "identity")
            addr = _get(n, "address", _get(n, "addr", 0))
            if isinstance(nid, bytes | bytearray):
                ident = node_id_to_str(bytes(nid))
            else:
                ident = str(nid) if nid else f"{addr:x}"
            up = _get(n, "up")
            if up is None:
                up = str(_get(n, "state", "")).lower() == "up"
            out.append({"identity": ident, "address": int(addr), "up": bool(up)})
        return out

    # -- bearers ------------------------------------------------------------------------
    def _make_bearer(self, args: dict[str, Any]) -> Any:
        media = args.get("media")
        if media == "udp":
            name = args.get("name") or str(args.get("bearer", ""))[4:]
            if not name:
                raise _bad("missing bearer name")
            if len(name) > 15:
                raise _bad(f"bearer name '{name}' is too long (at most 15 characters)")
            if not args.get("localip"):
                if args.get("device"):
                    raise _bad("udp bearer on 'device' is not supported by tipcd; give "
                               "localip")
                raise _bad("missing localip")
            return UdpBearer(name, args["localip"], args.get("localport") or 6118,
                             args.get("remoteip"), args.get("remoteport") or 6118,
                             netid=self.netid, mtu=args.get("mtu"), loop=self.loop)
        if media == "eth":
            return EthBearer(args.get("device") or str(args.get("bearer", ""))[4:],
                             mtu=args.get("mtu"), loop=self.loop)
        if media == "ib":
            raise _bad("media ib is not supported by tipcpy", errno.EOPNOTSUPP)
        raise _bad(f"invalid media '{media}': expected udp or eth")

    @staticmethod
    def _props(args: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for key, lo, hi in (("priority", 0, 31), ("tolerance", 50, 30000),
                            ("window", 16, 8191)):
            v = args.get(key, defaults.get(key))
            if v is None:
                continue
            try:
                v = int(v)
            except (TypeError, ValueError):
                raise _bad(f"invalid {key} '{v}'") from None
            if not lo <= v <= hi:
                raise _bad(f"invalid {key} {v}: expected {lo}-{hi}")
            props[key] = v
        return props

    def bearer_enable(self, args: dict[str, Any]) -> dict[str, Any]:
        props = self._props(args, self.link_defaults)
        try:
            bearer = self._make_bearer(args)
            if bearer.name in self.runtime.by_name:
                raise _bad("Already enabled")
            bid = self.runtime.enable_bearer(bearer, **props)
        except BearerError as e:
            raise ControlError(e.errno or errno.EIO, e.message) from None
        except TypeError as e:   # Stack refused our keyword arguments
            raise ControlError(errno.EINVAL, f"cannot enable bearer: {e}") from None
        log.info("enabled bearer %s (%s)", bearer.name, bearer.info().get("localip",
                                                                          bearer.info().get("device")))
        return {"bearer": bearer.name, "bearer_id": bid}

    def _bearer_name(self, args: dict[str, Any]) -> str:
        if args.get("bearer"):
            return str(args["bearer"])
        media = args.get("media")
        if media == "udp" and args.get("name"):
            return f"udp:{args['name']}"
        if media in ("eth", "ib") and args.get("device"):
            return f"{media}:{args['device']}"
        raise _bad("missing bearer name")

    def bearer_disable(self, args: dict[str, Any]) -> None:
        name = self._bearer_name(args)
        if name not in self.runtime.by_name:
            raise _bad("Bearer not found")
        self.runtime.disable_bearer(name)
        log.info("disabled bearer %s", name)
        return None

    def bearer_add(self, args: dict[str, Any]) -> None:
        name = self._bearer_name({**args, "media": args.get("media", "udp")})
        bid = self.runtime.by_name.get(name)
        if bid is None:
            raise _bad("Bearer not found")
        bearer = self.runtime.bearers[bid]
        if not isinstance(bearer, UdpBearer):
            raise _bad(f"{name} is not a udp bearer")
        if not args.get("remoteip"):
            raise _bad("missing remoteip")
        try:
            bearer.add_remote(args["remoteip"], args.get("remoteport") or 6118)
        except BearerError as e:
            raise ControlError(e.errno or errno.EINVAL, e.message) from None
        # let discovery reach the new peer now instead of at its next back-off slot
        nudge = getattr(self.stack, "bearer_reset_discovery", None)
        if callable(nudge):
            nudge(bid, self.runtime.now())
        self.runtime.pump()
        return None

    def bearer_list(self, args: dict[str, Any]) -> list[str]:
        return list(self.runtime.by_name)

    def bearer_get(self, args: dict[str, Any]) -> dict[str, Any]:
        name = self._bearer_name(args)
        bid = self.runtime.by_name.get(name)
        if bid is None:
            raise _bad("Bearer not found")
        b = self.runtime.bearers[bid]
        info = b.info()
        info.update(bearer_id=bid,
                    priority=b.priority if b.priority is not None else 10,
                    tolerance=b.tolerance if b.tolerance is not None else 1500,
                    window=b.window if b.window is not None else 50)
        return info

    # -- links --------------------------------------------------------------------------
    def _links(self) -> list[Any]:
        return _as_dicts(self.stack.link_list())

    def link_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        out = [{"name": "broadcast-link", "up": True}]
        for ln in self._links():
            name = _get(ln, "name")
            if name == "broadcast-link":
                continue
            up = _get(ln, "up", _get(ln, "is_up"))
            if up is None:
                up = str(_get(ln, "state", "")).lower() in ("up", "established")
            out.append({"name": str(name), "up": bool(up)})
        return out

    def link_stat_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Normalised counters per link; ``link`` selects by name, substring or ``all``
        (iproute2 semantics: no match prints nothing and succeeds)."""
        want = args.get("link")
        out = []
        have_bc = False
        for s in _as_dicts(self.stack.link_stats()):
            d = dict(s) if isinstance(s, dict) else dict(getattr(s, "__dict__", {}))
            name = str(d.get("name"))
            if want and want != "all" and want not in name:
                continue
            n = normalise_link_stats(d)
            have_bc = have_bc or n["broadcast"]
            out.append(n)
        if not have_bc and (not want or want == "all" or want in "broadcast-link"):
            out.insert(0, normalise_link_stats({"name": "broadcast-link"}))
        return out

    # -- name table ---------------------------------------------------------------------
    def nametable_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Every publication in iproute2's order, node shown as its identity string."""
        table = getattr(self.stack, "name_table", None)
        if table is None:
            raise ControlError(errno.EOPNOTSUPP, "this tipcd has no name table")
        out = []
        for p in table:
            scope = p.scope
            if isinstance(scope, int):
                scope = {1: "zone", 2: "cluster", 3: "node"}.get(scope, str(scope))
            out.append({"type": p.type, "lower": p.lower, "upper": p.upper, "scope": scope,
                        "port": p.port, "node": self._node_name(p.node)})
        return out

    def _node_name(self, addr: Any) -> str:
        """Node address -> identity string, as iproute2 does with SIOCGETNODEID."""
        if isinstance(addr, bytes | bytearray):
            return node_id_to_str(bytes(addr))
        if isinstance(addr, str):
            return addr
        own = self._node_id()
        if own is not None and addr in (getattr(self.stack, "own_addr", None),
                                        hash128to32(own)):
            return node_id_to_str(own)
        peer = getattr(self.stack, "peers", {}).get(addr)
        nid = getattr(peer, "node_id", None)
        return node_id_to_str(nid) if nid else f"{addr:x}"

    # -- diagnostics --------------------------------------------------------------------
    def daemon_stats(self, args: dict[str, Any]) -> dict[str, Any]:
        stack_stats: Any = {}
        for attr in ("stats", "counters"):
            v = getattr(self.stack, attr, None)
            v = v() if callable(v) else v
            if v is not None:
                stack_stats = v.as_dict() if hasattr(v, "as_dict") else (
                    dict(v) if isinstance(v, dict) else dict(getattr(v, "__dict__", {})))
                break
        return {"runtime": self.runtime.counters.as_dict(),
                "bearers": {b.name: b.counters.as_dict()
                            for b in self.runtime.bearers.values()},
                "stack": stack_stats}

    def events(self, args: dict[str, Any]) -> Any:
        return self.runtime.events()


# Canonical counter name -> names the Link's stats may use (ours first, then the kernel's
# struct tipc_stats names), so the CLI formats one shape whatever the core calls them.
_STAT_ALIASES: dict[str, tuple[str, ...]] = {
    "rx_packets": ("rx_packets", "recv_pkts", "rx_pkts"),
    "rx_fragments": ("rx_fragments", "recv_fragments"),
    "rx_fragmented": ("rx_fragmented", "recv_fragmented"),
    "rx_bundles": ("rx_bundles", "recv_bundles"),
    "rx_bundled": ("rx_bundled", "recv_bundled"),
    "tx_packets": ("tx_packets", "sent_pkts", "tx_pkts"),
    "tx_fragments": ("tx_fragments", "sent_fragments"),
    "tx_fragmented": ("tx_fragmented", "sent_fragmented"),
    "tx_bundles": ("tx_bundles", "sent_bundles"),
    "tx_bundled": ("tx_bundled", "sent_bundled"),
    "rx_states": ("rx_states", "recv_states"),
    "rx_probes": ("rx_probes", "recv_probes"),
    "rx_naks": ("rx_naks", "recv_nacks", "rx_nacks"),
    "rx_defs": ("rx_defs", "deferred_recv", "rx_deferred"),
    "rx_dups": ("rx_dups", "duplicates", "rx_duplicates"),
    "tx_states": ("tx_states", "sent_states"),
    "tx_probes": ("tx_probes", "sent_probes"),
    "tx_naks": ("tx_naks", "sent_nacks", "tx_nacks"),
    "tx_acks": ("tx_acks", "sent_acks"),
    "tx_retrans": ("tx_retrans", "retransmitted", "tx_retransmitted"),
    "congestion": ("congestion", "link_congs"),
    "queue_max": ("queue_max", "max_queue_sz"),
    "queue_total": ("queue_total", "accu_queue_sz"),
    "queue_samples": ("queue_samples", "queue_sz_counts"),
    "profile_sample": ("profile_sample", "msg_length_counts"),
    "profile_total": ("profile_total", "msg_lengths_total"),
}


def normalise_link_stats(d: dict[str, Any]) -> dict[str, Any]:
    """One link's stats from the Stack -> the flat shape ``cli/link.py`` formats.

    Accepts the counters at top level or under ``stats``; state follows iproute2:
    ACTIVE if the link is an active link of its peer, STANDBY if up, else DEFUNCT.
    """
    src = dict(d)
    inner = src.get("stats")
    if isinstance(inner, dict):
        src = {**inner, **{k: v for k, v in src.items() if k != "stats"}}
    name = str(src.get("name"))
    bc = name == "broadcast-link" or bool(src.get("broadcast"))
    out: dict[str, Any] = {"name": name, "broadcast": bc}
    for canon, aliases in _STAT_ALIASES.items():
        for a in aliases:
            v = src.get(a)
            if isinstance(v, int):
                out[canon] = v
                break
        else:
            out[canon] = 0
    prof = src.get("profile_counts", src.get("msg_length_profile"))
    out["profile_counts"] = [int(x) for x in prof][:7] if prof else [0] * 7
    if "queue_avg" in src:
        out["queue_avg"] = int(src["queue_avg"])
    for k, default in (("mtu", 0), ("priority", 10), ("tolerance", 1500), ("window", 50)):
        v = src.get(k)
        out[k] = int(v) if isinstance(v, int) else default
    if "state" in src and str(src["state"]) in ("ACTIVE", "STANDBY", "DEFUNCT"):
        out["state"] = str(src["state"])
    elif src.get("active"):
        out["state"] = "ACTIVE"
    elif src.get("up"):
        out["state"] = "STANDBY"
    else:
        out["state"] = "DEFUNCT" if "up" in src else "ACTIVE"
    return out
