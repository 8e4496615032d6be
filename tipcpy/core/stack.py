"""One whole TIPC node, sans-IO: the only object the runtime and the simulator drive.

``Stack`` owns the bearers' discoverers and the peer nodes (and through them the links),
and is the seam to the layers above (name table/distributor, topology server, sockets):

* bytes in: ``receive(bearer_id, data, now)`` - decoded once here; every DecodeError is
  counted per bearer and dropped, so bad input never takes the node down;
* time in: ``tick(now)`` at or after ``next_deadline()``;
* out: ``take_transmits()`` -> ``(bearer_id, media_addr | None, bytes)`` (None = broadcast
  on that bearer) and ``take_events()`` (for the CLI ``events`` stream / tests);
* upper layers: ``send_to_node(addr, msg, selector, now)``, ``register_user(users, fn)``
  for delivered messages, ``add_listener(fn)`` for node/link/address events and
  ``add_timer(layer)`` for their deadlines.  The Stack never builds or names the socket
  layer: ``tipcpy.core.assembly.build_node`` puts it on top (it sees the Stack only
  through ``socket.NodeServices``).
"""

from __future__ import annotations

import errno
import heapq
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from tipcpy.addr import hash128to32, node_id_from_str, node_id_to_str
from tipcpy.core.bcast import ADVERTISE_CAPS
from tipcpy.core.discover import (
    Discoverer,
    DuplicateAddress,
    PeerDiscovered,
    TrialEnded,
    TrialFailed,
)
from tipcpy.core.link import Link, LinkRtt
from tipcpy.core.monitor import DEF_MON_THRESHOLD, Monitor
from tipcpy.core.name_distr import NameDistributor
from tipcpy.core.name_table import NameTable, Publication
from tipcpy.core.node import LinkStateChanged, NodeDown, NodeReceived, NodeUp, PeerNode
from tipcpy.core.stack_bcast import StackBcast
from tipcpy.core.stack_crypto import StackCrypto
from tipcpy.core.topsrv import TopSrv
from tipcpy.wire import DecodeError, Msg, decode
from tipcpy.wire.consts import (
    MAX_BEARERS,
    TIPC_CLUSTER_SCOPE,
    TIPC_DEF_NET_ID,
    TIPC_LINK_STATE,
    TIPC_MAX_LINK_PRI,
    TIPC_MAX_LINK_TOL_MS,
    TIPC_MAX_NET_ID,
    TIPC_MIN_LINK_TOL_MS,
    TIPC_MIN_NET_ID,
    TIPC_NODE_SCOPE,
    TIPC_NODE_STATE,
    User,
)
from tipcpy.wire.msg import NON_SEQ_BIT, USER_MASK, USER_SHIFT

__all__ = ["Stack", "StackError", "Timed", "AddressCommitted", "BearerStats", "LinkRtt",
           "INVALID_NODE_SIG"]

INVALID_NODE_SIG = 0x10000
"""Kernel: a new node object's signature matches no real one, so the first REQ is taken."""

MEDIA = ("udp", "eth", "mem")


