"""The state every control op shares: the node's Stack and Runtime, and what tipcd keeps
beside them (media defaults, broadcast/monitor settings, stored keys, link history).

The op families (node.py, bearer.py, link.py, ...) are functions of this context; the
registry (``__init__``) maps op names to them with their argument schemas.
"""

from __future__ import annotations

import time
from typing import Any

from tipcpy.addr import hash128to32, node_id_to_str
from tipcpy.bearer.media import MEDIA, bearer_name_of
from tipcpy.core.link import Link
from tipcpy.core.node import LinkStateChanged
from tipcpy.core.stack import Stack

from ..config import DaemonConfig
from ..runtime import Runtime
from .validate import bad

#: media defaults, as `tipc media get` shows them on Linux 6.1 (eth has no mtu property)
MEDIA_DEFAULTS: dict[str, dict[str, int]] = {
    name: m.defaults() for name, m in MEDIA.items() if m.supported}


class OpsContext:
    """One daemon's node and the settings tipcd keeps for it."""

    def __init__(self, config: DaemonConfig, runtime: Runtime) -> None:
        self.config = config
        self.runtime = runtime
        self.stack: Stack = runtime.stack
        self.loop = runtime.loop
        self.link_defaults = dict(config.link)
        # media -> bearer -> link inheritance: tipcd's [link] defaults override the
        # media defaults; `tipc media set` changes them for bearers enabled later
        self.media: dict[str, dict[str, int]] = {
            m: {**d, **{k: int(v) for k, v in self.link_defaults.items() if k in d}}
            for m, d in MEDIA_DEFAULTS.items()}
        self.bcast: dict[str, Any] = {"method": "AUTOSELECT", "ratio": 10}
        self.bc_window = 50
        self.monitor_threshold = 32
        self.keys: dict[str, Any] = {"cluster": None, "master": None, "nodes": {},
                                     "algname": None, "rekeying": None}
        # per link name: up/down counts and the wall-clock time of the last change
        self.link_history: dict[str, dict[str, Any]] = {}
        self.table_generation: dict[str, int] = {}
        self.link_names: dict[tuple[int, int], str] = {}
        self.runtime.add_listener(self._on_stack_event)

    @property
    def netid(self) -> int:
        return int(self.stack.net_id)

    def _on_stack_event(self, ev: object) -> None:
        """Bookkeeping for `link stat show -s` and `link monitor`."""
        if isinstance(ev, LinkStateChanged):
            h = self.link_history.setdefault(ev.link_name, {"up_count": 0, "down_count": 0,
                                                             "last_change": None})
            h["up_count" if ev.up else "down_count"] += 1
            h["last_change"] = time.time()
            h["last_state"] = "up" if ev.up else "down"
            b = self.bearer_by_id(ev.bearer_id)
            if b is not None:
                self.table_generation[b] = self.table_generation.get(b, 0) + 1

    def bearer_by_id(self, bid: int) -> str | None:
        for name, i in self.runtime.by_name.items():
            if i == bid:
                return name
        return None

    # -- node ---------------------------------------------------------------------------
    def node_id(self) -> bytes | None:
        return self.stack.node_id

    def own_address(self) -> int:
        """The committed address, else the trial one, else the hash of the identity."""
        addr = int(self.stack.node_info()["address"])
        if not addr:
            nid = self.node_id()
            addr = self.stack.trial_addr or (hash128to32(nid) if nid else 0)
        return addr

    def node_name(self, addr: int) -> str:
        """Node address -> identity string, as iproute2 does with SIOCGETNODEID."""
        own = self.node_id()
        if own is not None and addr in (self.stack.own_addr, hash128to32(own)):
            return node_id_to_str(own)
        peer = self.stack.peers.get(addr)
        return node_id_to_str(peer.node_id) if peer is not None else f"{addr:x}"

    # -- bearers and links --------------------------------------------------------------
    def bearer_name(self, args: dict[str, Any]) -> str:
        """``bearer``, or ``media`` + ``name`` (udp) / ``device`` (eth, ib)."""
        if args.get("bearer"):
            return str(args["bearer"])
        name = bearer_name_of(str(args.get("media")), args)
        if name is None:
            raise bad("missing bearer name")
        return name

    def link_obj(self, name: str) -> tuple[Link, int, int]:
        """(link, peer addr, bearer id) of a unicast link by exact name."""
        for addr, peer in self.stack.peers.items():
            for bid, le in peer.links.items():
                if le.link.name == name:
                    return le.link, addr, bid
        raise bad(f"no link '{name}' (see `tipc link list`)")

    def bearer_peers(self, bid: int) -> list[tuple[int, bool]]:
        """(peer addr, link up) of every peer with a link on bearer ``bid``, in the
        monitor's ring order: ascending addresses starting after our own."""
        own = self.own_address()
        rows = [(addr, bool(peer.links[bid].link.is_up))
                for addr, peer in self.stack.peers.items() if bid in peer.links]
        return sorted(rows, key=lambda r: ((r[0] - own) & 0xFFFFFFFF))

    def media_of(self, args: dict[str, Any]) -> dict[str, int]:
        m = args.get("media")
        if m not in self.media:
            raise bad("Media not found" if m not in MEDIA else f"media {m} is not supported "
                      "by tipcpy")
        return self.media[str(m)]
