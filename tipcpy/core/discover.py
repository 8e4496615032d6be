"""Neighbour discovery (LINK_CONFIG, user 13): one :class:`Discoverer` per bearer.

Mirrors the kernel's ``net/tipc/discover.c`` (facts, not code):

* While the node has no address it runs a 1 s *address trial*: ``DSC_TRIAL`` every
  125 ms with ``prevnode`` = the trial address (hash of the identity).  A peer that
  knows another node with that address answers ``DSC_TRIAL_FAIL`` with a suggestion,
  which restarts the trial with the suggested address.
* Then ``DSC_REQ`` with the kernel's back-off: 125 ms doubling, capped at 1 s while no
  neighbour on this bearer has a working link, at 60 s once one has; when the last one
  is lost the interval drops back to 125 ms.
* A unicast ``DSC_RESP`` answers a ``DSC_REQ`` only when the sender has no link up on
  this bearer (as observed on Linux 6.1, §2.4 of the reference; kernel
  tipc_node_check_dest sets ``respond`` whenever the link is not up).
* Healing (``heal=True``, the default; a tipcpy rule, not the kernel's): the kernel
  repairs a lost first exchange only with the next periodic request of either side,
  which is up to ``TIPC_DISC_SLOW`` (60 s) away once the bearer has any working link.
  tipcpy holds the interval at ``TIPC_DISC_FAST`` (1 s) instead of letting it grow
  while (a) a peer discovered on this bearer has no working link here yet (its half of
  the exchange may have been lost: our next request teaches it about us), or (b) the
  number of linked peers changed since the previous request (the cluster is still
  forming, so other first exchanges may be in flight and lost).  A newly discovered
  unlinked peer also brings the next request forward to at most 1 s away.  Once the
  bearer is stable the kernel's doubling to 60 s resumes.  ``heal=False`` gives the
  kernel's exact intervals.
* Messages with another net id are counted and dropped; our own echo is ignored; a
  peer using our address is a duplicate (counted, reported, never linked).

The discoverer is sans-IO: it gets decoded messages and ``now`` in, and hands out
``(dest_media_addr | None, bytes)`` pairs (``None`` = broadcast on the bearer) and
events.  It does not create links: the Stack reacts to :class:`PeerDiscovered`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tipcpy.wire import DecodeError, EthMediaAddr, Msg
from tipcpy.wire.consts import (
    NODE_ID_LEN,
    Cap,
    DscType,
    User,
)

__all__ = [
    "OWN_CAPS",
    "mem_media_addr",
    "Discoverer",
    "PeerDiscovered",
    "DuplicateAddress",
    "TrialEnded",
    "TrialFailed",
    "DiscStats",
]

OWN_CAPS: int = int(
    Cap.SYN_BIT
    | Cap.BCAST_SYNCH
    | Cap.BCAST_STATE_NACK
    | Cap.BLOCK_FLOWCTL
    | Cap.BCAST_RCAST
    | Cap.NODE_ID128
    | Cap.LINK_PROTO_SEQNO
    | Cap.GAP_ACK_BLOCK
    | Cap.TUNNEL_ENHANCED
)
"""Capabilities we advertise (0x37F).

Chosen per §6.3 / §9.5 of the reference:

* NODE_ID128 - kernels identify us by our 16-byte identity, not ``"%x"`` of the hash.
* LINK_PROTO_SEQNO, GAP_ACK_BLOCK - our links keep a STATE counter and send the 4-byte
  Gap-ACK header; that is what the kernel expects when we claim them (§9.2).
* BCAST_RCAST - without it the *whole cluster* would be forced onto the broadcast link
  for multicast; we do replicast ourselves and accept broadcast from kernels.
* BLOCK_FLOWCTL, SYN_BIT - modern connection flow control and SYN handling.
* BCAST_SYNCH, BCAST_STATE_NACK - the modern broadcast sync (BCAST_PROTOCOL init msg,
  which we accept) and bcast gap info in STATE (ours is always 0: we never broadcast).
* NOT NAMED_BCAST - so kernels send their name updates over the unicast link, and our
  name table never depends on broadcast-link reception (§9.3).
* TUNNEL_ENHANCED - failover / synch as the kernel does them since 5.x: with it a
  kernel sends us a header-only SYNCH_MSG carrying the synch point (and reads ours
  the same way), and splits tunnelled packets too big for the tunnel link into
  tunnel fragments instead of giving up the failover (core/link.py tnl_xmit/_tnl_rcv).
