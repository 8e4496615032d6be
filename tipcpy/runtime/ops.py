"""Control ops of tipcd: what each ``tipc`` command asks the daemon to do.

Each op validates its arguments completely *before* touching the node, so a failed op
leaves the node exactly as it was (bad IP, busy port, missing device, bad identity, a
value out of range). Range errors name the valid range. Results are plain JSON values;
the CLI formats them exactly as iproute2 does.

Result shapes (the CLI depends on them):

* ``node.get``   -> ``{"address": int, "identity": str, "netid": int, "clusterid": int}``
* ``node.list``  -> ``[{"identity": str, "address": int, "up": bool}, ...]``
* ``node.set`` (identity/netid/clusterid/address), ``node.key.set``, ``node.key.flush``
* ``bearer.list``-> ``["udp:b0", ...]``;  ``bearer.get`` -> the bearer's info dict
  (priority, tolerance, window, mtu; for udp localip, localport, remoteip, remoteport,
  remotes);  ``bearer.set`` ``{bearer, priority|tolerance|window|mtu}``
* ``media.list`` -> ``["eth", "udp"]``; ``media.get`` -> ``{priority, tolerance, window[, mtu]}``
* ``link.list``  -> ``[{"name": str, "up": bool}, ...]`` (``broadcast-link`` first)
* ``link.get`` -> ``{priority, tolerance, window}``; ``link.set``; ``link.broadcast.get``
  -> ``{"method": "AUTOSELECT", "ratio": 10}``; ``link.broadcast.set``
* ``link.stat.show`` -> ``[{"name", "broadcast", "state", "mtu", "priority", ...}]``
  (with ``extended``: ``rtt``, ``up_count``, ``down_count``, ``last_change``)
* ``link.stat.reset``; ``link.monitor.get``/``set`` (threshold); ``link.monitor.summary``
  -> ``[{bearer, table_generation, cluster_size, algorithm}]``; ``link.monitor.list``
  -> ``[{bearer, peers: [{addr, up, direct, generation, applied?, non_applied?}]}]``
* ``nametable.show`` -> ``[{"type","lower","upper","scope","port","node"}, ...]``
* ``peer.remove`` ``{address | identity}``;  ``socket.list`` -> ``[{port, connected?, via?,
  bound: [[type, lower, upper], ...]}]``
* ``events`` (streaming) ``{type?, lower?, upper?}`` -> one dict per topology event
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import random
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from tipcpy.addr import addr_from_zcn, hash128to32, node_id_from_str, node_id_to_str
from tipcpy.bearer.base import BearerError
from tipcpy.bearer.eth import EthBearer
from tipcpy.bearer.udp import UdpBearer

from .control import ControlError
from .daemon import DaemonConfig, Runtime, log

NETID_MIN, NETID_MAX = 1, 9999
#: (low, high) of every settable link property - kernel TIPC_{MIN,MAX}_LINK_*.
RANGES: dict[str, tuple[int, int]] = {
    "priority": (0, 31),
    "tolerance": (50, 30000),
    "window": (16, 8191),
    "mtu": (256, 65507),        # the link refuses < 256; a UDP datagram holds <= 65507
}
MONITOR_THRESHOLD_MAX = 4095    # kernel TIPC_CLUSTER_SIZE
BCAST_METHODS = ("BROADCAST", "REPLICAST", "AUTOSELECT")
#: media defaults, as `tipc media get` shows them on Linux 6.1 (eth has no mtu property)
MEDIA_DEFAULTS: dict[str, dict[str, int]] = {
    "eth": {"priority": 10, "tolerance": 1500, "window": 50},
    "udp": {"priority": 10, "tolerance": 1500, "window": 50, "mtu": 14000},
}
KEY_ALGS = ("gcm(aes)",)
KEY_LENGTHS = (16 + 4, 24 + 4, 32 + 4)     # [KEY 16|24|32 octets][SALT 4 octets]
SIOCGIFADDR = 0x8915


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
    except (ValueError, UnicodeError):
        raise _bad(f"invalid node identity '{text}': expected up to 16 characters of "
                   "[0-9A-Za-z.:_-@], or up to 32 hex digits (0x... for fewer)") from None
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


def parse_int(key: str, value: Any, lo: int, hi: int) -> int:
    """An integer property in ``lo..hi``; the error names the range."""
    try:
        n = int(value, 0) if isinstance(value, str) else int(value)
        if isinstance(value, bool) or isinstance(value, float):
            raise ValueError
    except (TypeError, ValueError):
        raise _bad(f"invalid {key} '{value}': expected an integer {lo}-{hi}") from None
    if not lo <= n <= hi:
        raise _bad(f"invalid {key} {n}: expected {lo}-{hi}")
    return n


def parse_prop(key: str, value: Any) -> int:
    if key not in RANGES:
        raise _bad(f"invalid property '{key}': expected one of {', '.join(RANGES)}")
    return parse_int(key, value, *RANGES[key])


def parse_address(text: Any) -> int:
    """A node address: ``Z.C.N`` (iproute2's syntax) or its 32-bit hash in hex."""
    s = str(text or "")
    try:
        if s.count(".") == 2:
            z, c, n = (int(p) for p in s.split("."))
            if not (0 <= z <= 255 and 0 <= c <= 4095 and 0 <= n <= 4095):
                raise ValueError
            return addr_from_zcn(s)
        v = int(s, 16)
        if not 0 <= v <= 0xFFFFFFFF:
            raise ValueError
        return v
    except ValueError:
        raise _bad(f"invalid network address '{s}': expected Z.C.N (Z 0-255, C and N "
                   "0-4095) or a node hash of up to 8 hex digits") from None


def parse_key(text: Any) -> bytes:
    """iproute2's KEY: ASCII, or ``0x`` + hex, of [16|24|32 key octets][4 salt octets]."""
    s = str(text or "")
    if s[:2] in ("0x", "0X"):
        try:
            raw = bytes.fromhex(s[2:])
        except ValueError:
            raise _bad("invalid key: 0x... must be followed by an even number of hex "
                       "digits") from None
    else:
        try:
            raw = s.encode("ascii")
        except UnicodeEncodeError:
            raise _bad("invalid key: use ASCII characters or 0x + hex digits") from None
    if len(raw) not in KEY_LENGTHS:
        raise _bad(f"invalid key length {len(raw)} octets: expected 20, 28 or 36 "
                   "(16, 24 or 32 key octets + 4 salt octets)")
    return raw


def device_ipv4(dev: str) -> str:
    """The IPv4 address of a network device (what `bearer enable ... udp ... device DEV`
    binds to), via SIOCGIFADDR."""
    if not dev or len(dev.encode()) > 15:
        raise _bad(f"invalid device '{dev}'", errno.ENODEV)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", dev.encode()))
    except OSError as e:
        if e.errno == errno.ENODEV:
            raise _bad(f"no device '{dev}' on this host", errno.ENODEV) from None
        raise _bad(f"device '{dev}' has no IPv4 address; give localip instead",
                   errno.EADDRNOTAVAIL) from None
    finally:
        s.close()
    return str(ipaddress.IPv4Address(res[20:24]))


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
        if hasattr(self.stack, "rtt_clock"):
            self.stack.rtt_clock = time.perf_counter    # probe RTTs finer than loop.time()
        self.link_defaults = dict(config.link)
        # media -> bearer -> link inheritance: tipcd's [link] defaults override the
        # media defaults; `tipc media set` changes them for bearers enabled later
        self.media: dict[str, dict[str, int]] = {
            m: {**d, **{k: int(v) for k, v in self.link_defaults.items() if k in d}}
            for m, d in MEDIA_DEFAULTS.items()}
        self.bcast = {"method": "AUTOSELECT", "ratio": 10}
        self.bc_window = 50
        self.monitor_threshold = 32
        self.keys: dict[str, Any] = {"cluster": None, "master": None, "nodes": {},
                                     "algname": None, "rekeying": None}
        # per link name: up/down counts and the wall-clock time of the last change
        self.link_history: dict[str, dict[str, Any]] = {}
        self.table_generation: dict[str, int] = {}
        self._link_names: dict[tuple[int, int], str] = {}
        self.runtime.add_listener(self._on_stack_event)
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "node.set": self.node_set,
            "node.get": self.node_get,
            "node.list": self.node_list,
            "node.key.set": self.node_key_set,
            "node.key.flush": self.node_key_flush,
            "bearer.enable": self.bearer_enable,
            "bearer.disable": self.bearer_disable,
            "bearer.add": self.bearer_add,
            "bearer.list": self.bearer_list,
            "bearer.get": self.bearer_get,
            "bearer.set": self.bearer_set,
            "media.list": self.media_list,
            "media.get": self.media_get,
            "media.set": self.media_set,
            "link.list": self.link_list,
            "link.get": self.link_get,
            "link.set": self.link_set,
            "link.broadcast.get": self.link_bcast_get,
            "link.broadcast.set": self.link_bcast_set,
            "link.stat.show": self.link_stat_show,
            "link.stat.reset": self.link_stat_reset,
            "link.monitor.get": self.monitor_get,
            "link.monitor.set": self.monitor_set,
            "link.monitor.summary": self.monitor_summary,
            "link.monitor.list": self.monitor_list,
            "nametable.show": self.nametable_show,
            "peer.remove": self.peer_remove,
            "socket.list": self.socket_list,
            "daemon.stats": self.daemon_stats,
            "events": self.events,
            "stack.events": self.stack_events,
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

    def _on_stack_event(self, ev: Any) -> None:
        """Bookkeeping for `link stat show -s` and `link monitor`."""
        kind = type(ev).__name__
        if kind == "LinkStateChanged":
            h = self.link_history.setdefault(ev.link_name, {"up_count": 0, "down_count": 0,
                                                             "last_change": None})
            h["up_count" if ev.up else "down_count"] += 1
            h["last_change"] = time.time()
            h["last_state"] = "up" if ev.up else "down"
            b = self._bearer_by_id(ev.bearer_id)
            if b is not None:
                self.table_generation[b] = self.table_generation.get(b, 0) + 1

    def _bearer_by_id(self, bid: int) -> str | None:
        for name, i in self.runtime.by_name.items():
            if i == bid:
                return name
        return None

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
        address = args.get("address")
        if ident is None and netid is None and address is None:
            raise _bad("nothing to set: give identity, address, netid or clusterid")
        raw = parse_identity(ident) if ident is not None else None
        nid = parse_netid(netid) if netid is not None else None
        addr = parse_address(address) if address is not None else None
        if addr == 0:
            raise _bad("invalid network address 0.0.0: a node address must not be 0")
        if self.runtime.bearers:
            # the kernel answers EPERM once the node has an address in use; we are a bit
            # more lenient: allowed until a bearer is enabled
            raise _bad("node identity, address and network id can only be changed while "
                       "no bearer is enabled (disable the bearers first)", errno.EPERM)
        if addr is not None and raw is None and self._node_id() is None:
            # kernel tipc_set_node_addr: a node without identity takes "%x" of its address
            raw = node_id_from_str(f"{addr:x}") if len(f"{addr:x}") <= 16 else None
        try:
            if raw is not None:
                self.stack.set_identity(raw)
            if nid is not None:
                self.stack.set_netid(nid)
                self.netid = nid
            if addr is not None:
                self.stack.trial_addr = addr
        except OSError as e:
            raise ControlError(e.errno or errno.EINVAL, str(e)) from None
        self.runtime.pump()
        return None

    def node_get(self, args: dict[str, Any]) -> dict[str, Any]:
        nid = self._node_id()
        info = self._node_info()
        addr = _get(info, "address") or _get(info, "addr")
        if not addr:
            addr = getattr(self.stack, "trial_addr", 0) or (hash128to32(nid) if nid else 0)
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

    def node_key_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """``tipc node set key``: validated exactly as iproute2 + the kernel would, then
        stored.  tipcpy does not encrypt yet (the CLI says so on stderr)."""
        if args.get("rekeying") is not None:
            r = args["rekeying"]
            if r != "now":
                r = parse_int("rekeying interval", r, 0, 0xFFFFFFFF)
            self.keys["rekeying"] = r
            return {"encrypting": False}
        key = parse_key(args.get("key"))
        alg = args.get("algname") or "gcm(aes)"
        if alg not in KEY_ALGS:
            raise _bad(f"invalid algname '{alg}': supported: {', '.join(KEY_ALGS)}")
        master = bool(args.get("master"))
        nodeid = args.get("nodeid")
        if master and nodeid is not None:
            raise _bad("master and nodeid are mutually exclusive")
        if nodeid is not None:
            self.keys["nodes"][node_id_to_str(parse_identity(str(nodeid)))] = key
        elif master:
            self.keys["master"] = key
        else:
            self.keys["cluster"] = key
        self.keys["algname"] = alg
        log.warning("symmetric key stored (%s, %d octets); tipcpy does not encrypt "
                    "traffic yet", "master" if master else "per-node" if nodeid else
                    "cluster", len(key))
        return {"encrypting": False}

    def node_key_flush(self, args: dict[str, Any]) -> None:
        self.keys.update(cluster=None, master=None, nodes={}, algname=None)
        return None

    # -- bearers ------------------------------------------------------------------------
    def _make_bearer(self, args: dict[str, Any], mtu: int | None) -> Any:
        media = args.get("media")
        if media == "udp":
            name = args.get("name") or str(args.get("bearer", ""))[4:]
            if not name:
                raise _bad("missing bearer name")
            if len(name) > 15:
                raise _bad(f"bearer name '{name}' is too long (at most 15 characters)")
            localip = args.get("localip")
            if not localip:
                if not args.get("device"):
                    raise _bad("missing localip (or device)")
                localip = device_ipv4(str(args["device"]))
            def port(key: str) -> Any:
                return 6118 if args.get(key) is None else args[key]

            return UdpBearer(name, localip, port("localport"),
                             args.get("remoteip"), port("remoteport"),
                             netid=self.netid, mtu=args.get("mtu") or mtu, loop=self.loop)
        if media == "eth":
            return EthBearer(args.get("device") or str(args.get("bearer", ""))[4:],
                             mtu=args.get("mtu"), loop=self.loop)
        if media == "ib":
            raise _bad("media ib is not supported by tipcpy", errno.EOPNOTSUPP)
        raise _bad(f"invalid media '{media}': expected udp or eth")

    def _props(self, args: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for key in ("priority", "tolerance", "window"):
            v = args.get(key, defaults.get(key))
            if v is None:
                continue
            props[key] = parse_prop(key, v)
        return props

    def bearer_enable(self, args: dict[str, Any]) -> dict[str, Any]:
        media = args.get("media")
        mdef = self.media.get(str(media), {})
        props = self._props(args, mdef)
        if args.get("domain") is not None:
            parse_int("domain", args["domain"], 0, 0xFFFFFFFF)   # legacy: accepted, unused
        if args.get("mtu") is not None:
            parse_prop("mtu", args["mtu"])
        mtu = mdef.get("mtu")
        if mtu == MEDIA_DEFAULTS.get(str(media), {}).get("mtu"):
            mtu = None              # the bearer's own default (1280 on IPv6)
        try:
            bearer = self._make_bearer(args, mtu)
            if bearer.name in self.runtime.by_name:
                raise _bad("Already enabled")
            bid = self.runtime.enable_bearer(bearer, **props)
        except BearerError as e:
            raise ControlError(e.errno or errno.EIO, e.message) from None
        except TypeError as e:   # Stack refused our keyword arguments
            raise ControlError(errno.EINVAL, f"cannot enable bearer: {e}") from None
        for k, v in props.items():
            setattr(bearer, k, v)
        self.table_generation.setdefault(bearer.name, 0)
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
        self.table_generation.pop(name, None)
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
            bearer.add_remote(args["remoteip"], 6118 if args.get("remoteport") is None
                              else args["remoteport"])
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

    def _stack_bearer(self, name: str) -> dict[str, Any]:
        fn = getattr(self.stack, "bearer_list", None)
        for b in (fn() if callable(fn) else []):
            if b.get("name") == name:
                return dict(b)
        return {}

    def bearer_get(self, args: dict[str, Any]) -> dict[str, Any]:
        name = self._bearer_name(args)
        bid = self.runtime.by_name.get(name)
        if bid is None:
            raise _bad("Bearer not found")
        b = self.runtime.bearers[bid]
        info = b.info()
        sb = self._stack_bearer(name)
        info.update(bearer_id=bid,
                    priority=sb.get("priority", b.priority if b.priority is not None else 10),
                    tolerance=sb.get("tolerance",
                                     b.tolerance if b.tolerance is not None else 1500),
                    window=sb.get("window", b.window if b.window is not None else 50),
                    mtu=sb.get("mtu", b.mtu))
        info.pop("counters", None)
        return info

    def bearer_set(self, args: dict[str, Any]) -> None:
        """``tipc bearer set PROP VALUE media ...``: the bearer's existing links and the
        links it makes later (mtu: later links only, udp only - as the kernel)."""
        name = self._bearer_name(args)
        props = {k: parse_prop(k, args[k]) for k in RANGES if args.get(k) is not None}
        if not props:
            raise _bad("nothing to set: give priority, tolerance, window or mtu")
        bid = self.runtime.by_name.get(name)
        if bid is None:
            raise _bad("Bearer not found")
        b = self.runtime.bearers[bid]
        if "mtu" in props and b.media != "udp":
            raise _bad("MTU property is unsupported for this media type")
        try:
            self.stack.set_bearer_prop(name, self.runtime.now(), **props)
        except OSError as e:
            raise ControlError(e.errno or errno.EINVAL, str(e)) from None
        for k, v in props.items():
            setattr(b, k, v)
        self.runtime.pump()
        return None

    # -- media --------------------------------------------------------------------------
    def _media(self, args: dict[str, Any]) -> dict[str, int]:
        m = args.get("media")
        if m not in self.media:
            raise _bad("Media not found" if m != "ib" else "media ib is not supported by "
                       "tipcpy")
        return self.media[m]

    def media_list(self, args: dict[str, Any]) -> list[str]:
        return sorted(self.media)

    def media_get(self, args: dict[str, Any]) -> dict[str, int]:
        return dict(self._media(args))

    def media_set(self, args: dict[str, Any]) -> None:
        """New defaults for bearers enabled later (existing bearers keep theirs)."""
        m = self._media(args)
        props = {k: parse_prop(k, args[k]) for k in RANGES if args.get(k) is not None}
        if not props:
            raise _bad("nothing to set: give priority, tolerance, window or mtu")
        if "mtu" in props and "mtu" not in m:
            raise _bad("MTU property is unsupported for this media type")
        m.update(props)
        return None

    # -- links --------------------------------------------------------------------------
    def _links(self) -> list[Any]:
        return _as_dicts(self.stack.link_list())

    def _link_obj(self, name: str) -> tuple[Any, int, int]:
        """(link, peer addr, bearer id) of a unicast link by exact name."""
        for addr, peer in getattr(self.stack, "peers", {}).items():
            for bid, le in peer.links.items():
                if le.link.name == name:
                    return le.link, addr, bid
        raise _bad(f"no link '{name}' (see `tipc link list`)")

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

    def link_get(self, args: dict[str, Any]) -> dict[str, int]:
        name = str(args.get("link") or "")
        if not name:
            raise _bad("missing link")
        if name == "broadcast-link":
            return {"window": self.bc_window}
        lk, _, _ = self._link_obj(name)
        return {"priority": int(lk.priority), "tolerance": int(lk.tolerance),
                "window": int(lk.window)}

    def link_set(self, args: dict[str, Any]) -> None:
        name = str(args.get("link") or "")
        if not name:
            raise _bad("missing link")
        props = {k: parse_prop(k, args[k]) for k in ("priority", "tolerance", "window")
                 if args.get(k) is not None}
        if not props:
            raise _bad("nothing to set: give priority, tolerance or window")
        if name == "broadcast-link":
            if set(props) != {"window"}:
                raise _bad("the broadcast link has only a window")
            self.bc_window = parse_int("window", props["window"], 32, 8191)
            return None
        self._link_obj(name)
        try:
            self.stack.set_link_prop(name, self.runtime.now(), **props)
        except OSError as e:
            raise ControlError(e.errno or errno.EINVAL, str(e)) from None
        self.runtime.pump()
        return None

    def link_bcast_get(self, args: dict[str, Any]) -> dict[str, Any]:
        return dict(self.bcast)

    def link_bcast_set(self, args: dict[str, Any]) -> dict[str, Any]:
        """Stored and reported; tipcpy always replicates multicast over the unicast
        links (it never sends on the broadcast link), whatever the method says."""
        method = str(args.get("method") or "").upper()
        if method not in BCAST_METHODS:
            raise _bad(f"invalid method '{args.get('method')}': expected one of "
                       f"{', '.join(BCAST_METHODS)}")
        ratio = args.get("ratio")
        if ratio is not None:
            if method != "AUTOSELECT":
                raise _bad("ratio is only valid with AUTOSELECT")
            ratio = parse_int("ratio", ratio, 0, 100)
        self.bcast["method"] = method
        if ratio is not None:
            self.bcast["ratio"] = ratio
        return dict(self.bcast)

    def link_stat_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Normalised counters per link; ``link`` selects by name, substring or ``all``
        (iproute2 semantics: no match prints nothing and succeeds).  ``extended`` adds
        probe round trips, up/down counts and the time of the last state change."""
        want = args.get("link")
        ext = bool(args.get("extended"))
        out = []
        have_bc = False
        rtts = getattr(self.stack, "link_rtt", {})
        ids = {}
        if ext:
            for addr, peer in getattr(self.stack, "peers", {}).items():
                for bid, le in peer.links.items():
                    ids[le.link.name] = (addr, bid)
        for s in _as_dicts(self.stack.link_stats()):
            d = dict(s) if isinstance(s, dict) else dict(getattr(s, "__dict__", {}))
            name = str(d.get("name"))
            if want and want != "all" and want not in name:
                continue
            n = normalise_link_stats(d)
            have_bc = have_bc or n["broadcast"]
            if n["broadcast"]:
                n["window"] = self.bc_window
            if ext and not n["broadcast"]:
                r = rtts.get(ids.get(name, (-1, -1)))
                n["rtt"] = r.as_dict() if r is not None else {"count": 0, "min": None,
                                                              "avg": None, "max": None}
                h = self.link_history.get(name, {})
                n["up_count"] = h.get("up_count", 0)
                n["down_count"] = h.get("down_count", 0)
                n["last_change"] = h.get("last_change")
            out.append(n)
        if not have_bc and (not want or want == "all" or want in "broadcast-link"):
            out.insert(0, normalise_link_stats({"name": "broadcast-link",
                                                "window": self.bc_window}))
        return out

    def link_stat_reset(self, args: dict[str, Any]) -> None:
        name = str(args.get("link") or "")
        if not name:
            raise _bad("missing link")
        if name == "broadcast-link":
            return None
        lk, addr, bid = self._link_obj(name)
        st = getattr(lk, "stats", None)
        if st is not None and hasattr(st, "clear"):
            st.clear()
        rtts = getattr(self.stack, "link_rtt", None)
        if isinstance(rtts, dict):
            rtts.pop((addr, bid), None)
        return None

    # -- link monitor (we always run full mesh: every peer supervised directly) --------
    def monitor_get(self, args: dict[str, Any]) -> dict[str, int]:
        return {"threshold": self.monitor_threshold}

    def monitor_set(self, args: dict[str, Any]) -> None:
        if args.get("threshold") is None:
            raise _bad("missing threshold")
        self.monitor_threshold = parse_int("threshold", args["threshold"], 0,
                                           MONITOR_THRESHOLD_MAX)
        return None

    def _bearer_peers(self, bid: int) -> list[tuple[int, bool]]:
        """(peer addr, link up) of every peer with a link on bearer ``bid``, in the
        monitor's ring order: ascending addresses starting after our own."""
        own = self.node_get({})["address"]
        rows = [(addr, bool(peer.links[bid].link.is_up))
                for addr, peer in getattr(self.stack, "peers", {}).items()
                if bid in peer.links]
        return sorted(rows, key=lambda r: ((r[0] - own) & 0xFFFFFFFF))

    def monitor_summary(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for name, bid in self.runtime.by_name.items():
            out.append({"bearer": name,
                        "table_generation": self.table_generation.get(name, 0),
                        "cluster_size": 1 + len(self._bearer_peers(bid)),
                        "algorithm": "full-mesh"})
        return out

    def monitor_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        want = args.get("bearer")
        if want and want not in self.runtime.by_name:
            raise _bad("Bearer not found")
        own = self.node_get({})["address"]
        out = []
        for name, bid in self.runtime.by_name.items():
            if want and name != want:
                continue
            peers = self._bearer_peers(bid)
            # kernel dom_size(): our domain holds ceil(sqrt(cluster size)) - 1 members
            size = 1 + len(peers)
            dom = 0
            while dom * dom < size:
                dom += 1
            applied = peers[:max(dom - 1, 0)]
            rows = [{"addr": own, "up": True, "direct": True,
                     "generation": self.table_generation.get(name, 0),
                     "applied": "".join("U" if up else "D" for _, up in applied),
                     "non_applied": [[a, "U" if up else "D"] for a, up in peers[len(applied):]]}]
            rows += [{"addr": a, "up": up, "direct": True, "generation": 0} for a, up in peers]
            out.append({"bearer": name, "peers": rows})
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

    # -- peers --------------------------------------------------------------------------
    def peer_remove(self, args: dict[str, Any]) -> None:
        """``tipc peer remove {address ADDR | identity ID}``: EBUSY while the peer is up,
        ENXIO if there is no such peer; otherwise its node object is gone."""
        peers = getattr(self.stack, "peers", {})
        if args.get("identity") is not None:
            raw = parse_identity(str(args["identity"]))
            addr = next((a for a, p in peers.items() if p.node_id == raw), None)
        elif args.get("address") is not None:
            addr = parse_address(args["address"])
        else:
            raise _bad("missing address or identity")
        if addr is None or addr not in peers:
            raise _bad("no such peer node", errno.ENXIO)
        if peers[addr].is_up:
            raise _bad(f"peer {self._node_name(addr)} is up: it can only be removed when "
                       "it is down", errno.EBUSY)
        try:
            self.stack.remove_peer(addr, self.runtime.now())
        except OSError as e:
            raise ControlError(e.errno or errno.EIO, str(e)) from None
        self.runtime.pump()
        return None

    # -- sockets ------------------------------------------------------------------------
    def socket_list(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """From the socket layer (``stack.sockets.sock_list()``) when it is there; an
        empty list otherwise.  Entries are normalised to ``{port, connected: [node,
        port] | None, via: [type, instance] | None, bound: [[type, lower, upper]...]}``."""
        layer = getattr(self.stack, "sockets", None)
        fn = getattr(layer, "sock_list", None)
        if not callable(fn):
            return []
        return [normalise_socket(s) for s in fn()]

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

    def stack_events(self, args: dict[str, Any]) -> Any:
        """Raw Stack events (LinkStateChanged, NodeUp, ...) as dicts - for debugging."""
        return self.runtime.events()

    # -- topology events ----------------------------------------------------------------
    def events(self, args: dict[str, Any]) -> Any:
        """``tipc events [TYPE [LOWER [UPPER]]]``: a stream of topology events.

        With a type: a subscription to the topology server (a TopSrv connection of the
        daemon's own, on the node's name table; ``TIPC_SUB_PORTS``, no timeout), so the
        events are exactly what a TIPC application subscribing to {TYPE, LOWER, UPPER}
        gets, existing bindings first.  Without: every binding of every type (the
        table itself; a subscription covers one type only), existing ones first.
        Bindings of type 0 are nodes coming and going, type 2 links going up and down.
        """
        table = getattr(self.stack, "name_table", None)
        if table is None:
            raise ControlError(errno.EOPNOTSUPP, "this tipcd has no name table")
        typ = args.get("type")
        if typ is None:
            if args.get("lower") is not None or args.get("upper") is not None:
                raise _bad("give a type with lower/upper")
            return self._table_events(table)
        typ = parse_int("type", typ, 0, 0xFFFFFFFF)
        lower = parse_int("lower", args.get("lower", 0), 0, 0xFFFFFFFF)
        upper = parse_int("upper", args.get("upper", 0xFFFFFFFF if args.get("lower") is None
                                            else lower), 0, 0xFFFFFFFF)
        if lower > upper:
            raise _bad(f"invalid range: lower {lower} > upper {upper}")
        return self._topsrv_events(table, typ, lower, upper)

    def _event(self, published: bool | None, typ: int, lower: int, upper: int, port: int,
               node: int) -> dict[str, Any]:
        ev = {"event": "published" if published else "withdrawn" if published is not None
              else "timeout", "type": typ, "lower": lower, "upper": upper, "port": port,
              "node": self._node_name(node), "hash": f"{node:08x}",
              "time": round(time.time(), 3)}
        if typ == 0 and published is not None:
            ev.update(what="node", state="up" if published else "down",
                      node=self._node_name(lower), hash=f"{lower:08x}")
        elif typ == 2 and published is not None:
            key = (lower, port & 0xFFFF)
            name = self._link_names.get(key)
            peer = getattr(self.stack, "peers", {}).get(lower)
            le = peer.links.get(port & 0xFFFF) if peer is not None else None
            if le is not None:
                name = self._link_names[key] = le.link.name
            ev.update(what="link", state="up" if published else "down",
                      link=name or f"{lower:08x}/{port:x}")
        return ev

    async def _table_events(self, table: Any) -> AsyncIterator[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100000)

        def put(ev: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(ev)

        def observer(p: Any, published: bool, edge: bool) -> None:
            put(self._event(published, p.type, p.lower, p.upper, p.port, p.node))

        for p in sorted(table, key=lambda p: getattr(p, "id", 0)):
            put(self._event(True, p.type, p.lower, p.upper, p.port, p.node))
        table.add_observer(observer)
        try:
            while True:
                yield await q.get()
        finally:
            table.remove_observer(observer)

    async def _topsrv_events(self, table: Any, typ: int, lower: int, upper: int
                             ) -> AsyncIterator[dict[str, Any]]:
        from tipcpy.core.topsrv import TopSrv
        from tipcpy.wire.consts import TIPC_SUB_PORTS, TIPC_WAIT_FOREVER

        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=100000)
        srv = TopSrv(table, int(getattr(self.stack, "own_addr", 0) or 0))
        conn = object()

        def drain(*_: Any) -> None:
            for _conn, data in srv.take_outgoing():
                ev, lo, up, port, node = struct.unpack_from("<5I", data, 0)
                pub = True if ev == 1 else False if ev == 2 else None
                with contextlib.suppress(asyncio.QueueFull):
                    q.put_nowait(self._event(pub, typ, lo, up, port, node))

        srv.open(conn)
        rec = struct.pack("<5I", typ, lower, upper, TIPC_WAIT_FOREVER, TIPC_SUB_PORTS)
        rec += b"tipc-cli"
        closed = srv.receive(conn, rec, self.runtime.now())
        if closed is not None:
            raise _bad(closed.reason)
        drain()
        table.add_observer(drain)       # after the TopSrv's own observer: drain its output
        try:
            while True:
                yield await q.get()
        finally:
            table.remove_observer(drain)
            srv.close(conn)
            with contextlib.suppress(Exception):
                table.remove_observer(srv._on_table)


def normalise_socket(s: Any) -> dict[str, Any]:
    """One entry of ``sock_list()`` -> the shape ``cli/socket.py`` prints."""
    d = dict(s) if isinstance(s, dict) else dict(getattr(s, "__dict__", {}))
    port = next((d[k] for k in ("port", "portid", "ref") if d.get(k) is not None), 0)
    conn = next((d[k] for k in ("connected", "peer", "conn") if d.get(k)), None)
    via = d.get("via")
    cpair = None
    if isinstance(conn, dict):
        cpair = [int(conn.get("node", 0)), int(conn.get("port", conn.get("ref", 0)))]
        if via is None and conn.get("name"):
            via = list(conn["name"])[:2]
        elif via is None and conn.get("type") is not None:
            via = [conn["type"], conn.get("instance", conn.get("lower", 0))]
    elif isinstance(conn, list | tuple) and len(conn) >= 2:
        cpair = [int(conn[1]), int(conn[0])]       # (port, node) as the socket layer's
    if isinstance(via, dict):
        via = [via.get("type"), via.get("instance", via.get("lower"))]
    bound = []
    for b in d.get("bound") or d.get("bindings") or d.get("publications") or []:
        if isinstance(b, dict):
            bound.append([int(b["type"]), int(b["lower"]), int(b["upper"])])
        else:
            t = list(b)
            bound.append([int(t[0]), int(t[1]), int(t[2] if len(t) > 2 else t[1])])
    return {"port": int(port), "connected": cpair,
            "via": [int(via[0]), int(via[1])] if via else None, "bound": bound}


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