class StackError(OSError):
    """Configuration refused; ``errno`` as the kernel would answer (EPERM, EINVAL, ...)."""

    def __init__(self, err: int, message: str) -> None:
        super().__init__(err, message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class AddressCommitted:
    """The node has its address (end of the address trial): ``{0, addr, addr}`` may be
    published by the name layer now."""

    addr: int
    node_id: bytes


@dataclass
class BearerStats:
    rx_packets: int = 0
    rx_decode_errors: int = 0
    rx_wrong_dest: int = 0
    rx_no_peer: int = 0
    rx_no_link: int = 0
    rx_node_state: int = 0
    rx_wrong_netid: int = 0
    rx_no_addr: int = 0
    tx_packets: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Bearer:
    id: int
    name: str
    media: str
    media_addr: Any
    mtu: int
    priority: int
    tolerance: int
    window: int
    broadcast: bool
    disc: Discoverer
    stats: BearerStats = field(default_factory=BearerStats)

    @property
    def if_name(self) -> str:
        return self.name.split(":", 1)[1] if ":" in self.name else self.name


class Timed(Protocol):
    """A layer above with deadlines of its own, ticked by the Stack (add_timer)."""

    def next_deadline(self) -> float | None: ...

    def tick(self, now: float) -> None: ...


DeliverFn = Callable[[int, Msg, float], None]
"""Handler for delivered messages: (from_node_addr, msg, now)."""
ListenerFn = Callable[[object, float], None]
"""Listener for NodeUp / NodeDown / LinkStateChanged / AddressCommitted: (event, now)."""

DATA_USERS = (0, 1, 2, 3)
_LINK_CONFIG = int(User.LINK_CONFIG)
_BCAST_PROTOCOL = int(User.BCAST_PROTOCOL)
_NON_SEQ = NON_SEQ_BIT


class Stack:
    """A TIPC node.  See the module docstring for the driving contract."""

    def __init__(self, node_id: bytes | str | None = None, net_id: int = TIPC_DEF_NET_ID,
                 rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.node_id: bytes | None = None
        self.own_addr = 0
        self.trial_addr = 0
        self.net_id = TIPC_DEF_NET_ID
        self.set_netid(net_id)
        if node_id is not None:
            self.set_identity(node_id)
        self._bearers: list[_Bearer | None] = [None] * MAX_BEARERS
        self.peers: dict[int, PeerNode] = {}
        self.peers_gen = 0
        """Bumped whenever a peer object comes, goes or changes capabilities (what
        cached views of ``peers``, e.g. the cluster's capabilities, key on)."""
        self.timer_slack = 0.0
        """Seconds a link's periodic timer may run early, to share a wakeup with the
        link timers already due (0: every link on its own deadline, as the simulator
        runs).  The daemon sets it: N links at random phases would wake it N times
        per interval, each wakeup costing more than the tick itself.  Failure
        detection stays exact; the kernel's per-node timers are spread the same way
        and its round_jiffies() exists for the same reason."""
        self._tx: list[tuple[int, Any, bytes]] = []
        self._events: list[object] = []
        self._handlers: dict[int, list[DeliverFn]] = {}
        self._listeners: list[ListenerFn] = []
        self._random32 = self.rng.getrandbits(32)
        self.counters: dict[str, int] = {
            "rx_unhandled_user": 0, "duplicate_addr": 0, "tx_no_route": 0, "loopback": 0,
            "listener_errors": 0,
        }
        # deadline heap: key = ("p", addr) | ("d", bearer_id); lazy invalidation
        self._dl: dict[tuple[str, int], float | None] = {}
        self._heap: list[tuple[float, tuple[str, int]]] = []
        # peers whose deadline may have moved since it was last put in the heap: asking
        # every peer (and its links) after every message cost ~6% of the send path, so
        # _pump_peer only marks the peer and next_deadline()/tick() refresh once
        self._dl_dirty: set[int] = set()
        # the name layer (binding table + its replication); sockets/topsrv plug in on top
        self.name_table = NameTable(0)
        self.name_distr = NameDistributor(0, self.name_table)
        self._link_publ: dict[tuple[int, int], Publication] = {}
        # topology server core: the socket layer opens/feeds its {1,1} connections
        # (topsrv.open/receive/close) and carries topsrv.take_outgoing() to them; the
        # Stack only keeps its address and timers current
        self.topsrv = TopSrv(self.name_table, 0)
        self._timed: list[Timed] = []
        self.bcast = StackBcast(self)
        """The broadcast send link and its wiring (tipcpy.core.stack_bcast).  Made
        before the name layer's listener: a peer's BCAST_PROTOCOL init must be the
        first sequenced packet of the link, before the name bulk."""
        self.register_user(User.NAME_DISTRIBUTOR,
                           lambda src, m, now: self._named_rcv(src, m, now))
        self.add_listener(self._name_layer_event)
        self.encryption = StackCrypto(self)
        """Keys, and the crypto seams below (tipcpy.core.stack_crypto)."""
        self._mon_init()
        self._cleanup_init()
        self.sockets: Any = None
        """The socket layer, attached by :func:`tipcpy.core.assembly.build_node` (the
        runtime looks it up here).  The Stack never calls it by this name: the layer
        reaches the Stack through the ``NodeServices`` protocol and registers its
        handlers, listener and timer itself."""

    # ---------------------------------------------------------------- configuration
    @property
    def identity(self) -> str:
        return node_id_to_str(self.node_id) if self.node_id else ""

    def set_identity(self, node_id: bytes | str) -> None:
        """``tipc node set identity``: once only (the kernel answers EPERM the 2nd time)."""
        nid = node_id_from_str(node_id) if isinstance(node_id, str) else bytes(node_id)
        if len(nid) != 16 or not any(nid):
            raise StackError(errno.EINVAL, "node identity must be 16 bytes, not all zero")
        if self.node_id is not None and nid != self.node_id:
            raise StackError(errno.EPERM, "node identity already set; restart to change it")
        self.node_id = nid
        self.trial_addr = hash128to32(nid)

    def set_netid(self, net_id: int) -> None:
        """``tipc node set netid``: only before the node has an address."""
        if not TIPC_MIN_NET_ID <= net_id <= TIPC_MAX_NET_ID:
            raise StackError(errno.EINVAL, f"net id must be {TIPC_MIN_NET_ID}..{TIPC_MAX_NET_ID}")
        # (first called from __init__, before there are bearers)
        if self.own_addr or any(self.__dict__.get("_bearers") or []):
            if net_id != self.net_id:
                raise StackError(errno.EPERM,
                                 "net id can only be changed before the node has an address "
                                 "(disable all bearers first)")
        self.net_id = net_id

    def next_bearer_id(self) -> int:
        """The id the next enable_bearer() will get (lowest free slot)."""
        for i, b in enumerate(self._bearers):
            if b is None:
                return i
        raise StackError(errno.ENOSPC, f"at most {MAX_BEARERS} bearers")

    def bearer_id(self, name: str) -> int:
        for b in self._bearers:
            if b is not None and b.name == name:
                return b.id
        raise StackError(errno.ENODEV, f"no bearer {name!r}")

    def enable_bearer(self, name: str, media: str, media_addr: Any, mtu: int, now: float,
                      priority: int = 10, tolerance: int = 1500, window: int = 50,
                      broadcast: bool = True, bcast_support: bool = True) -> int:
        """Enable a bearer; starts discovery (and the address trial if needed).

        ``broadcast=False`` makes a passive bearer: it never sends periodic requests,
        it only answers (for media that cannot reach peers without being told them).
        ``bcast_support=False``: one send does not reach every node (UDP with unicast
        remote IPs replicates it), so multicast data goes by replicast.
        """
        if media not in MEDIA:
            raise StackError(errno.EINVAL, f"media must be one of {', '.join(MEDIA)}")
        if ":" not in name or not name.split(":", 1)[1]:
            raise StackError(errno.EINVAL, "bearer name is media:NAME, e.g. udp:b0, eth:eth0")
        for b in self._bearers:
            if b is not None and (b.name == name or b.media_addr == media_addr):
                raise StackError(errno.EEXIST, f"bearer {b.name} already enabled")
        if not 0 <= priority <= TIPC_MAX_LINK_PRI:
            raise StackError(errno.EINVAL, "priority must be 0..31")
        if not TIPC_MIN_LINK_TOL_MS <= tolerance <= TIPC_MAX_LINK_TOL_MS:
            raise StackError(errno.EINVAL, "tolerance must be 50..30000 ms")
        if self.node_id is None:
            self._autoconfig_identity(media_addr)
        assert self.node_id is not None
        bid = self.next_bearer_id()
        trial_end = None
        if not self.own_addr:
            active = [b for b in self._bearers if b is not None]
            trial_end = active[0].disc.trial_end if active else now + 1.0
        disc = Discoverer(
            bearer_id=bid, media_addr=media_addr, node_id=self.node_id, net_id=self.net_id,
            own_addr=self.own_addr, trial_addr=self.trial_addr, rng=self.rng, now=now,
            trial_end=trial_end, random32=self._random32, send_requests=broadcast,
            node_id_by_addr=self._node_id_by_addr, addr_by_id=self._addr_by_id,
            caps=ADVERTISE_CAPS,
        )
        self._bearers[bid] = _Bearer(bid, name, media, media_addr, mtu, priority, tolerance,
                                     window, broadcast, disc)
        self.bcast.bearer_enabled(bid, mtu, bcast_support)
        self._pump_disc(self._bearers[bid], now)  # type: ignore[arg-type]
        if self.own_addr:
            self._mon_create(self._bearers[bid], now)  # type: ignore[arg-type]
        return bid

    def _autoconfig_identity(self, media_addr: Any) -> None:
        """Kernel: with no identity, UDP copies the local IP, L2 the MAC (§1.1)."""
        import ipaddress

        ip = getattr(media_addr, "ip", None)
        if ip is not None:
            raw = ipaddress.ip_address(ip).packed
        else:
            raw = bytes(getattr(media_addr, "mac", b""))
        if not any(raw):
            raise StackError(errno.EINVAL, "set the node identity first")
        self.set_identity(raw[:16].ljust(16, b"\0"))

    def disable_bearer(self, name: str, now: float) -> None:
        """Disable a bearer: its links send a polite RESET (peer_stopping) and go."""
        bid = self.bearer_id(name)
        for peer in list(self.peers.values()):
            if bid in peer.links:
                peer.remove_link(bid, now, "bearer disabled")
                self._pump_peer(peer, now)
        # transmits on this bearer still go out (the RESETs): runtime flushes first
        self._bearers[bid] = None
        self._dl.pop(("d", bid), None)
        self.monitors.pop(bid, None)
        self._dl.pop(("m", bid), None)
        self.bcast.bearer_disabled(bid)

    def set_bearer_prop(self, name: str, now: float, *, priority: int | None = None,
                        tolerance: int | None = None, window: int | None = None,
                        mtu: int | None = None) -> None:
        """``tipc bearer set``: future links, and the bearer's existing links (the mtu:
        future links only, as the kernel)."""
        b = self._bearers[self.bearer_id(name)]
        assert b is not None
        if mtu is not None:
            b.mtu = mtu
        if priority is not None:
            b.priority = priority
        if tolerance is not None:
            b.tolerance = tolerance
        if window is not None:
            b.window = window
        for peer in self.peers.values():
            le = peer.links.get(b.id)
            if le is not None:
                self._apply_link_props(le.link, priority, tolerance, window, now)
                self._pump_peer(peer, now)

    def set_link_prop(self, link_name: str, now: float, *, priority: int | None = None,
                      tolerance: int | None = None, window: int | None = None) -> None:
        """``tipc link set``: one link by name."""
        for peer in self.peers.values():
            for le in peer.links.values():
                if le.link.name == link_name:
                    self._apply_link_props(le.link, priority, tolerance, window, now)
                    self._pump_peer(peer, now)
                    return
        raise StackError(errno.EINVAL, f"no link {link_name!r}")

    @staticmethod
    def _apply_link_props(link: Link, priority: int | None, tolerance: int | None,
                          window: int | None, now: float) -> None:
        if priority is not None:
            link.set_priority(priority)
        if tolerance is not None:
            link.set_tolerance(tolerance, now)
        if window is not None:
            link.set_window(window)

    def _drop_peer(self, addr: int) -> None:
        """Delete a down peer's node object and its link endpoints, everywhere."""
        peer = self.peers.pop(addr)
        self.peers_gen += 1
        self._mon_forget_peer(peer)
        peer.links.clear()
        self._dl.pop(("p", addr), None)
        self._dl_dirty.discard(addr)
        self._down_since.pop(addr, None)

    def remove_peer(self, addr: int, now: float) -> None:
        """``tipc peer remove``: forget a peer node that is down (kernel tipc_nl_peer_rm):
        its links (silently: they are down) and its node object.  EBUSY while it is up,
        ENXIO if unknown.  Discovery may create it again when the peer comes back."""
        peer = self.peers.get(addr)
        if peer is None:
            raise StackError(errno.ENXIO, f"no peer node {addr:08x}")
        if peer.is_up:
            raise StackError(errno.EBUSY, f"peer node {addr:08x} is up")
        self._drop_peer(addr)

    # ---------------------------------------------------------------- upper layers
    def register_user(self, users: int | Iterable[int], fn: DeliverFn) -> None:
        """Deliver messages of these users (data 0-3, CONN_MANAGER, NAME_DISTRIBUTOR...)
        to ``fn(from_addr, msg, now)``."""
        for u in [users] if isinstance(users, int) else users:
            self._handlers.setdefault(int(u), []).append(fn)

    def add_listener(self, fn: ListenerFn) -> None:
        """Call ``fn(event, now)`` on NodeUp, NodeDown, LinkStateChanged, AddressCommitted."""
        self._listeners.append(fn)

    def add_timer(self, owner: Timed) -> None:
        """Tick ``owner`` (a layer above with its own deadlines) from this node's timer:
        ``next_deadline()`` and ``tick()`` include it."""
        self._timed.append(owner)

    def send_to_node(self, node_addr: int, msg: Msg, selector: int, now: float) -> bool:
        """Send over the active link chosen by ``selector & 1``; own address = loopback.

        False if the node is unknown/down or the link is congested for the importance.
        """
        if node_addr == self.own_addr and node_addr:
            self.counters["loopback"] += 1
            self._deliver(node_addr, msg, now)
            return True
        peer = self.peers.get(node_addr)
        if peer is None or not peer.is_up:
            self.counters["tx_no_route"] += 1
            return False
        ok = peer.send(msg, selector, now)
        self._pump_peer(peer, now)
        return ok

    def mcast_plan(self, method: Any, dests: int, now: float) -> tuple[bool, bool]:
        """(rcast, sync) for a socket's multicast to ``dests`` remote nodes."""
        return self.bcast.mcast_plan(method, dests, now)

    def bcast_xmit(self, msg: Msg, now: float) -> bool:
        """One message on our broadcast link; False = congested (it was queued)."""
        return self.bcast.xmit(msg, now)

    def up_nodes(self) -> list[int]:
        """Addresses of peers that are up (replicast targets)."""
        return sorted(a for a, p in self.peers.items() if p.is_up)

    def node_is_up(self, addr: int) -> bool:
        p = self.peers.get(addr)
        return p is not None and p.is_up

    def node_caps(self, addr: int) -> int:
        """The capability bits a peer advertised (0 if unknown)."""
        p = self.peers.get(addr)
        return int(p.caps) if p is not None else 0

    def node_mtu(self, addr: int, selector: int = 0) -> int:
        p = self.peers.get(addr)
        if p is None or p.active[selector & 1] is None:
            return 66060
        return int(p.links[p.active[selector & 1]].link.mtu)  # type: ignore[index]

    # ---------------------------------------------------------------- name layer
    def publish(self, publ: Publication, now: float) -> None:
        """Bind locally and replicate a cluster-scope binding to every up peer: on the
        broadcast link when they all take name updates there, else by replicast."""
        msg = self.name_distr.publish(publ)
        if msg is not None:
            self._replicast(msg, now)
        self._touch_named()

    def withdraw(self, publ: Publication, now: float) -> None:
        msg = self.name_distr.withdraw(publ)
        if msg is not None:
            self._replicast(msg, now)
        self._touch_named()

    def _replicast(self, msg: Msg, now: float) -> None:
        self.bcast.send_name_update(msg, now)  # broadcast link or one copy per node

    def _named_rcv(self, src: int, msg: Msg, now: float) -> None:
        self.name_distr.receive(msg, src, now)
        self._touch_named()

    def _touch_named(self) -> None:
        """Re-arm name distributor and topology server timers (call after using them)."""
        self._set_deadline(("n", 0), self.name_distr.next_deadline())
        self._set_deadline(("t", 0), self.topsrv.next_deadline())

    touch_upper = _touch_named

    def _name_layer_event(self, ev: object, now: float) -> None:
        """Kernel tipc_net_finalize / tipc_node_write_unlock actions for the name layer."""
        if isinstance(ev, AddressCommitted):
            self.name_distr.set_own_addr(ev.addr)
            self.topsrv.own_addr = ev.addr
            self.publish(Publication(TIPC_NODE_STATE, ev.addr, ev.addr, TIPC_CLUSTER_SCOPE,
                                     ev.addr, 0, ev.addr), now)
        elif isinstance(ev, NodeUp):
            peer = self.peers.get(ev.addr)
            mss = 1400
            if peer is not None and peer.active[0] is not None:
                mss = peer.links[peer.active[0]].link.mss
            for m in self.name_distr.node_up(ev.addr, mss):
                self.send_to_node(ev.addr, m, 0, now)
        elif isinstance(ev, NodeDown):
            self.name_distr.node_down(ev.addr)
        elif isinstance(ev, LinkStateChanged):
            key = (ev.peer, ev.bearer_id)
            if ev.up and key not in self._link_publ:
                p = Publication(TIPC_LINK_STATE, ev.peer, ev.peer, TIPC_NODE_SCOPE,
                                self.own_addr, ev.link_id, ev.link_id)
                self._link_publ[key] = p
                self.publish(p, now)
            elif not ev.up and key in self._link_publ:
                self.withdraw(self._link_publ.pop(key), now)
        self._touch_named()

    # ---------------------------------------------------------------- input
    def receive(self, bearer_id: int, data: bytes, now: float) -> None:
        """One packet from a bearer.  Never raises on bad input: counts and drops."""
        b = self._bearers[bearer_id] if 0 <= bearer_id < MAX_BEARERS else None
        if b is None:
            return
        st = b.stats
        st.rx_packets += 1
        enc = self.encryption
        if data and (data[0] >> 5 == 7 or enc.working):  # tipc_crypto_rcv
            dec = enc.rx(bearer_id, data, now)
            if dec is None:
                return
            data = dec
        else:
            enc.rx_clear = True
        try:
            msg = decode(data)
        except DecodeError:
            st.rx_decode_errors += 1
            return
        # header fields read straight from the words (the properties cost a call each)
        w = msg.w
        w0 = w[0]
        user = (w0 >> USER_SHIFT) & USER_MASK
        if user == _LINK_CONFIG:
            b.disc.receive(msg, now)
            self._pump_disc(b, now)
            return
        if not self.own_addr:
            st.rx_no_addr += 1
            return
        src = w[3]  # prevnode
        peer = self.peers.get(src)
        nw = len(w)
        if w0 & _NON_SEQ:
            # the peer's broadcast link: w5 carries the net id
            if nw > 6 and w[5] != self.net_id:
                st.rx_wrong_netid += 1
                return
            if peer is None:
                st.rx_no_peer += 1
                return
            if user == _BCAST_PROTOCOL:  # a legacy NACK (tipc_bcast_rcv -> nack_rcv)
                self.bcast.nack_rcv(peer, msg, now)
                return
            before = peer.bc.rcv_nxt
            try:
                peer.bcast_receive(msg, now)
            except DecodeError:
                st.rx_decode_errors += 1
            self.bcast.bc_rcv(peer, before, now)
            self._pump_peer(peer, now)
            return
        if nw > 6 and (w[7] if nw > 7 else 0) != self.own_addr:  # destnode
            st.rx_wrong_dest += 1
            return
        if peer is None:
            st.rx_no_peer += 1
            return
        if bearer_id not in peer.links:
            st.rx_no_link += 1
            return
        self.bcast.uc_rcv(peer, bearer_id, msg, now)  # acks/NACKs of our broadcast
        try:
            if not peer.receive(bearer_id, msg, now):
                st.rx_node_state += 1
        except DecodeError:
            st.rx_decode_errors += 1
        self._pump_peer(peer, now)

    # ---------------------------------------------------------------- timers
    def _set_deadline(self, key: tuple[str, int], d: float | None) -> None:
        if self._dl.get(key) != d:
            self._dl[key] = d
            if d is not None:
                heapq.heappush(self._heap, (d, key))

    def _refresh_deadlines(self) -> None:
        dirty = self._dl_dirty
        if not dirty:
            return
        self._dl_dirty = set()
        peers = self.peers
        for addr in dirty:
            peer = peers.get(addr)
            if peer is not None:
                self._set_deadline(("p", addr), peer.next_deadline())

    def next_deadline(self) -> float | None:
        if self._dl_dirty:
            self._refresh_deadlines()
        heap = self._heap
        best = None
        while heap:
            d, key = heap[0]
            if self._dl.get(key) != d:
                heapq.heappop(heap)
                continue
            best = d
            break
        for t in self._timed:
            sd = t.next_deadline()
            if sd is not None and (best is None or sd < best):
                best = sd
        return best

    def tick(self, now: float) -> None:
        if self._dl_dirty:
            self._refresh_deadlines()
        heap = self._heap
        due: list[tuple[str, int]] = []
        limit = now + self.timer_slack
        later: list[tuple[float, tuple[str, int]]] = []
        while heap and heap[0][0] <= limit:
            d, key = heapq.heappop(heap)
            if self._dl.get(key) != d:
                continue
            if d > now and key[0] != "p":  # only link timers are taken early
                later.append((d, key))
                continue
            self._dl[key] = None
            due.append(key)
        for item in later:
            heapq.heappush(heap, item)
        early = self.timer_slack
        for kind, k in due:
            if kind == "n":
                self.name_distr.tick(now)
                self._touch_named()
            elif kind == "t":
                self.topsrv.tick(now)
                self._touch_named()
            elif kind == "m":
                self._mon_tick(k, now)
            elif kind == "c":
                self._cleanup_tick(now)
            elif kind == "d":
                b = self._bearers[k]
                if b is not None:
                    b.disc.tick(now)
                    self._pump_disc(b, now)
            else:
                peer = self.peers.get(k)
                if peer is not None:
                    peer.tick(now, early)
                    self._pump_peer(peer, now)
        for t in self._timed:
            sd = t.next_deadline()
            if sd is not None and sd <= now:
                t.tick(now)

    # ---------------------------------------------------------------- output
    def take_transmits(self) -> list[tuple[int, Any, bytes]]:
        tx, self._tx = self._tx, []
        return tx

    def take_events(self) -> list[object]:
        ev, self._events = self._events, []
        return ev

    # ---------------------------------------------------------------- plumbing
    def _node_id_by_addr(self, addr: int) -> bytes | None:
        p = self.peers.get(addr)
        return p.node_id if p is not None else None

    def _addr_by_id(self, node_id: bytes) -> int | None:
        for a, p in self.peers.items():
            if p.node_id == node_id:
                return a
        return None

    def _emit(self, ev: object, now: float) -> None:
        self._events.append(ev)
        for fn in list(self._listeners):
            try:
                fn(ev, now)
            except OSError:
                # A layer above refused to act on the event (e.g. a resource limit):
                # count it; the event itself must still reach everyone else.
                self.counters["listener_errors"] += 1

    def _pump_disc(self, b: _Bearer, now: float) -> None:
        enc = self.encryption
        for dest, data in b.disc.take_outgoing():
            b.stats.tx_packets += 1
            if enc.working:  # tipc_crypto_xmit
                self._tx.extend((b.id, dest, e) for e in enc.tx(data, None, now))
            else:
                self._tx.append((b.id, dest, data))
        for ev in b.disc.take_events():
            if isinstance(ev, PeerDiscovered):
                self._peer_discovered(ev, now)
            elif isinstance(ev, TrialEnded):
                if not self.own_addr:
                    self._commit_addr(ev.trial_addr, now)
            elif isinstance(ev, TrialFailed):
                self.trial_addr = ev.suggested
                for other in self._bearers:
                    if other is not None and other is not b:
                        other.disc.trial_addr = ev.suggested
                        other.disc.trial_end = b.disc.trial_end
                self._emit(ev, now)
            elif isinstance(ev, DuplicateAddress):
                self.counters["duplicate_addr"] += 1
                self._emit(ev, now)
        self._set_deadline(("d", b.id), b.disc.next_deadline())

    def _commit_addr(self, addr: int, now: float) -> None:
        """Kernel tipc_net_finalize: the address is ours now."""
        self.own_addr = addr
        self.trial_addr = addr
        for b in self._bearers:
            if b is not None:
                b.disc.set_own_addr(addr, now)
                self._mon_create(b, now)
        assert self.node_id is not None
        self._emit(AddressCommitted(addr, self.node_id), now)

    def _peer_discovered(self, ev: PeerDiscovered, now: float) -> None:
        b = self._bearers[ev.bearer_id]
        if b is None or not self.own_addr:
            return
        peer = self.peers.get(ev.addr)
        if peer is None:
            peer = PeerNode(addr=ev.addr, node_id=ev.node_id, caps=ev.caps,
                            signature=INVALID_NODE_SIG)
            self.peers[ev.addr] = peer
            self.peers_gen += 1
        elif peer.node_id != ev.node_id:
            self.counters["duplicate_addr"] += 1
            self._emit(DuplicateAddress(ev.bearer_id, ev.addr, ev.node_id, ev.media_addr,
                                        False), now)
            return
        caps_before = peer.caps
        dupl = peer.check_dest(ev.bearer_id, ev.media_addr, ev.signature, ev.caps, now,
                               lambda bid: self._create_link(peer, bid))
        if peer.caps != caps_before:
            self.peers_gen += 1
        if dupl:
            self.counters["duplicate_addr"] += 1
            self._emit(DuplicateAddress(ev.bearer_id, ev.addr, ev.node_id, ev.media_addr,
                                        False), now)
        self._pump_peer(peer, now)

    def _create_link(self, peer: PeerNode, bearer_id: int) -> Link:
        b = self._bearers[bearer_id]
        assert b is not None and self.node_id is not None
        link = Link(
            own_addr=self.own_addr, peer_addr=peer.addr, own_name=self.identity,
            peer_name=node_id_to_str(peer.node_id), bearer_id=bearer_id, if_name=b.if_name,
            mtu=b.mtu, peer_caps=peer.caps, rng=self.rng, tolerance=b.tolerance,
            priority=b.priority, window=b.window, own_caps=ADVERTISE_CAPS,
        )
        self._mon_attach(link)
        link.share_last_bcast(self.bcast.last_bcast_cell)
        link.probe_idle = self.probe_idle
        return link

    def _pump_peer(self, peer: PeerNode, now: float) -> None:
        """Move a peer's packets out and dispatch its events (repeat: handlers may send)."""
        tx = self._tx
        for _ in range(100):
            # (PeerNode.take_outgoing/take_events, read in place: this runs per message)
            out = peer._out
            evs = peer._events
            if not out and not evs:
                break
            if out:
                peer._out = []
                bearers = self._bearers
                enc = self.encryption if self.encryption.working else None
                for item in out:
                    bid, maddr, data = item
                    b = bearers[bid]
                    if b is not None:
                        b.stats.tx_packets += 1
                    if enc is not None:  # tipc_crypto_xmit
                        tx.extend((bid, maddr, e) for e in enc.tx(data, peer.addr, now))
                    else:
                        tx.append(item)
            if not evs:
                continue
            peer._events = []
            for ev in evs:
                if ev.__class__ is NodeReceived:
                    self._deliver(ev.addr, ev.msg, now)
                elif isinstance(ev, LinkStateChanged):
                    b = self._bearers[ev.bearer_id]
                    if b is not None:
                        if ev.up:
                            b.disc.add_dest(ev.peer)
                        else:
                            b.disc.remove_dest(ev.peer, now)
                            self._set_deadline(("d", b.id), b.disc.next_deadline())
                        self._mon_link_changed(b.id, ev.peer, ev.up, now)
                    self._emit(ev, now)
                else:
                    self._emit(ev, now)
        self._dl_dirty.add(peer.addr)

    def _deliver(self, from_addr: int, msg: Msg, now: float) -> None:
        fns = self._handlers.get((msg.w[0] >> USER_SHIFT) & USER_MASK)  # msg.user
        if not fns:
            self.counters["rx_unhandled_user"] += 1
            return
        for fn in fns:
            fn(from_addr, msg, now)

    # ---------------------------------------------------------------- neighbour monitor
    # One Monitor (core/monitor.py) per bearer once the address is committed, as the
    # kernel's tipc_mon_create at bearer enable.  Behaviour is kernel-exact: the
    # monitor decides which silent links count toward failure.  With ``probe_idle``
    # (Linux >= 5.6, the default) an idle link still probes every tick (link.py), so
    # the monitor does not change how many STATEs flow; without it (Linux 4.7-5.5)
    # links probe only after a silent interval and unsupervised ones stay quiet.
    def _mon_init(self) -> None:
        self.monitors: dict[int, Monitor] = {}
        self._mon_threshold = DEF_MON_THRESHOLD
        self.probe_idle = True
        """Link.probe_idle for every link made from now on (tipcd ``--probing``)."""
        self.counters.update(mon_reported_down=0, mon_resets=0)

    @property
    def mon_threshold(self) -> int:
        return self._mon_threshold

    def set_mon_threshold(self, value: int) -> None:
        """``tipc link monitor set threshold``: every bearer's monitor, now and later."""
        if not 0 <= value <= 4095:
            raise StackError(errno.EINVAL, "threshold must be 0..4095")
        self._mon_threshold = value
        for m in self.monitors.values():
            m.threshold = value

    def _mon_create(self, b: _Bearer, now: float) -> None:
        if b.id in self.monitors:
            return
        m = Monitor(self.own_addr, bearer_id=b.id, bearer_name=b.name,
                    threshold=self._mon_threshold, now=now,
                    random16=self.rng.getrandbits(16))
        self.monitors[b.id] = m
        for peer in self.peers.values():
            le = peer.links.get(b.id)
            if le is not None:
                self._mon_attach(le.link)
                if le.link.is_up:
                    m.peer_up(peer.addr)
        self._set_deadline(("m", b.id), m.next_deadline())

    def _mon_attach(self, link: Link) -> None:
        link.monitor = self.monitors.get(link.bearer_id)

    def _mon_link_changed(self, bid: int, addr: int, up: bool, now: float) -> None:
        m = self.monitors.get(bid)
        if m is None:
            return
        if up:
            m.peer_up(addr)
        else:
            m.peer_down(addr)
        self._mon_events(m)

    def _mon_forget_peer(self, peer: PeerNode) -> None:
        """The peer's link endpoints are deleted: off every ring, and discovery stops
        healing towards it (kernel tipc_mon_remove_peer in tipc_node_delete_links)."""
        for bid in list(peer.links):
            m = self.monitors.get(bid)
            if m is not None:
                m.remove_peer(peer.addr)
                self._mon_events(m)
        for b in self._bearers:
            if b is not None:
                b.disc.forget(peer.addr)

    def _mon_events(self, m: Monitor) -> None:
        """PeerReportedDown / PeerResetByMonitor act through get_state on the link's
        next tick (as the kernel's); here they are counted and the link woken."""
        for ev in m.take_events():
            if ev.__class__.__name__ == "PeerResetByMonitor":
                self.counters["mon_resets"] += 1
            else:
                self.counters["mon_reported_down"] += 1

    def _mon_tick(self, bid: int, now: float) -> None:
        m = self.monitors.get(bid)
        if m is not None:
            m.tick(now)
            self._mon_events(m)
            self._set_deadline(("m", bid), m.next_deadline())

    def monitor_summary(self) -> list[dict[str, Any]]:
        """``tipc link monitor summary``: one entry per bearer with a monitor."""
        return [dict(m.summary(), node=f"{self.own_addr:08x}", threshold=m.threshold)
                for _, m in sorted(self.monitors.items())]

    def monitor_list(self, bearer: str | None = None) -> list[dict[str, Any]]:
        """``tipc link monitor list``: per bearer, the ring rows."""
        out = []
        for _, m in sorted(self.monitors.items()):
            if bearer is not None and m.bearer_name != bearer:
                continue
            out.append({"bearer": m.bearer_name, "peers": m.list_peers()})
        return out

    # ---------------------------------------------------------------- node cleanup
    # Kernel tipc_node_cleanup (run from each node's timer): a node object that is
    # not up NODE_CLEANUP_AFTER (300 s) after it was created or lost contact is
    # deleted with its links.  Here one sweep every CLEANUP_SWEEP s over the down
    # peers: a peer first seen down by a sweep (created and never up) counts from
    # then, so deletion comes 300 s to 300 s + one sweep after the kernel's moment.
    # Unlike the kernel (which leaves it on the monitor ring) the peer also leaves
    # the monitor and discovery's healing set, so nothing grows with churn.
    NODE_CLEANUP_AFTER = 300.0
    CLEANUP_SWEEP = 10.0

    def _cleanup_init(self) -> None:
        self._down_since: dict[int, float] = {}
        self.counters["nodes_cleaned"] = 0
        self._cleanup_armed = False
        self.add_listener(self._cleanup_event)

    def _cleanup_event(self, ev: object, now: float) -> None:
        if isinstance(ev, NodeDown):
            self._down_since[ev.addr] = now
        elif isinstance(ev, NodeUp):
            self._down_since.pop(ev.addr, None)
        elif isinstance(ev, AddressCommitted) and not self._cleanup_armed:
            self._cleanup_armed = True
            self._set_deadline(("c", 0), now + self.CLEANUP_SWEEP)

    def _cleanup_tick(self, now: float) -> None:
        since = self._down_since
        for addr, peer in list(self.peers.items()):
            if peer.is_up:
                continue
            t = since.setdefault(addr, now)
            if now >= t + self.NODE_CLEANUP_AFTER:
                self._drop_peer(addr)
                self.counters["nodes_cleaned"] += 1
        for addr in [a for a in since if a not in self.peers]:
            del since[addr]
        self._set_deadline(("c", 0), now + self.CLEANUP_SWEEP)

    # ---------------------------------------------------------------- introspection
    @property
    def link_rtt(self) -> dict[tuple[int, int], LinkRtt]:
        """Probe round trips per (peer addr, bearer id), measured by each link
        (``tipc link stat show -s``); cleared with the link's other counters."""
        return {(a, bid): le.link.stats.rtt
                for a, p in self.peers.items() for bid, le in p.links.items()}

    def node_info(self) -> dict[str, Any]:
        return {"address": self.own_addr, "address_hex": f"{self.own_addr:08x}",
                "identity": self.identity, "node_id": (self.node_id or b"").hex(),
                "netid": self.net_id, "trial": not self.own_addr}

    def bearer_list(self) -> list[dict[str, Any]]:
        return [
            {"id": b.id, "name": b.name, "media": b.media, "media_addr": str(b.media_addr),
             "mtu": b.mtu, "priority": b.priority, "tolerance": b.tolerance,
             "window": b.window, "broadcast": b.broadcast, "neighbours": b.disc.num_nodes,
             "stats": b.stats.as_dict(), "discovery": b.disc.stats.as_dict()}
            for b in self._bearers if b is not None
        ]

    def link_list(self) -> list[dict[str, Any]]:
        """``tipc link list``: the broadcast link (always up) and every unicast link."""
        out: list[dict[str, Any]] = [{"name": "broadcast-link", "up": True}]
        for addr in sorted(self.peers):
            p = self.peers[addr]
            for bid in sorted(p.links):
                lk = p.links[bid].link
                out.append({"name": lk.name, "up": bool(lk.is_up), "peer": addr,
                            "bearer_id": bid, "state": lk.state.name,
                            "active": bid in p.active_links()})
        return out

    def link_stats(self, name: str | None = None) -> list[dict[str, Any]]:
        """``tipc link stat show [link NAME]``."""
        out: list[dict[str, Any]] = []
        if name in (None, "broadcast-link"):
            bc = self.bcast.stats_dict()
            bc["rcv"] = {f"{a:x}": dict(p.bc.__dict__, deferred=len(p.bc.deferred))
                         for a, p in self.peers.items()}
            out.append(bc)
        for p in self.peers.values():
            for le in p.links.values():
                lk = le.link
                if name is not None and lk.name != name:
                    continue
                stats: dict[str, Any] = dict(lk.stats.as_dict())
                stats["crypto"] = self.encryption.link_counters(p.addr, le.bearer_id)
                out.append({"name": lk.name, "up": bool(lk.is_up),
                            "active": le.bearer_id in p.active_links(),
                            "mtu": lk.mtu, "priority": lk.priority,
                            "tolerance": lk.tolerance, "window": lk.window, "stats": stats})
        if name is not None and not out:
            raise StackError(errno.EINVAL, f"no link {name!r}")
        return out

    def node_list(self) -> list[dict[str, Any]]:
        """``tipc node list``: every known peer (identity, hash, up); like the kernel,
        the own node is not listed (see node_info())."""
        rows = []
        for a in sorted(self.peers):
            p = self.peers[a]
            rows.append({"identity": node_id_to_str(p.node_id), "addr": a, "hash": f"{a:08x}",
                         "up": p.is_up, "state": p.state.name,
                         "links": len(p.links), "caps": p.caps})
        return rows

    def stats(self) -> dict[str, Any]:
        """Node counters, plus what must stay 0 unless there is a bug: FSM events a
        node or link table refused (per peer address and per link name) and exceptions
        the socket layer caught (by kind).  The simulator tests assert both."""
        illegal: dict[str, int] = {}
        for a, p in self.peers.items():
            illegal[f"{a:08x}"] = p.illegal_evts
            for le in p.links.values():
                illegal[le.link.name] = le.link.illegal_evts
        swallowed = dict(self.sockets.swallowed) if self.sockets is not None else {}
        sockets = dict(self.sockets.counters) if self.sockets is not None else {}
        synch = {f"{a:08x}": {"held": p.rx_synch_held, "dropped": p.rx_synch_dropped,
                              "returned_no_node": p.returned_no_node}
                 for a, p in self.peers.items()}
        return {"counters": dict(self.counters), "sockets": sockets, "peers": synch,
                "bearers": {b.name: b.stats.as_dict() for b in self._bearers if b is not None},
                "fsm_illegal": illegal, "swallowed": swallowed}
