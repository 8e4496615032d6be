"""The node's side of the broadcast link: where :class:`~tipcpy.core.bcast.BcastLink`
meets the Stack, its peers and their unicast links.

Why a module of its own: the send link (:mod:`tipcpy.core.bcast`) knows seqnos, acks
and methods, not links or bearers; the Stack and ``PeerNode`` know links, not the
broadcast protocol.  The kernel joins them in node.c (``__tipc_node_link_up`` adds the
peer and sends the init, ``tipc_rcv`` feeds every unicast packet's ``bcast_ack`` and
every STATE to the broadcast link before the link sees it, ``tipc_node_bc_rcv``),
bearer.c (``tipc_bcbase_xmit``) and link.c (the broadcast half of STATE messages).
Here that joining is one object, :class:`StackBcast`, so the Stack has a few one-line
hooks (bearer enable/disable, unicast receive, broadcast receive, name updates) and
every rule lives here.

What it does, in the kernel's order:

* **Bearers**: every enabled bearer is announced with its MTU and whether it can
  reach all nodes with one send (Ethernet, UDP multicast) or must replicate (UDP with
  unicast remote IPs: the runtime says which).  Each link up/down moves the bearer's
  destination count, which picks the primary bearer.
* **Peers**: on a node's first link up we add it and send our ``BCAST_PROTOCOL`` init
  on that link before anything else (the name bulk comes after: this object's
  listener runs before the name layer's); on lost contact we remove it.  Cluster
  capabilities (the AND over known nodes) are recomputed on every node event.
* **Acks**: :meth:`uc_rcv` before the link processes a packet from a known peer:
  a STATE goes to ``proto_rcv`` (acks, gap, Gap-ACK blocks, opening the peer) and to
  the per-peer receive NACK state (a STATE back when we miss something of the
  peer's broadcast); any other packet's ``bcast_ack`` releases our queue.
* **Receive side**: after the node took a broadcast packet (:meth:`bc_rcv`) every
  link to the peer gets the current ``bc_gap`` and broadcast Gap-ACK blocks for its
  next STATE, and a STATE is sent at once when the NACK or ack turn says so.
* **last_bcast** in every unicast link's protocol messages follows our ``snd_nxt``.
* **Timer**: while a peer has not acked all we broadcast, a STATE to it each link
  interval carries ``last_bcast`` so it can NACK a lost tail (tipc_link_timeout's
  ``bc_acked != bc_snt``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from tipcpy.core.bcast import (
    ADVERTISE_CAPS,
    BcastLink,
    BcastPeerFailure,
    BcastWakeup,
    BcMode,
    BcRcvNack,
    McMethod,
    bc_ack_due,
    bc_gap_ack_blocks,
    bc_nack_due,
    named_use_bcast,
)
from tipcpy.core.link import LinkWakeup
from tipcpy.core.node import LinkStateChanged, NodeDown, NodeUp
from tipcpy.wire import Msg
from tipcpy.wire.consts import Cap, User

__all__ = ["StackBcast"]

_USER_LINK_PROTOCOL = int(User.LINK_PROTOCOL)
_USER_BCAST_PROTOCOL = int(User.BCAST_PROTOCOL)
_ACK_RATE = 16
"""TIPC_MIN_LINK_WIN: a broadcast receive link considers a STATE every 16 packets."""
_DEFAULT_INTERVAL = 0.375


class Stack(Protocol):
    """What this module uses of :class:`tipcpy.core.stack.Stack` (named here, not
    imported: the Stack imports this module)."""

    rng: random.Random
    own_addr: int
    net_id: int
    peers: dict[int, Any]
    peers_gen: int
    _bearers: list[Any]
    _tx: list[tuple[int, Any, bytes]]
    encryption: Any

    def add_listener(self, fn: Callable[[object, float], None]) -> None: ...

    def add_timer(self, owner: Any) -> None: ...

    def up_nodes(self) -> list[int]: ...

    def send_to_node(self, node_addr: int, msg: Msg, selector: int, now: float) -> bool: ...

    def _emit(self, ev: object, now: float) -> None: ...

    def _pump_peer(self, peer: Any, now: float) -> None: ...


class StackBcast:
    """The broadcast link of one Stack and its wiring (see the module docstring)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.link = BcastLink(own_addr=stack.own_addr, net_id=stack.net_id)
        self.link.set_cluster_caps(ADVERTISE_CAPS)
        self.rcv: dict[int, BcRcvNack] = {}
        """Per peer: the NACK half of our receive link from it."""
        self._rcv_unacked: dict[int, int] = {}
        self._deferred_seen: dict[int, int] = {}
        self._next_tick: float | None = None
        self.last_bcast_cell = [0]
        """Our broadcast snd_nxt - 1, shared by every unicast link of the Stack (each
        protocol message carries it): one write when it moves, not one per link."""
        self._caps_cache: tuple[int, int] = (-1, ADVERTISE_CAPS)
        self._interval = _DEFAULT_INTERVAL
        self.counters = {"tx_bcast": 0, "tx_bcast_congested": 0, "names_bcast": 0,
                         "names_rcast": 0, "mcast_bcast": 0, "mcast_rcast": 0,
                         "states_nack": 0, "states_ack": 0, "states_sync": 0,
                         "states_tail": 0, "legacy_nacks": 0, "peer_failures": 0}
        stack.add_listener(self._event)
        stack.add_timer(self)

    # ---------------------------------------------------------------- configuration
    def bearer_enabled(self, bearer_id: int, mtu: int, bcast_support: bool) -> None:
        self.link.set_bearer(bearer_id, mtu, bcast_support)

    def bearer_disabled(self, bearer_id: int) -> None:
        self.link.remove_bearer(bearer_id)

    def set_mode(self, mode: int) -> None:
        """``tipc link set broadcast METHOD`` (OSError with the kernel's errno)."""
        self.link.set_mode(mode)

    def set_ratio(self, ratio: int) -> None:
        self.link.set_ratio(ratio)

    def set_window(self, window: int) -> None:
        self.link.set_window(window)

    def get_broadcast(self) -> dict[str, Any]:
        return self.link.get_broadcast()

    # ---------------------------------------------------------------- events
    def _cluster_caps(self) -> int:
        """AND of our capabilities and every known peer's (as the kernel keeps it).

        Cached on the Stack's ``peers_gen``: a node coming up in a big cluster would
        otherwise walk every peer, O(N^2) per node while a cluster forms."""
        gen = self.stack.peers_gen
        if self._caps_cache[0] != gen:
            caps = ADVERTISE_CAPS  # the kernel starts from its own capabilities
            for c in {int(p.caps) for p in self.stack.peers.values()}:
                caps &= c
            self._caps_cache = (gen, caps)
        return self._caps_cache[1]

    def _event(self, ev: object, now: float) -> None:
        bl = self.link
        if isinstance(ev, LinkStateChanged):
            if ev.up:
                bl.inc_bearer_dst(ev.bearer_id)
            else:
                bl.dec_bearer_dst(ev.bearer_id)
        elif isinstance(ev, NodeUp):
            peer = self.stack.peers.get(ev.addr)
            if peer is None:
                return
            bl.set_cluster_caps(self._cluster_caps())
            tol = 1500
            if peer.active[0] is not None:
                tol = int(peer.links[peer.active[0]].link.tolerance)
                self._interval = min(self._interval,
                                     float(peer.links[peer.active[0]].link.keepalive_interval))
            init = bl.add_peer(ev.addr, tolerance=tol, caps=int(peer.caps))
            self.rcv[ev.addr] = BcRcvNack()
            self._rcv_unacked[ev.addr] = 0
            self._deferred_seen[ev.addr] = 0
            # our sync point: the first sequenced packet of the link, before the bulk
            self.stack.send_to_node(ev.addr, init, 0, now)
            self._flush(now)
        elif isinstance(ev, NodeDown):
            bl.remove_peer(ev.addr)
            self.rcv.pop(ev.addr, None)
            self._rcv_unacked.pop(ev.addr, None)
            self._deferred_seen.pop(ev.addr, None)
            bl.set_cluster_caps(self._cluster_caps())
            self._flush(now)
        elif ev.__class__.__name__ == "AddressCommitted":
            bl.own_addr = self.stack.own_addr
            bl.net_id = self.stack.net_id

    # ---------------------------------------------------------------- sending
    def xmit(self, msg: Msg, now: float) -> bool:
        """Broadcast one message on the broadcast link; False = congested (queued;
        wait for a LinkWakeup of its importance)."""
        ok = self.link.xmit(msg, now)
        self.counters["tx_bcast"] += 1
        if not ok:
            self.counters["tx_bcast_congested"] += 1
        self._flush(now)
        self._arm(now)
        return ok

    def names_use_bcast(self) -> bool:
        """tipc_node_broadcast's choice for one name update."""
        st = self.stack
        caps = [int(st.peers[a].caps) for a in st.up_nodes()]
        return bool(caps) and named_use_bcast(caps, self.link.get_mode())

    def send_name_update(self, msg: Msg, now: float) -> None:
        """A single name update: on the broadcast link when every up peer takes it
        there, else one copy per up node over its unicast link."""
        st = self.stack
        if self.names_use_bcast():
            self.counters["names_bcast"] += 1
            m = msg.copy()
            m.destnode = 0
            self.xmit(m, now)
            return
        for addr in st.up_nodes():
            self.counters["names_rcast"] += 1
            m = msg.copy()
            m.destnode = addr
            st.send_to_node(addr, m, 0, now)

    def mcast_plan(self, method: McMethod, dests: int, now: float) -> tuple[bool, bool]:
        """(rcast, sync) for one multicast to ``dests`` remote nodes (bcast.mcast_plan)."""
        if not self.link.peers:  # nobody on the broadcast link (yet): replicast
            method.rcast = True
            self.counters["mcast_rcast"] += 1
            return True, False
        rcast, sync = self.link.mcast_plan(method, dests, now)
        self.counters["mcast_rcast" if rcast else "mcast_bcast"] += 1
        return rcast, sync

    def is_congested(self, importance: int) -> bool:
        return self.link.is_congested(importance)

    def _flush(self, now: float) -> None:
        """Packets to the bearers (with the crypto seam), events to the node."""
        bl = self.link
        self.last_bcast_cell[0] = bl.last_bcast  # backlog moved on: links announce it
        out = bl.take_outgoing()
        if out:
            st = self.stack
            enc = st.encryption if st.encryption.working else None
            for bid, peer_addr, raw in out:
                b = st._bearers[bid] if 0 <= bid < len(st._bearers) else None
                if b is None:
                    continue
                maddr: Any = None
                if peer_addr is not None:
                    p = st.peers.get(peer_addr)
                    le = p.links.get(bid) if p is not None else None
                    if le is None:
                        continue
                    maddr = le.media_addr
                b.stats.tx_packets += 1
                if enc is not None:  # tipc_crypto_xmit
                    st._tx.extend((bid, maddr, e) for e in enc.tx(raw, peer_addr, now))
                else:
                    st._tx.append((bid, maddr, raw))
        for ev in bl.take_events():
            if isinstance(ev, BcastWakeup):
                self.stack._emit(LinkWakeup(ev.importance), now)
            elif isinstance(ev, BcastPeerFailure):
                self.counters["peer_failures"] += 1
                peer = self.stack.peers.get(ev.addr)
                if peer is not None:  # tipc_node_reset_links
                    for le in list(peer.links.values()):
                        if le.link.is_up:
                            le.link.reset(now, "broadcast retransmission failure")
                            peer._collect(le, now)
                    self.stack._pump_peer(peer, now)

    # ---------------------------------------------------------------- receiving
    def uc_rcv(self, peer: Any, bearer_id: int, msg: Msg, now: float) -> None:
        """A unicast packet from a known peer, before its link sees it (tipc_rcv)."""
        bl = self.link
        addr = peer.addr
        p = bl.peers.get(addr)
        if p is None:
            return
        w = msg.w
        if (w[0] >> 25) & 0xF == _USER_LINK_PROTOCOL:
            synced = bool(peer.bc.synced)
            bl.proto_rcv(addr, msg, now, rcv_up=synced)
            nack = self.rcv.get(addr)
            if nack is not None and len(w) >= 10:
                res = nack.sync_rcv(msg, rcv_up=synced, rcv_nxt=peer.bc.rcv_nxt,
                                    deferred=peer.bc.deferred, peer_caps=int(peer.caps),
                                    own_addr=self.stack.own_addr)
                self._set_bc_gap(peer)
                if res.send_state and not (w[5] & 1):  # a probe's reply is a STATE
                    self.counters["states_sync"] += 1
                    self._send_state(peer, bearer_id, now)
                if res.legacy_nack is not None:
                    self.counters["legacy_nacks"] += 1
                    m = res.legacy_nack
                    m.w[5] = self.stack.net_id
                    raw = m.encode()
                    for bid in sorted(bl.bearers):
                        if bl.bearers[bid].dests:
                            bl._out.append((bid, None, raw))
            self._flush(now)
        elif (w[1] & 0xFFFF) != p.acked:
            bl.ack_rcv(addr, msg, now)
            self._flush(now)

    def nack_rcv(self, peer: Any, msg: Msg, now: float) -> None:
        """A BCAST_PROTOCOL message on a peer's broadcast link: a legacy NACK."""
        self.link.nack_rcv(peer.addr, msg, now)
        nack = self.rcv.get(peer.addr)
        if nack is not None:
            nack.peek_nack(msg, rcv_nxt=peer.bc.rcv_nxt, own_addr=self.stack.own_addr)
        self._flush(now)

    def bc_rcv(self, peer: Any, before_nxt: int, now: float) -> None:
        """After the node took one packet of the peer's broadcast link: keep the
        links' bc_gap / blocks current and send a STATE when it is our turn."""
        addr = peer.addr
        bc = peer.bc
        if addr not in self.rcv:
            return
        own = self.stack.own_addr
        due = False
        delivered = (bc.rcv_nxt - before_nxt) & 0xFFFF
        if bc.rx_deferred != self._deferred_seen.get(addr, 0):
            self._deferred_seen[addr] = bc.rx_deferred
            if bc_nack_due(bc.rx_deferred, own):
                self.counters["states_nack"] += 1
                due = True
        if delivered:
            n = self._rcv_unacked.get(addr, 0) + delivered
            if n >= _ACK_RATE and bc_ack_due(bc.rcv_nxt, own):
                self.counters["states_ack"] += 1
                n = 0
                due = True
            self._rcv_unacked[addr] = n
        self._set_bc_gap(peer)
        if due:
            self._send_state(peer, None, now)

    def _set_bc_gap(self, peer: Any) -> None:
        nack = self.rcv.get(peer.addr)
        if nack is None:
            return
        bc = peer.bc
        gap = nack.gap(bc.rcv_nxt, bc.deferred) & 0x3FF
        blocks = bc_gap_ack_blocks(bc.rcv_nxt, bc.deferred) if bc.deferred else []
        for le in peer.links.values():
            le.link.bc_gap = gap
            le.link.bc_gap_blocks = blocks

    def _send_state(self, peer: Any, bearer_id: int | None, now: float) -> None:
        bid = bearer_id if bearer_id is not None else peer.active[0]
        if bid is None:
            return
        le = peer.links.get(bid)
        if le is None or not le.link.is_up:
            return
        self._rcv_unacked[peer.addr] = 0
        le.link.send_state()
        peer._collect(le, now)
        self.stack._pump_peer(peer, now)

    # ---------------------------------------------------------------- timer
    def _arm(self, now: float) -> None:
        if self._next_tick is None and self.link.peers:
            self._next_tick = now + self._interval

    def next_deadline(self) -> float | None:
        return self._next_tick

    def tick(self, now: float) -> None:
        """Once per link interval while some peer owes acks: a STATE carrying
        last_bcast to each of them (so a lost tail gets NACKed)."""
        if self._next_tick is None or now < self._next_tick:
            return
        self._next_tick = None
        bl = self.link
        bl.tick(now)
        pending = False
        for addr in list(bl.peers):
            if bl.peer_needs_state(addr):
                pending = True
                peer = self.stack.peers.get(addr)
                if peer is not None and peer.is_up:
                    self.counters["states_tail"] += 1
                    self._send_state(peer, None, now)
        if pending:
            self._next_tick = now + self._interval

    # ---------------------------------------------------------------- introspection
    def stats_dict(self) -> dict[str, Any]:
        d = self.link.stats_dict()
        d["tipcpy"] = dict(self.counters)
        return d

    def rcast_peers(self) -> Iterable[int]:
        return [a for a in self.stack.up_nodes()
                if not int(self.stack.peers[a].caps) & Cap.NAMED_BCAST]


def mode_from_name(name: str) -> BcMode:
    """BROADCAST / REPLICAST / AUTOSELECT -> BcMode (ValueError otherwise)."""
    m = {"BROADCAST": BcMode.BCAST, "REPLICAST": BcMode.RCAST, "AUTOSELECT": BcMode.SEL}
    try:
        return m[name.upper()]
    except KeyError:
        raise ValueError(f"unknown broadcast method {name!r}") from None