* NOT MCAST_RBCTL, NAGLE - features we do not implement (yet).
"""

TIPC_DISC_INIT = 0.125
TIPC_DISC_FAST = 1.0
TIPC_DISC_SLOW = 60.0
ADDR_TRIAL = 1.0


def mem_media_addr(n: int) -> EthMediaAddr:
    """Media address of attachment ``n`` of the in-memory (simulation) medium.

    Ethernet-shaped (locally administered MAC ``02:00:nn:nn:nn:nn``) so discovery
    carries it exactly like a real ``eth`` bearer's address and the codec validates it.
    """
    return EthMediaAddr(b"\x02\x00" + (n & 0xFFFFFFFF).to_bytes(4, "big"))


def media_addr_is_broadcast(addr: Any) -> bool:
    """Kernel msg2addr refuses discovery carrying a broadcast/multicast address."""
    return bool(getattr(addr, "is_broadcast", False) or getattr(addr, "is_multicast", False))


# ---------------------------------------------------------------- events
@dataclass(frozen=True)
class PeerDiscovered:
    """A valid REQ/RESP from a peer: the Stack creates/updates node and link.

    ``media_addr`` is the peer's bearer address taken from *inside* the message: it is
    the unicast destination of the link (not the packet's source address).
    """

    bearer_id: int
    addr: int
    node_id: bytes
    caps: int
    media_addr: Any
    signature: int
    mtype: int = DscType.REQ


@dataclass(frozen=True)
class DuplicateAddress:
    """Someone else uses ``addr`` (ours, or a known peer's) with another identity/media."""

    bearer_id: int
    addr: int
    node_id: bytes
    media_addr: Any
    ours: bool


@dataclass(frozen=True)
class TrialEnded:
    """The 1 s address trial is over without conflict: the Stack commits ``trial_addr``."""

    bearer_id: int
    trial_addr: int


@dataclass(frozen=True)
class TrialFailed:
    """A peer refused our trial address; the trial restarted with ``suggested``."""

    bearer_id: int
    old_addr: int
    suggested: int


@dataclass
class DiscStats:
    """Counters per bearer (``tipc bearer`` style introspection, and tests)."""

    tx_req: int = 0
    tx_resp: int = 0
    tx_trial: int = 0
    tx_trial_fail: int = 0
    rx: int = 0
    rx_own: int = 0
    rx_wrong_netid: int = 0
    rx_bad_media: int = 0
    rx_out_of_scope: int = 0
    rx_during_trial: int = 0
    rx_duplicate_addr: int = 0
    rx_trial_fail: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# Lookups into the node table, supplied by the Stack (defaults: empty table).
NodeIdByAddr = Callable[[int], "bytes | None"]
AddrById = Callable[[bytes], "int | None"]


class Discoverer:
    """Periodic LINK_CONFIG requests and the handling of received ones, for one bearer.

    ``own_addr`` 0 means the node has no address yet: the discoverer trials
    ``trial_addr`` until ``trial_end`` and then emits :class:`TrialEnded` (the Stack
    calls :meth:`set_own_addr` on every discoverer).
    """

    def __init__(
        self,
        *,
        bearer_id: int,
        media_addr: Any,
        node_id: bytes,
        net_id: int,
        own_addr: int,
        trial_addr: int,
        rng: Any,
        now: float,
        trial_end: float | None = None,
        random32: int | None = None,
        caps: int = OWN_CAPS,
        send_requests: bool = True,
        node_id_by_addr: NodeIdByAddr | None = None,
        addr_by_id: AddrById | None = None,
        heal: bool = True,
    ) -> None:
        if len(node_id) != NODE_ID_LEN:
            raise ValueError("node identity must be 16 bytes")
        self.bearer_id = bearer_id
        self.media_addr = media_addr
        self._media_info = media_addr.to_media_info()
        self.node_id = node_id
        self.net_id = net_id
        self.own_addr = own_addr
        self.trial_addr = trial_addr
        self.caps = caps
        # kernel: tn->random; signature = random & 0xffff, peer_net_hash = random
        self.random32 = rng.getrandbits(32) if random32 is None else random32
        # w1 bit 15 is shared: caps bit 0 overwrites the signature bit (as on the wire)
        self.signature = (self.random32 & 0x7FFF) | ((caps & 1) << 15)
        self.send_requests = send_requests
        self._node_id_by_addr = node_id_by_addr or (lambda a: None)
        self._addr_by_id = addr_by_id or (lambda i: None)
        self.stats = DiscStats()
        self._linked: set[int] = set()  # peers with a working link on this bearer
        # peers we discovered on this bearer that have no working link here (yet)
        self._unlinked: set[int] = set()
        self.heal = heal
        self._nodes_at_tick = 0
        self._out: list[tuple[Any, bytes]] = []
        self._events: list[object] = []
        self.trial_end = trial_end if own_addr == 0 else None
        if own_addr == 0 and trial_end is None:
            self.trial_end = now + ADDR_TRIAL
        self._left_trial = own_addr != 0
        self.timer_intv = TIPC_DISC_INIT
        self._deadline: float | None = now + self.timer_intv
        # kernel: tipc_disc_create hands the first message to the bearer at once
        if self.send_requests:
            self._send_periodic()

    # ---- state ----------------------------------------------------------------------
    @property
    def trialling(self) -> bool:
        return self.own_addr == 0

    @property
    def num_nodes(self) -> int:
        """Number of peers with a working link on this bearer (kernel ``num_nodes``)."""
        return len(self._linked)

    def set_own_addr(self, addr: int, now: float) -> None:
        """The node committed its address: switch from TRIAL to REQ messages."""
        self.own_addr = addr
        self.trial_addr = addr
        self.trial_end = None

    @property
    def unlinked(self) -> frozenset[int]:
        """Peers discovered on this bearer without a working link here."""
        return frozenset(self._unlinked)

    def add_dest(self, peer_addr: int) -> None:
        """A link to ``peer_addr`` on this bearer came up (kernel tipc_disc_add_dest)."""
        self._linked.add(peer_addr)
        self._unlinked.discard(peer_addr)

    def remove_dest(self, peer_addr: int, now: float) -> None:
        """That link went down; with no neighbour left, go back to fast requests."""
        if peer_addr in self._linked:
            self._linked.discard(peer_addr)
            self._unlinked.add(peer_addr)
        if not self._linked and self.timer_intv > TIPC_DISC_FAST:
            self.timer_intv = TIPC_DISC_INIT
            if self.send_requests:
                self._deadline = now + self.timer_intv
        elif self.heal:
            self._hurry(now)

    def forget(self, peer_addr: int) -> None:
        """The node object of ``peer_addr`` was removed: stop healing towards it."""
        self._linked.discard(peer_addr)
        self._unlinked.discard(peer_addr)

    def _hurry(self, now: float) -> None:
        """Healing: the next request goes out within TIPC_DISC_FAST."""
        if self.timer_intv > TIPC_DISC_FAST:
            self.timer_intv = TIPC_DISC_FAST
        if self.send_requests and self._deadline is not None \
                and self._deadline > now + TIPC_DISC_FAST:
            self._deadline = now + TIPC_DISC_FAST

    def _healing(self) -> bool:
        """Hold requests at the fast rate (see the module docstring, rule a/b)."""
        return self.heal and (bool(self._unlinked) or len(self._linked) != self._nodes_at_tick)

    def reset(self, now: float) -> None:
        """Restart requests from 125 ms (kernel tipc_disc_reset, e.g. after a net id change)."""
        self._linked.clear()
        self._unlinked.clear()
        self._nodes_at_tick = 0
        self.timer_intv = TIPC_DISC_INIT
        self._deadline = now + self.timer_intv
        if self.send_requests:
            self._send_periodic()

    # ---- building -------------------------------------------------------------------
    def _build(self, mtype: int, dest_domain: int = 0, sugg_addr: int = 0) -> bytes:
        m = Msg.build(
            User.LINK_CONFIG,
            mtype=mtype,
            data=self.node_id,
            non_seq=1,
            signature=self.signature,
            caps=self.caps,
            prevnode=self.own_addr or self.trial_addr,
            dest_domain=dest_domain,
            net_id=self.net_id,
            media_info=self._media_info,
            peer_net_hash=self.random32,
            suggested_addr=sugg_addr,
        )
        return m.encode()

    def _send_periodic(self) -> None:
        if self.trialling:
            self.stats.tx_trial += 1
            self._out.append((None, self._build(DscType.TRIAL)))
        else:
            self.stats.tx_req += 1
            self._out.append((None, self._build(DscType.REQ)))

    # ---- driving --------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self._deadline

    def tick(self, now: float) -> None:
        """Kernel tipc_disc_timeout: send the periodic message and adjust the interval."""
        if self._deadline is None or now < self._deadline:
            return
        if self.trialling:
            assert self.trial_end is not None
            if now < self.trial_end:
                self.timer_intv = TIPC_DISC_INIT
            else:
                # just left the trial: tell the Stack, re-arm fast without sending
                self._deadline = now + TIPC_DISC_INIT
                self._events.append(TrialEnded(self.bearer_id, self.trial_addr))
                return
        else:
            self.timer_intv *= 2
            if self._healing() and self.timer_intv > TIPC_DISC_FAST:
                self.timer_intv = TIPC_DISC_FAST
            elif self._linked and self.timer_intv > TIPC_DISC_SLOW:
                self.timer_intv = TIPC_DISC_SLOW
            elif not self._linked and self.timer_intv > TIPC_DISC_FAST:
                self.timer_intv = TIPC_DISC_FAST
            self._nodes_at_tick = len(self._linked)
        self._deadline = now + self.timer_intv
        if self.send_requests:
            self._send_periodic()

    def receive(self, msg: Any, now: float) -> None:
        """Handle a decoded LINK_CONFIG message received on this bearer."""
        self.stats.rx += 1
        mtype = msg.mtype
        src = msg.prevnode
        caps = msg.caps
        if caps & Cap.NODE_ID128:
            peer_id = bytes(msg.node_id)[:NODE_ID_LEN].ljust(NODE_ID_LEN, b"\0")
        else:
            peer_id = f"{src:x}".encode().ljust(NODE_ID_LEN, b"\0")
        try:
            maddr = msg.media_addr
        except (DecodeError, ValueError):
            self.stats.rx_bad_media += 1
            return
        if media_addr_is_broadcast(maddr):
            self.stats.rx_bad_media += 1
            return
        if maddr == self.media_addr:
            self.stats.rx_own += 1
            return
        if msg.net_id != self.net_id:
            self.stats.rx_wrong_netid += 1
            return
        if self._addr_trial_msg(msg, mtype, src, peer_id, maddr, now):
            return
        if src == self.own_addr:
            self.stats.rx_duplicate_addr += 1
            self._events.append(DuplicateAddress(self.bearer_id, src, peer_id, maddr, True))
            return
        dst = msg.dest_domain
        if dst not in (0, self.own_addr):
            self.stats.rx_out_of_scope += 1
            return
        known = self._node_id_by_addr(src)
        if known is not None and known != peer_id:
            # another identity claims a known peer's address: never link to it
            self.stats.rx_duplicate_addr += 1
            self._events.append(DuplicateAddress(self.bearer_id, src, peer_id, maddr, False))
            return
        self._events.append(
            PeerDiscovered(self.bearer_id, src, peer_id, caps, maddr, msg.signature, mtype)
        )
        if src not in self._linked and src not in self._unlinked:
            self._unlinked.add(src)
            if self.heal:
                self._hurry(now)
        if mtype == DscType.REQ and src not in self._linked:
            self.stats.tx_resp += 1
            self._out.append((maddr, self._build(DscType.RESP, dest_domain=src)))

    def _addr_trial_msg(self, msg: Any, mtype: int, src: int, peer_id: bytes,
                        maddr: Any, now: float) -> bool:
        """Kernel tipc_disc_addr_trial_msg: True if the caller must drop the message."""
        trial = self.trialling and self.trial_end is not None and now < self.trial_end
        if mtype == DscType.TRIAL_FAIL:
            self.stats.rx_trial_fail += 1
            if not self.trialling or msg.dest_domain != self.trial_addr:
                return True
            sugg = msg.suggested_addr
            if not sugg:
                return True
            old = self.trial_addr
            self.trial_addr = sugg
            self.trial_end = now + ADDR_TRIAL
            self._events.append(TrialFailed(self.bearer_id, old, sugg))
            return True
        if mtype != DscType.TRIAL:
            if self.trialling:
                self.stats.rx_during_trial += 1
                return True
            return False
        sugg = self._try_addr(peer_id, src)
        if sugg:
            self.stats.tx_trial_fail += 1
            self._out.append(
                (maddr, self._build(DscType.TRIAL_FAIL, dest_domain=src, sugg_addr=sugg))
            )
        del trial
        return True

    def _try_addr(self, peer_id: bytes, addr: int) -> int:
        """Kernel tipc_node_try_addr: a suggestion if ``addr`` conflicts, else 0."""
        known = self._node_id_by_addr(addr)
        if known is not None:
            return 0 if known == peer_id else self._suggest(addr)
        prev = self._addr_by_id(peer_id)
        if prev is not None and prev != addr:
            return prev
        if addr in (self.own_addr, self.trial_addr) and peer_id != self.node_id:
            return self._suggest(addr)
        if addr in (self.own_addr, self.trial_addr):
            return self._suggest(addr)  # a clone with our very identity
        return 0

    def _suggest(self, addr: int) -> int:
        a = addr
        while True:
            a = (a + 1) & 0xFFFFFFFF
            if a == 0 or a in (self.own_addr, self.trial_addr):
                continue
            if self._node_id_by_addr(a) is None:
                return a

    # ---- output ---------------------------------------------------------------------
    def take_outgoing(self) -> list[tuple[Any, bytes]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[object]:
        ev, self._events = self._events, []
        return ev
