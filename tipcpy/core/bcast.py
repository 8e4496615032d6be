"""Our broadcast send link, broadcast method selection and the broadcast NACK helpers.

Mirrors the kernel's ``net/tipc/bcast.c`` and the ``tipc_link_bc_*`` parts of
``link.c`` (facts only; the code is our own), sans-IO like every core object:
``now`` comes in, packets and events go out.

What the kernel does, and so what this module does:

* **One send link per node** ("broadcast-link"), always up.  Its packets carry
  ``non_seq`` = 1, w2[15:0] = broadcast seqno (16-bit, from 1), w1[15:0] and w2[31:16]
  = 0, w7 (destnode) = 0 and w5 = the cluster's net id (set at transmit time, on
  retransmissions too; §2.2, §9.3).
* **Peers** (``tipc_link_add_bc_peer`` / ``remove_bc_peer``): a peer joins when its node
  comes up.  It then counts as an *acker* of every packet sent from that moment on;
  its ``acked`` starts at ``snd_nxt - 1`` and we give it our sync point in a
  ``BCAST_PROTOCOL`` init message (last_bcast = snd_nxt - 1, bc_ack_invalid = 1) sent
  as the first sequenced packet of the unicast link.  When the last peer leaves the
  link is reset: the queues go and seqnos restart at 1 (§9.3 saw exactly that).
* **Acks**: a packet is released when every peer that was an acker when it was sent
  has acked it (the kernel counts ``ackers`` per packet; we keep the set of peers
  still owing an ack, which is the same thing and survives Gap-ACK blocks without
  the kernel's ``last_ga`` bookkeeping).  A peer's acks count only once it is
  *synched*: our receive link from it is up (we got its BCAST_PROTOCOL init) and it
  sent a STATE acking our unicast packet 1 (our init) - the kernel's
  ``bc_peer_is_up``.  Acks in messages with ``bc_ack_invalid`` are ignored
  (``tipc_bcast_ack_rcv`` / ``tipc_bcast_sync_rcv``).
* **Retransmission** on a peer's STATE: ``bcast_ack`` + ``bc_gap`` give the first
  missing run, the broadcast Gap-ACK blocks the rest; each packet at most once per
  10 ms (``TIPC_BC_RETR_LIM``); retransmissions are broadcast again (the kernel's
  default ``bc_retruni`` = 0).  A first-missing packet retransmitted for more than
  10 x tolerance fails that *peer* (the kernel resets every link to it).
  The legacy NACK (``BCAST_PROTOCOL`` STATE with bcgap_after/bcgap_to, only from
  peers without ``TIPC_BCAST_STATE_NACK``) is handled too.
* **Window** (``BCLINK_WIN_DEFAULT`` 50, min 32) and backlog per importance (2/4/6/8 x
  the window, SYSTEM limited to ``TIPC_MAX_PUBL / (mtu / 20)``); when the window is
  full small messages are bundled in the backlog (a burst of 500 name updates went
  out as bundles, §2.9).  A data message over the backlog limit is still queued and
  the caller is told to wait for :class:`BcastWakeup` (the kernel's "oversubscription
  of one message per source"); SYSTEM overflow drops the message (the kernel's
  -ENOBUFS).  ``tipc link set window W link broadcast-link`` changes only ``max_win``
  (what ``tipc link get``/``stat`` report); the send window stays ``min_win``, as in
  the kernel, which never grows the broadcast window.
* **Bearers** (``tipc_bcbase_select_primary``): destinations per bearer; a bearer
  that reaches every peer is *primary* and gets the only copy; otherwise every
  bearer with destinations gets one.  MTU = min(one page, bearers' MTUs), lowered
  only.  ``bcast_support`` is the primary bearer's (else the AND of the used ones):
  Ethernet and a UDP bearer in multicast mode have it; a UDP bearer with unicast
  remote IPs does not (the kernel switches it to ``TIPC_REPLICAST_SUPPORT``).
* **Method selection** for multicast data (``tipc_bcast_select_xmit_method``):
  no bearer broadcast support -> replicast; some node without ``TIPC_BCAST_RCAST``
  -> broadcast; a socket-mandated method stays; without ``TIPC_MCAST_RBCTL`` in the
  cluster the method may change only when the socket's previous multicast is more
  than 5 s old; BROADCAST / REPLICAST forced by configuration; AUTOSELECT picks
  replicast when ``dests <= 1 + cluster_size * ratio / 100``.  A switch is bridged
  by a SYN-marked dummy sent by the *old* method (``tipc_mcast_send_sync``).
* **Name updates** go on the broadcast link only when every up peer advertises
  ``TIPC_NAMED_BCAST`` (the kernel's ``rc_dests`` = 0) and the mode is not forced
  REPLICAST (``tipc_node_broadcast``); otherwise one copy per up node over its
  unicast link.  Note the kernel does not look at ``bcast_support`` here: with a UDP
  bearer in unicast-remote mode name updates still use the broadcast link, and the
  bearer sends one copy to each remote IP (§9.3 saw exactly that).

Receive-side helpers (pure functions and :class:`BcRcvNack`) give the node what the
kernel's broadcast *receive* link computes for our STATEs: ``bc_gap``, the broadcast
Gap-ACK blocks, when a STATE (ack or NACK) is due, and the legacy NACK.

Outputs: :meth:`BcastLink.take_outgoing` -> ``(bearer_id, peer_addr | None, bytes)``;
``peer_addr`` None = broadcast on that bearer (the stack turns it into the bearer's
``None`` media address: multicast group / remote-IP replication for UDP,
ff:ff:ff:ff:ff:ff for Ethernet), an address = unicast to that peer's media address
on that bearer (only for ``retr_unicast``).  Events: :class:`BcastWakeup`,
:class:`BcastPeerFailure`.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any

from tipcpy.core._event import SlotEvent
from tipcpy.core.discover import OWN_CAPS
from tipcpy.wire import Msg
from tipcpy.wire.bundle import pack_bundle
from tipcpy.wire.consts import INT_H_SIZE, MCAST_H_SIZE, Cap, User

__all__ = [
    "BCLINK_NAME",
    "BCLINK_WIN_DEFAULT",
    "BCLINK_WIN_MIN",
    "BC_RETR_INTERVAL",
    "METHOD_EXPIRE",
    "ONE_PAGE_MTU",
    "ADVERTISE_CAPS",
    "BcMode",
    "BcastWakeup",
    "BcastPeerFailure",
    "BcPeer",
    "BcLinkStats",
    "McMethod",
    "BcastLink",
    "BcRcvNack",
    "SyncResult",
    "bc_rcv_gap",
    "bc_gap_ack_blocks",
    "gap_ack_record",
    "parse_gap_ack_record",
    "bc_ack_due",
    "bc_nack_due",
    "named_use_bcast",
    "build_mcast_sync",
]

# ---------------------------------------------------------------- constants
BCLINK_NAME = "broadcast-link"
BCLINK_WIN_DEFAULT = 50
BCLINK_WIN_MIN = 32
TIPC_MAX_LINK_WIN = 8191
BC_RETR_INTERVAL = 0.010
"""TIPC_BC_RETR_LIM: a broadcast packet is retransmitted at most once per 10 ms."""
RETR_FAIL_MULT = 10
BAD_ACKS = 3
"""Acks for never-sent packets, in a row over RETR_FAIL_MULT x tolerance, that
fail a peer."""
METHOD_EXPIRE = 5.0
"""TIPC_METHOD_EXPIRE: a socket's multicast method may change after this (no RBCTL)."""
ONE_PAGE_MTU = 3584
"""The kernel's initial broadcast MTU (``one_page_mtu``: a page minus skb overheads).
It depends on the kernel's build; 3584 is one x86-64 build's value.  Any bearer
with a smaller MTU lowers it."""
DEFAULT_RATIO = 10
TIPC_MAX_PUBL = 65535
ITEM_SIZE = 20
MIN_LINK_WIN = 16
"""TIPC_MIN_LINK_WIN: the ack rate, and the legacy NACK's delay threshold."""
MAX_BC_GAP_BLOCKS = 64
BC_GAP_MASK = 0x3FF
"""bc_gap is 10 bits in w8 (msg_bc_gap)."""
_SYSTEM = 4
_TIPC_ERR_NO_PORT = 2
_MCAST_MSG = 1
ADVERTISE_CAPS = int(OWN_CAPS | Cap.NAMED_BCAST)
"""What the node advertises now that this link is wired in (0xB7F).

* ``TIPC_NAMED_BCAST`` (0x800) is the bit that changes behaviour: with it every
  kernel peer sends its single name updates to us on its broadcast link (§9.3:
  received and acked by node.py already) and, when *all* peers have it, we send
  ours on this link (:func:`named_use_bcast`).
* ``TIPC_BCAST_SYNCH`` (0x002), ``TIPC_BCAST_STATE_NACK`` (0x004),
  ``TIPC_BCAST_RCAST`` (0x010) and ``TIPC_GAP_ACK_BLOCK`` (0x100), already in
  discover.OWN_CAPS, become true statements: we send the BCAST_PROTOCOL init, NACK
  in STATE (bc_gap + broadcast Gap-ACK blocks), take replicast copies, parse blocks.
* Not ``TIPC_MCAST_RBCTL`` (0x080) yet: with it the kernels switch multicast
  method per message and bridge each switch with a SYN dummy, which our socket
  layer must then filter (the kernel's tipc_mcast_filter_msg).  Without it they
  fall back to the 5 s hysteresis and send no SYN dummies."""

_USER_BCAST_PROTOCOL = int(User.BCAST_PROTOCOL)
_USER_BUNDLER = int(User.MSG_BUNDLER)
_USER_LINK_PROTOCOL = int(User.LINK_PROTOCOL)
_USER_TUNNEL = int(User.TUNNEL_PROTOCOL)
_USER_FRAGMENTER = int(User.MSG_FRAGMENTER)
_USER_NAME_DISTR = int(User.NAME_DISTRIBUTOR)
_NOT_BUNDLED = frozenset({_USER_BCAST_PROTOCOL, _USER_BUNDLER, _USER_TUNNEL, _USER_FRAGMENTER})
_BC_ACK_INVALID_USERS = frozenset({_USER_BCAST_PROTOCOL, _USER_NAME_DISTR, _USER_LINK_PROTOCOL})
_W0_KEEP = 0xFE1E0000
_NON_SEQ = 1 << 20
_PROTO_HDR = struct.Struct(">10I")
_GAP_HDR = struct.Struct(">HBB")
_GAP_BLK = struct.Struct(">HH")


def _less(a: int, b: int) -> bool:
    return a != b and ((b - a) & 0xFFFF) < 0x8000


def _less_eq(a: int, b: int) -> bool:
    return ((b - a) & 0xFFFF) < 0x8000


def _more(a: int, b: int) -> bool:
    return _less(b, a)


class BcMode(IntEnum):
    """BCLINK_MODE_* (uapi tipc_netlink.h), as ``tipc link get broadcast`` reports."""

    NONE = 0
    BCAST = 0x1
    RCAST = 0x2
    SEL = 0x4


_MODE_NAMES = {BcMode.BCAST: "BROADCAST", BcMode.RCAST: "REPLICAST", BcMode.SEL: "AUTOSELECT"}


# ---------------------------------------------------------------- events
class BcastWakeup(SlotEvent):
    """The backlog of ``importance`` has room again after :meth:`BcastLink.xmit`
    returned False (the kernel's SOCK_WAKEUP for the broadcast link); also emitted
    when a reset empties the queues, so no sender waits forever."""

    __slots__ = ("importance",)

    def __init__(self, importance: int) -> None:
        self.importance = importance


class BcastPeerFailure(SlotEvent):
    """Broadcast retransmission to ``addr`` failed for 10 x tolerance: the kernel
    resets every link to that node (tipc_node_reset_links); the node must do the
    same, which in turn removes the peer from this link."""

    __slots__ = ("addr",)

    def __init__(self, addr: int) -> None:
        self.addr = addr


# ---------------------------------------------------------------- state
@dataclass(slots=True)
class BcLinkStats:
    """Counters of ``tipc link stat show link broadcast-link`` (the kernel's
    ``__tipc_nl_add_bc_link_stat`` map), then ours: why input was dropped."""

    recv_pkts: int = 0
    recv_fragments: int = 0
    recv_fragmented: int = 0
    recv_bundles: int = 0
    recv_bundled: int = 0
    sent_pkts: int = 0
    sent_fragments: int = 0
    sent_fragmented: int = 0
    sent_bundles: int = 0
    sent_bundled: int = 0
    recv_nacks: int = 0
    deferred_recv: int = 0
    sent_nacks: int = 0
    sent_acks: int = 0
    retransmitted: int = 0
    duplicates: int = 0
    link_congs: int = 0
    max_queue_sz: int = 0
    accu_queue_sz: int = 0
    queue_sz_counts: int = 0
    # ours
    rx_malformed: int = 0
    """STATE / NACK / ack input we could not use: bad Gap-ACK record, short header,
    acks of packets never sent, gap ranges beyond snd_nxt."""
    rx_unknown_peer: int = 0
    """Acks/NACKs from a node that is not a broadcast peer."""
    rx_not_synched: int = 0
    """Acks from a peer that is not synched yet (or flagged bc_ack_invalid)."""
    tx_no_peers: int = 0
    """Messages dropped because there was no peer (the kernel drops them too)."""
    tx_overflow: int = 0
    """SYSTEM-importance messages dropped on a full backlog (kernel: -ENOBUFS)."""
    resets: int = 0
    """Times the last peer left and the link restarted at seqno 1."""

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, 0)

    def as_dict(self) -> dict[str, int]:
        d = {f.name: int(getattr(self, f.name)) for f in fields(self)}
        d["avg_queue_sz"] = self.accu_queue_sz // self.queue_sz_counts if self.queue_sz_counts else 0
        return d


@dataclass(slots=True)
class BcPeer:
    """What the send link knows of one peer (the kernel keeps it in that peer's
    broadcast *receive* link: ``acked``, ``bc_peer_is_up``, ``tolerance``)."""

    addr: int
    acked: int
    tolerance: int = 1500
    caps: int = int(Cap.ALL)
    rcv_up: bool = False
    """Our receive link from this peer is up (its BCAST_PROTOCOL init arrived)."""
    bc_peer_is_up: bool = False
    """The peer acked our init (a STATE with a non-zero unicast ack): its
    ``bcast_ack`` now means something."""
    recv_nacks: int = 0
    retransmitted: int = 0
    failed: bool = False
    bad_ack_n: int = 0
    """Acks in a row for packets we never sent (see BcastLink._bad_ack)."""
    bad_ack_at: float = 0.0


class _TxEntry:
    __slots__ = ("seq", "raw", "pending", "nxt_retr", "retr_cnt", "retr_stamp")

    def __init__(self, seq: int, raw: bytes, pending: set[int], now: float) -> None:
        self.seq = seq
        self.raw = raw
        self.pending = pending
        self.nxt_retr = now + BC_RETR_INTERVAL
        self.retr_cnt = 0
        self.retr_stamp = 0.0


class _Pending:
    """A backlog entry: a ready packet, or a small message that may still grow into
    a bundle (``raws`` set once a second message joined it)."""

    __slots__ = ("imp", "raw", "raws", "bsz", "frag")

    def __init__(self, imp: int, raw: bytes, bsz: int, frag: bool = False) -> None:
        self.imp = imp
        self.raw = raw
        self.raws: list[bytes] | None = None
        self.bsz = bsz
        self.frag = frag


@dataclass(slots=True)
class McMethod:
    """A socket's multicast method (the kernel's ``struct tipc_mc_method``): starts
    as broadcast, never expired; ``mandatory`` when the socket set
    TIPC_MCAST_BROADCAST / TIPC_MCAST_REPLICAST."""

    rcast: bool = False
    mandatory: bool = False
    expires: float = 0.0


@dataclass(slots=True)
class _Bearer:
    mtu: int
    bcast_support: bool
    dests: int = 0


# ---------------------------------------------------------------- the send link
class BcastLink:
    """Our broadcast send link plus the kernel's ``tipc_bc_base`` (method and
    bearer selection).  One per Stack."""

    def __init__(
        self,
        *,
        own_addr: int,
        net_id: int,
        window: int = BCLINK_WIN_DEFAULT,
        mtu: int = ONE_PAGE_MTU,
        rc_ratio: int = DEFAULT_RATIO,
        crypto_overhead: int = 32,
        retr_unicast: bool = False,
    ) -> None:
        if not BCLINK_WIN_MIN <= window <= TIPC_MAX_LINK_WIN:
            raise ValueError(f"window {window}: must be {BCLINK_WIN_MIN}..{TIPC_MAX_LINK_WIN}")
        if mtu < 256:
            raise ValueError(f"mtu {mtu} too small")
        self.own_addr = own_addr
        self.net_id = net_id
        self.min_win = window
        self.max_win = window
        self.window = window
        self.mtu = mtu
        self.crypto_overhead = crypto_overhead
        self.retr_unicast = retr_unicast
        self.rc_ratio = rc_ratio
        self.force_bcast = False
        self.force_rcast = False
        self.rcast_support = True
        self.bcast_support = True
        self.cluster_caps = int(Cap.ALL)
        self.primary_bearer: int | None = None
        self.bc_threshold = 1
        self.bearers: dict[int, _Bearer] = {}
        self.peers: dict[int, BcPeer] = {}
        self.stats = BcLinkStats()
        self._snd_nxt = 1
        self._transmq: list[_TxEntry] = []
        self._backlog: list[_Pending] = []
        self._bl_len = [0] * 5
        self._bl_limit = [0] * 5
        self._target: list[_Pending | None] = [None] * 5
        self._congested = [False] * 5
        self._out: list[tuple[int, int | None, bytes]] = []
        self._events: list[BcastWakeup | BcastPeerFailure] = []
        self._set_limits()

    # ------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        return BCLINK_NAME

    @property
    def snd_nxt(self) -> int:
        return self._snd_nxt

    @property
    def last_bcast(self) -> int:
        """What every unicast link writes in w4[31:16] of its protocol messages (and
        the init message): our ``snd_nxt - 1``; 0 if we never broadcast (§9.3)."""
        return (self._snd_nxt - 1) & 0xFFFF

    @property
    def mss(self) -> int:
        return self.mtu - INT_H_SIZE - self.crypto_overhead

    @property
    def ackers(self) -> int:
        return len(self.peers)

    @property
    def transmq_len(self) -> int:
        return len(self._transmq)

    @property
    def backlog_len(self) -> int:
        return len(self._backlog)

    def backlog_limit(self, importance: int) -> int:
        return self._bl_limit[importance]

    def is_congested(self, importance: int) -> bool:
        return self._congested[importance]

    def peer_needs_state(self, addr: int) -> bool:
        """The kernel's link timer sends a STATE to a peer each tick while that
        peer has not acked everything we broadcast (``bc_acked != bc_snt`` in
        tipc_link_timeout): it carries ``last_bcast`` so the peer can NACK a lost
        tail.  The unicast link's tick should OR this into its "send STATE" test."""
        p = self.peers.get(addr)
        return p is not None and p.acked != self.last_bcast

    # ------------------------------------------------------------ configuration
    def _set_limits(self) -> None:
        w = self.min_win
        self.window = w
        self._bl_limit[:4] = [2 * w, 4 * w, 6 * w, 8 * w]
        self._bl_limit[_SYSTEM] = TIPC_MAX_PUBL // max(1, self.mtu // ITEM_SIZE)

    def set_window(self, max_win: int) -> None:
        """``tipc link set window W link broadcast-link`` (tipc_bc_link_set_queue_limits):
        below 32 is raised to 32, above 8191 is EINVAL; only ``max_win`` changes."""
        if max_win > TIPC_MAX_LINK_WIN:
            raise OSError(errno.EINVAL, f"window {max_win}: must be at most {TIPC_MAX_LINK_WIN}")
        self.max_win = max(BCLINK_WIN_MIN, max_win)
        self._set_limits()

    def set_mode(self, mode: int) -> None:
        """``tipc link set broadcast BROADCAST|REPLICAST|AUTOSELECT`` with the kernel's
        errors: ENOPROTOOPT when the bearers / peers cannot do it, EINVAL otherwise."""
        if mode == BcMode.BCAST:
            if not self.bcast_support:
                raise OSError(errno.ENOPROTOOPT, "broadcast not supported by the bearer(s)")
            self.force_bcast, self.force_rcast = True, False
        elif mode == BcMode.RCAST:
            if not self.rcast_support:
                raise OSError(errno.ENOPROTOOPT, "a peer does not support replicast")
            self.force_bcast, self.force_rcast = False, True
        elif mode == BcMode.SEL:
            if not self.bcast_support or not self.rcast_support:
                raise OSError(errno.ENOPROTOOPT, "autoselect needs broadcast and replicast")
            self.force_bcast = self.force_rcast = False
        else:
            raise OSError(errno.EINVAL, f"invalid broadcast mode {mode}")

    def set_ratio(self, ratio: int) -> None:
        """``... AUTOSELECT ratio N``: 1..100 (EINVAL), both methods possible
        (ENOPROTOOPT)."""
        if not self.bcast_support or not self.rcast_support:
            raise OSError(errno.ENOPROTOOPT, "ratio needs broadcast and replicast")
        if not 0 < ratio <= 100:
            raise OSError(errno.EINVAL, f"ratio {ratio}: must be 1..100")
        self.rc_ratio = ratio
        self._calc_threshold()

    def get_mode(self) -> BcMode:
        if self.force_bcast:
            return BcMode.BCAST
        if self.force_rcast:
            return BcMode.RCAST
        if self.bcast_support and self.rcast_support:
            return BcMode.SEL
        return BcMode.NONE

    def get_broadcast(self) -> dict[str, Any]:
        """``tipc link get broadcast``: the method name and, for AUTOSELECT only, the
        ratio (the kernel puts TIPC_NLA_PROP_BROADCAST_RATIO only with BCLINK_MODE_SEL)."""
        mode = self.get_mode()
        out: dict[str, Any] = {"method": _MODE_NAMES.get(mode, "NONE"), "mode": int(mode)}
        if mode & BcMode.SEL:
            out["ratio"] = self.rc_ratio
        return out

    def set_cluster_caps(self, caps: int) -> None:
        """The AND of every known node's capabilities (the kernel recomputes it when
        a node is created, changes caps or is deleted): drives rcast_support,
        MCAST_RBCTL hysteresis."""
        self.cluster_caps = caps & int(Cap.ALL)
        self.rcast_support = bool(caps & Cap.BCAST_RCAST)

    # ---- bearers
    def set_bearer(self, bearer_id: int, mtu: int, bcast_support: bool) -> None:
        """A bearer was enabled (or its MTU / remote-IP mode changed): UDP in unicast
        remote mode has no broadcast support, Ethernet and UDP multicast have it."""
        b = self.bearers.get(bearer_id)
        if b is None:
            self.bearers[bearer_id] = _Bearer(mtu, bcast_support)
        else:
            b.mtu, b.bcast_support = mtu, bcast_support
        self._select_primary()

    def remove_bearer(self, bearer_id: int) -> None:
        self.bearers.pop(bearer_id, None)
        self._select_primary()

    def inc_bearer_dst(self, bearer_id: int) -> None:
        """A link to some peer came up on this bearer (tipc_bcast_inc_bearer_dst_cnt)."""
        b = self.bearers.get(bearer_id)
        if b is None:
            b = self.bearers[bearer_id] = _Bearer(self.mtu, True)
        b.dests += 1
        self._select_primary()

    def dec_bearer_dst(self, bearer_id: int) -> None:
        b = self.bearers.get(bearer_id)
        if b is not None and b.dests > 0:
            b.dests -= 1
        self._select_primary()

    def _select_primary(self) -> None:
        all_dests = len(self.peers)
        self.primary_bearer = None
        self.bcast_support = True
        if not all_dests:
            return
        for bid in sorted(self.bearers):
            b = self.bearers[bid]
            if not b.dests:
                continue
            if b.mtu < self.mtu:
                self.mtu = b.mtu
                self._set_limits()
            self.bcast_support = self.bcast_support and b.bcast_support
            if b.dests < all_dests:
                continue
            self.primary_bearer = bid
            if (bid ^ self.own_addr) & 1:  # spread the primary choice over nodes
                break
        if self.primary_bearer is not None:
            self.bcast_support = self.bearers[self.primary_bearer].bcast_support

    def _calc_threshold(self) -> None:
        self.bc_threshold = 1 + (len(self.peers) * self.rc_ratio // 100)

    # ------------------------------------------------------------ peers
    def add_peer(self, addr: int, *, tolerance: int = 1500, caps: int = int(Cap.ALL),
                 bearer_id: int | None = None) -> Msg:
        """The peer node came up (tipc_bcast_add_peer).  Returns our BCAST_PROTOCOL
        init message for the node to send as the first sequenced packet on its
        unicast link (the link fills in ack/seqno/bcast_ack)."""
        old = self.peers.get(addr)
        if old is not None:
            self.remove_peer(addr)
        self.peers[addr] = BcPeer(addr=addr, acked=self.last_bcast, tolerance=tolerance, caps=caps)
        self._select_primary()
        self._calc_threshold()
        return self.build_init(addr)

    def build_init(self, addr: int) -> Msg:
        """tipc_link_build_bc_init_msg: last_bcast = our snd_nxt - 1, bc_ack_invalid."""
        return Msg.build(_USER_BCAST_PROTOCOL, 0, prevnode=self.own_addr,
                         orignode=self.own_addr, destnode=addr,
                         last_bcast=self.last_bcast, bc_ack_invalid=1)

    def remove_peer(self, addr: int) -> None:
        """The peer node was lost (tipc_bcast_remove_peer): it no longer owes acks;
        when no peer is left the link resets (seqnos restart at 1)."""
        p = self.peers.pop(addr, None)
        if p is None:
            return
        for e in self._transmq:
            e.pending.discard(addr)
        self._release()
        self._select_primary()
        self._calc_threshold()
        if not self.peers:
            self._reset()
        else:
            self._advance_backlog(0.0)

    def set_peer_tolerance(self, addr: int, tolerance: int) -> None:
        p = self.peers.get(addr)
        if p is not None:
            p.tolerance = tolerance

    def rcv_up(self, addr: int, up: bool = True) -> None:
        """Our receive link from ``addr`` came up (its BCAST_PROTOCOL init, or a name
        update over its unicast link, arrived) or went down."""
        p = self.peers.get(addr)
        if p is not None:
            p.rcv_up = up
            if not up:
                p.bc_peer_is_up = False

    def _reset(self) -> None:
        self.stats.resets += 1
        self._transmq.clear()
        self._backlog.clear()
        self._bl_len = [0] * 5
        self._target = [None] * 5
        self._snd_nxt = 1
        self._out.clear()
        for imp in range(5):
            if self._congested[imp]:
                self._congested[imp] = False
                self._events.append(BcastWakeup(imp))

    # ------------------------------------------------------------ sending
    def xmit(self, msg: Msg, now: float) -> bool:
        """Broadcast one message (tipc_bcast_xmit).  False means congested: the
        message *was* queued (or dropped, for SYSTEM overflow / no peers, counted);
        a data sender must wait for :class:`BcastWakeup` before sending more."""
        if not self.peers:
            self.stats.tx_no_peers += 1
            return True
        w = msg.w
        user = (w[0] >> 25) & 0xF
        imp = msg.importance
        if not 0 <= imp <= _SYSTEM:
            imp = _SYSTEM
        ok = True
        if self._bl_len[imp] >= self._bl_limit[imp]:
            if imp == _SYSTEM:
                self.stats.tx_overflow += 1
                return False
            self.stats.link_congs += 1
            self._congested[imp] = True
            ok = False
        size = (len(w) << 2) + len(msg.data)
        mss = self.mss
        if size > mss:
            from tipcpy.wire.fragment import fragment

            frags = fragment(msg, mss, imp, prevnode=self.own_addr, destnode=0)
            self.stats.sent_fragmented += 1
            self.stats.sent_fragments += len(frags)
            for f in frags:
                self._enqueue_raw(f.encode(), imp, _USER_FRAGMENTER, now)
        else:
            self._enqueue_raw(msg.encode(), imp, user, now)
        q = len(self._transmq) + len(self._backlog)
        if q > self.stats.max_queue_sz:
            self.stats.max_queue_sz = q
        return ok

    def _enqueue_raw(self, raw: bytes, imp: int, user: int, now: float) -> None:
        bl = self._backlog
        if not bl and len(self._transmq) < self.window:
            self._xmit_new(raw, now)
            return
        size = len(raw)
        mss = self.mss
        if user not in _NOT_BUNDLED and mss > INT_H_SIZE + size:
            t = self._target[imp]
            if t is not None and ((t.bsz + 3) & ~3) + size <= mss:
                if t.raws is None:
                    t.raws = [t.raw]
                    self.stats.sent_bundles += 1
                    self.stats.sent_bundled += 1
                t.raws.append(raw)
                t.bsz = ((t.bsz + 3) & ~3) + size
                self.stats.sent_bundled += 1
                return
            t = _Pending(imp, raw, INT_H_SIZE + size)
            self._target[imp] = t
        else:
            self._target[imp] = None
            t = _Pending(imp, raw, 0)
        bl.append(t)
        self._bl_len[imp] += 1

    def _stamp(self, raw: bytes, seq: int) -> bytes:
        """Broadcast-link header fields: non_seq, bcast_ack 0, ack 0 | seqno, net id."""
        buf = bytearray(raw)
        w0 = int.from_bytes(buf[0:4], "big") | _NON_SEQ
        buf[0:4] = w0.to_bytes(4, "big")
        buf[6:8] = b"\x00\x00"
        buf[8:12] = (seq & 0xFFFF).to_bytes(4, "big")
        hsize = ((w0 >> 21) & 0xF) << 2
        if hsize > 20:
            buf[20:24] = (self.net_id & 0xFFFFFFFF).to_bytes(4, "big")
        if hsize > 28:
            buf[28:32] = b"\x00\x00\x00\x00"
        return bytes(buf)

    def _xmit_new(self, raw: bytes, now: float) -> None:
        seq = self._snd_nxt
        raw = self._stamp(raw, seq)
        self._transmq.append(_TxEntry(seq, raw, set(self.peers), now))
        self._emit(raw, None)
        self._snd_nxt = (seq + 1) & 0xFFFF
        self.stats.sent_pkts += 1

    def _emit(self, raw: bytes, peer: int | None) -> None:
        """One copy to the primary bearer, else one to every bearer with dests
        (tipc_bcbase_xmit); ``peer`` set = a unicast retransmission."""
        if peer is not None:
            for bid in sorted(self.bearers):
                if self.bearers[bid].dests:
                    self._out.append((bid, peer, raw))
                    return
            return
        if self.primary_bearer is not None:
            self._out.append((self.primary_bearer, None, raw))
            return
        for bid in sorted(self.bearers):
            if self.bearers[bid].dests:
                self._out.append((bid, None, raw))

    def _make_bundle(self, raws: list[bytes], imp: int) -> bytes:
        return pack_bundle(raws, imp, self.own_addr, 0)

    def _advance_backlog(self, now: float) -> None:
        bl = self._backlog
        while bl and len(self._transmq) < self.window:
            e = bl.pop(0)
            self._bl_len[e.imp] -= 1
            if self._target[e.imp] is e:
                self._target[e.imp] = None
            if e.raws is None:
                self._xmit_new(e.raw, now)
            else:
                self._xmit_new(self._make_bundle(e.raws, e.imp), now)
        for imp in range(4):
            if self._congested[imp] and self._bl_len[imp] < self._bl_limit[imp]:
                self._congested[imp] = False
                self._events.append(BcastWakeup(imp))

    def _release(self) -> int:
        tq = self._transmq
        n0 = len(tq)
        if tq and any(not e.pending for e in tq):
            self._transmq = [e for e in tq if e.pending]
        return n0 - len(self._transmq)

    # ------------------------------------------------------------ acks and NACKs
    def ack_rcv(self, addr: int, msg: Msg, now: float) -> None:
        """A non-LINK_PROTOCOL packet from ``addr`` on its unicast link whose
        ``bcast_ack`` differs from what we know (tipc_bcast_ack_rcv): release."""
        p = self.peers.get(addr)
        if p is None:
            self.stats.rx_unknown_peer += 1
            return
        w = msg.w
        user = (w[0] >> 25) & 0xF
        if user in _BC_ACK_INVALID_USERS and len(w) > 5 and (w[5] >> 14) & 1:
            return
        acked = w[1] & 0xFFFF
        if acked == p.acked:
            return
        self._bc_ack_rcv(p, acked, 0, [], now)

    def proto_rcv(self, addr: int, msg: Msg, now: float, *, rcv_up: bool | None = None) -> None:
        """Every LINK_PROTOCOL message from ``addr`` (tipc_bcast_sync_rcv, send side):
        a STATE without bc_ack_invalid carries the peer's ``bcast_ack``, ``bc_gap``
        and broadcast Gap-ACK blocks; it also opens the peer (``bc_peer_is_up``)
        once it acks our unicast packet 1.  ``rcv_up``: whether our receive link
        from the peer is up, if the caller wants to refresh it here."""
        p = self.peers.get(addr)
        if p is None:
            self.stats.rx_unknown_peer += 1
            return
        if rcv_up is not None:
            self.rcv_up(addr, rcv_up)
        w = msg.w
        if len(w) < 10:
            self.stats.rx_malformed += 1
            return
        mtyp = w[1] >> 29
        if mtyp != 0:  # RESET/ACTIVATE: the receive side's legacy init, nothing here
            return
        if (w[5] >> 14) & 1:  # bc_ack_invalid
            self.stats.rx_not_synched += 1
            return
        blocks: list[tuple[int, int]] = []
        if p.caps & Cap.GAP_ACK_BLOCK:
            rec = parse_gap_ack_record(msg.data)
            if rec is None:
                self.stats.rx_malformed += 1
                return
            blocks = rec[0]
        acked = w[1] & 0xFFFF
        gap = w[8] & BC_GAP_MASK
        self._bc_ack_rcv(p, acked, gap, blocks, now)
        # tipc_link_bc_sync_rcv: open when the peer acknowledges our init (pkt #1)
        if p.rcv_up and (w[2] >> 16):
            p.bc_peer_is_up = True

    def _bad_ack(self, p: BcPeer, now: float) -> None:
        """A peer that keeps acking broadcast packets we never sent has a receive
        state that no longer matches our link: its sync point was corrupted on the
        way (TIPC has no checksum of its own).  It will never ask for what we still
        hold for it, so nothing would ever fail it; once the acks persist (BAD_ACKS
        of them, none sane between, over RETR_FAIL_MULT x tolerance: the bound of a
        retransmission failure, and long past a peer that restarted and is still
        acking our previous incarnation's packets for a moment) it is failed as a
        retransmission failure is, and the links to it resynchronise everything."""
        if not p.bad_ack_n:
            p.bad_ack_at = now
        p.bad_ack_n += 1
        if p.bad_ack_n < BAD_ACKS or \
                now - p.bad_ack_at < RETR_FAIL_MULT * p.tolerance / 1000.0:
            return
        if not any(p.addr in e.pending for e in self._transmq):
            return  # nothing owed to it: harmless until we send again
        p.bad_ack_n = 0
        self._fail_peer(p)

    def _fail_peer(self, p: BcPeer) -> None:
        """Once per peer: stop counting it and ask the node to reset its links."""
        if not p.failed:
            p.failed = True
            p.rcv_up = p.bc_peer_is_up = False
            self._events.append(BcastPeerFailure(p.addr))

    def nack_rcv(self, addr: int, msg: Msg, now: float) -> None:
        """A legacy BCAST_PROTOCOL NACK that arrived on a peer's broadcast link
        (tipc_link_bc_nack_rcv).  ``addr`` = its prevnode; only NACKs to us act."""
        w = msg.w
        if len(w) < 8 or (w[1] >> 29) != 0:
            self.stats.rx_malformed += 1
            return
        if w[7] != self.own_addr:
            return  # for another node: its receive side may suppress its own NACK
        p = self.peers.get(addr)
        if p is None:
            self.stats.rx_unknown_peer += 1
            return
        acked = w[1] & 0xFFFF
        to = w[2] & 0xFFFF
        self._bc_ack_rcv(p, acked, (to - acked) & 0xFFFF, [], now)

    def _bc_ack_rcv(self, p: BcPeer, acked: int, gap: int,
                    blocks: list[tuple[int, int]], now: float) -> None:
        """tipc_link_bc_ack_rcv + the broadcast half of tipc_link_advance_transmq."""
        if not p.rcv_up or not p.bc_peer_is_up:
            self.stats.rx_not_synched += 1
            return
        if gap:
            self.stats.recv_nacks += 1
            p.recv_nacks += 1
        if _less(acked, p.acked) or (acked == p.acked and not gap and not blocks):
            return
        last = self.last_bcast
        if _more(acked, last) or (gap and _more((acked + gap) & 0xFFFF, last)):
            self.stats.rx_malformed += 1
            self._bad_ack(p, now)
            return
        p.bad_ack_n = 0
        # validate the blocks: strictly forward, never beyond what we sent
        prev_end = (acked + gap) & 0xFFFF
        for a, g in blocks:
            if not _less(prev_end, a) or _more(a, last) or _more((a + g) & 0xFFFF, last):
                self.stats.rx_malformed += 1
                return
            prev_end = (a + g) & 0xFFFF
        # acked ranges: (.., acked] and each block's (prev_end, ack]; missing:
        # (acked, acked+gap] and each block's (ack, ack+gap]
        addr = p.addr
        ranges = [(acked, gap)] + blocks
        retr: list[_TxEntry] = []
        first_missing = (acked + 1) & 0xFFFF
        for e in self._transmq:
            if addr not in e.pending:
                continue
            seq = e.seq
            lo = p.acked
            verdict = 0  # 0 unknown, 1 acked, 2 missing
            for a, g in ranges:
                if _less(lo, seq) and _less_eq(seq, a):
                    verdict = 1
                    break
                if _less(a, seq) and _less_eq(seq, (a + g) & 0xFFFF):
                    verdict = 2
                    break
                lo = (a + g) & 0xFFFF
            if verdict == 1:
                e.pending.discard(addr)
            elif verdict == 2:
                retr.append(e)
        for e in retr:
            if e.seq == first_missing and e.retr_cnt and \
                    now - e.retr_stamp > RETR_FAIL_MULT * p.tolerance / 1000.0:
                self._fail_peer(p)
                retr = []
                break
        for e in retr:
            if now < e.nxt_retr:
                continue
            e.nxt_retr = now + BC_RETR_INTERVAL
            self._emit(e.raw, addr if self.retr_unicast else None)
            self.stats.retransmitted += 1
            p.retransmitted += 1
            if not e.retr_cnt:
                e.retr_stamp = now
            e.retr_cnt += 1
        if _more(acked, p.acked):
            p.acked = acked
        self._release()
        if self._backlog:
            self._advance_backlog(now)

    # ------------------------------------------------------------ method selection
    def select_xmit_method(self, method: McMethod, dests: int, now: float) -> bool:
        """tipc_bcast_select_xmit_method for a multicast to ``dests`` remote nodes;
        updates ``method`` in place and returns its ``rcast``."""
        if not self.bcast_support:
            method.rcast = True
            return True
        if not self.rcast_support:
            method.rcast = False
            return False
        exp = method.expires
        method.expires = now + METHOD_EXPIRE
        if method.mandatory:
            return method.rcast
        if not (self.cluster_caps & Cap.MCAST_RBCTL) and now < exp:
            return method.rcast
        if self.force_bcast:
            method.rcast = False
        elif self.force_rcast:
            method.rcast = True
        else:
            method.rcast = dests <= self.bc_threshold
        return method.rcast

    def mcast_plan(self, method: McMethod, dests: int, now: float) -> tuple[bool, bool]:
        """(rcast, sync): the method for this multicast, and whether it changed so
        the caller must first send :func:`build_mcast_sync`'s dummy by the *old*
        method (only when the whole cluster has TIPC_MCAST_RBCTL)."""
        old = method.rcast
        rcast = self.select_xmit_method(method, dests, now)
        sync = rcast != old and bool(self.cluster_caps & Cap.MCAST_RBCTL)
        return rcast, sync

    # ------------------------------------------------------------ driving
    def tick(self, now: float) -> None:
        """Queue-size profiling (the unicast link does it per timer tick)."""
        self.stats.accu_queue_sz += len(self._transmq)
        self.stats.queue_sz_counts += 1

    def next_deadline(self) -> float | None:
        """None: the broadcast link has no timer of its own.  Retransmissions are
        driven by the peers' STATEs, which the unicast links' timers provoke
        (:meth:`peer_needs_state`)."""
        return None

    def take_outgoing(self) -> list[tuple[int, int | None, bytes]]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[BcastWakeup | BcastPeerFailure]:
        ev, self._events = self._events, []
        return ev

    def stats_dict(self) -> dict[str, Any]:
        """One entry for ``tipc link stat show`` (the shape Stack.link_stats returns;
        tipcpy/runtime/ops/link.py cli_link_stats reads the counter names)."""
        return {"name": BCLINK_NAME, "up": True, "broadcast": True,
                "window": self.max_win, "mtu": self.mtu,
                "stats": self.stats.as_dict(), **self.get_broadcast()}


# ---------------------------------------------------------------- name updates
def named_use_bcast(up_peer_caps: list[int], mode: BcMode) -> bool:
    """tipc_node_broadcast: send a single name update on the broadcast link only when
    no up peer lacks TIPC_NAMED_BCAST (the name table's ``rc_dests`` == 0) and the
    mode is not forced REPLICAST; else one copy per up peer over its unicast link.
    The bulk at link-up always goes on the unicast link."""
    rc_dests = sum(1 for c in up_peer_caps if not c & Cap.NAMED_BCAST)
    return rc_dests == 0 and mode != BcMode.RCAST


# ---------------------------------------------------------------- multicast sync
def build_mcast_sync(msg: Msg) -> Msg:
    """tipc_mcast_send_sync: mark ``msg`` (a TIPC_MCAST_MSG, or the first fragment's
    inner header's owner) with SYN and return the header-only dummy to send by the
    *old* method: SYN, size 44, is_rcast inverted, errcode TIPC_ERR_NO_PORT."""
    w = msg.w
    if len(w) < MCAST_H_SIZE // 4:
        raise ValueError("multicast message needs a 44-byte header")
    msg.syn = 1
    dummy = Msg.build(0, _MCAST_MSG, hsize=MCAST_H_SIZE)
    dummy.w[:] = list(w[: MCAST_H_SIZE // 4])
    dummy.w[0] = (dummy.w[0] & ~0x1FFFF & ~(0xF << 21)) | ((MCAST_H_SIZE // 4) << 21) | MCAST_H_SIZE
    rc = (w[0] >> 18) & 1
    dummy.w[0] = (dummy.w[0] & ~(1 << 18)) | ((rc ^ 1) << 18)
    dummy.w[1] = (dummy.w[1] & ~(0xF << 25)) | (_TIPC_ERR_NO_PORT << 25)
    dummy.data = b""
    return dummy


# ---------------------------------------------------------------- receive-side helpers
def bc_rcv_gap(rcv_nxt: int, peer_snd_nxt: int, deferred: list[int] | set[int] | dict[int, Any]) -> int:
    """link_bc_rcv_gap: packets missing before the first deferred one, or up to the
    sender's announced snd_nxt when nothing is deferred.  The caller masks it to
    10 bits for w8 (``& 0x3FF``), as the kernel's msg_set_bc_gap does."""
    gap = 0
    if _more(peer_snd_nxt, rcv_nxt):
        gap = (peer_snd_nxt - rcv_nxt) & 0xFFFF
    if deferred:
        first = min(deferred, key=lambda q: (q - rcv_nxt) & 0xFFFF)
        gap = (first - rcv_nxt) & 0xFFFF
    return gap


def bc_gap_ack_blocks(rcv_nxt: int, deferred: list[int] | set[int] | dict[int, Any]) -> list[tuple[int, int]]:
    """__tipc_build_gap_ack_blks over the broadcast receive link's deferred queue:
    one (last seqno of a received run, number missing after it) per hole, then
    (highest deferred, 0); at most 64."""
    if not deferred:
        return []
    seqs = sorted(deferred, key=lambda q: (q - rcv_nxt) & 0xFFFF)
    blocks: list[tuple[int, int]] = []
    expect = seqs[0]
    for q in seqs:
        if q != expect:
            blocks.append(((expect - 1) & 0xFFFF, (q - expect) & 0xFFFF))
            if len(blocks) >= MAX_BC_GAP_BLOCKS:
                return blocks
        expect = (q + 1) & 0xFFFF
    blocks.append((seqs[-1], 0))
    return blocks[:MAX_BC_GAP_BLOCKS]


def gap_ack_record(bc_blocks: list[tuple[int, int]], uc_blocks: list[tuple[int, int]]) -> bytes:
    """A STATE's Gap-ACK record: len, ugack_cnt, bgack_cnt, the broadcast blocks
    first, then the unicast ones (tipc_build_gap_ack_blks)."""
    n = len(bc_blocks) + len(uc_blocks)
    out = [_GAP_HDR.pack(4 + 4 * n, len(uc_blocks), len(bc_blocks))]
    out += [_GAP_BLK.pack(a & 0xFFFF, g & 0xFFFF) for a, g in bc_blocks]
    out += [_GAP_BLK.pack(a & 0xFFFF, g & 0xFFFF) for a, g in uc_blocks]
    return b"".join(out)


def parse_gap_ack_record(data: bytes) -> tuple[list[tuple[int, int]], list[tuple[int, int]]] | None:
    """(broadcast blocks, unicast blocks) from a STATE payload, None if malformed.

    Like tipc_get_gap_ack_blks: no record (< 4 bytes) = no blocks; a length beyond
    the payload = drop the STATE; a length matching only the unicast count is a
    peer without broadcast blocks."""
    if len(data) < 4:
        return [], []
    ln, ucnt, bcnt = _GAP_HDR.unpack_from(data, 0)
    if ln > len(data) or ucnt > MAX_BC_GAP_BLOCKS or bcnt > MAX_BC_GAP_BLOCKS:
        return None
    if ln == 4 + 4 * (ucnt + bcnt):
        first_uc = bcnt
    elif ln == 4 + 4 * ucnt:
        bcnt, first_uc = 0, 0
    else:
        return None
    bc = [_GAP_BLK.unpack_from(data, 4 + 4 * i) for i in range(bcnt)]
    uc = [_GAP_BLK.unpack_from(data, 4 + 4 * (first_uc + i)) for i in range(ucnt)]
    return [(int(a), int(g)) for a, g in bc], [(int(a), int(g)) for a, g in uc]


def bc_ack_due(rcv_nxt: int, own_addr: int) -> bool:
    """tipc_link_build_state_msg on a broadcast receive link (after 16 in-order
    packets): the receivers take turns so the sender is not flooded - a STATE is
    due only when the low 4 bits of rcv_nxt XOR our address are all ones."""
    return ((rcv_nxt ^ own_addr) & 0xF) == 0xF


def bc_nack_due(deferred_recv: int, own_addr: int) -> bool:
    """tipc_link_build_nack_msg on a broadcast receive link: after a packet was
    deferred (``deferred_recv`` already incremented), a STATE is due when its low
    4 bits equal our address's."""
    return (deferred_recv & 0xF) == (own_addr & 0xF)


@dataclass(slots=True)
class SyncResult:
    send_state: bool = False
    """Send a STATE (with bcast_ack, bc_gap and broadcast Gap-ACK blocks) now,
    unless the message was a probe (its reply is a STATE anyway)."""
    legacy_nack: Msg | None = None
    """A BCAST_PROTOCOL NACK to broadcast (only to peers without BCAST_STATE_NACK)."""


_NACK_CONDITIONAL, _NACK_UNCONDITIONAL, _NACK_SUPPRESS = 0, 1, 2


@dataclass
class BcRcvNack:
    """The NACK half of a broadcast *receive* link (tipc_link_bc_sync_rcv): the
    sender's announced ``snd_nxt`` (from ``last_bcast`` in its protocol messages)
    and the legacy NACK state.  The node keeps one per peer next to its rcv_nxt and
    deferred queue and feeds it every LINK_PROTOCOL STATE from that peer."""

    snd_nxt: int = 1
    nack_state: int = _NACK_CONDITIONAL
    window: int = BCLINK_WIN_DEFAULT
    rx_out_of_window: int = 0

    def gap(self, rcv_nxt: int, deferred: list[int] | set[int] | dict[int, Any]) -> int:
        return bc_rcv_gap(rcv_nxt, self.snd_nxt, deferred)

    def sync_rcv(self, msg: Msg, *, rcv_up: bool, rcv_nxt: int,
                 deferred: list[int] | set[int] | dict[int, Any], peer_caps: int,
                 own_addr: int) -> SyncResult:
        """Feed a LINK_PROTOCOL message from the peer (only STATE without
        bc_ack_invalid does anything).  Returns what to send."""
        res = SyncResult()
        w = msg.w
        if len(w) < 10 or (w[1] >> 29) != 0 or (w[5] >> 14) & 1:
            return res
        if not rcv_up:
            return res
        peers_snd_nxt = ((w[4] >> 16) + 1) & 0xFFFF
        if _more(peers_snd_nxt, (rcv_nxt + self.window) & 0xFFFF):
            self.rx_out_of_window += 1
            return res
        self.snd_nxt = peers_snd_nxt
        if bc_rcv_gap(rcv_nxt, peers_snd_nxt, deferred):
            res.send_state = True
        if peer_caps & Cap.BCAST_STATE_NACK:
            return res
        res.send_state = False
        if not _more(peers_snd_nxt, rcv_nxt):
            self.nack_state = _NACK_CONDITIONAL
            return res
        if self.nack_state == _NACK_SUPPRESS:
            self.nack_state = _NACK_UNCONDITIONAL
            return res
        if self.nack_state == _NACK_CONDITIONAL:
            self.nack_state = _NACK_UNCONDITIONAL
            if ((peers_snd_nxt - rcv_nxt) & 0xFFFF) < MIN_LINK_WIN:
                return res
        res.legacy_nack = self.build_legacy_nack(rcv_nxt, peers_snd_nxt, deferred,
                                                 own_addr=own_addr, peer=w[3])
        self.nack_state = _NACK_SUPPRESS
        return res

    def build_legacy_nack(self, rcv_nxt: int, peers_snd_nxt: int,
                          deferred: list[int] | set[int] | dict[int, Any], *,
                          own_addr: int, peer: int) -> Msg:
        """tipc_link_build_bc_proto_msg(bcast=true): bcast_ack = bcgap_after =
        rcv_nxt - 1, bcgap_to = first deferred - 1 (else peer's snd_nxt - 1),
        non_seq set (it is broadcast; the stack adds the net id in w5)."""
        ack = (rcv_nxt - 1) & 0xFFFF
        gap_to = (peers_snd_nxt - 1) & 0xFFFF
        if deferred:
            first = min(deferred, key=lambda q: (q - rcv_nxt) & 0xFFFF)
            gap_to = (first - 1) & 0xFFFF
        m = Msg.build(_USER_BCAST_PROTOCOL, 0, prevnode=own_addr, orignode=own_addr,
                      destnode=peer, bcast_ack=ack, bcgap_after=ack, bcgap_to=gap_to,
                      non_seq=1)
        return m

    def peek_nack(self, msg: Msg, *, rcv_nxt: int, own_addr: int) -> None:
        """A legacy NACK from *another* receiver for the same sender: suppress ours at
        the next sync if it covers what we miss (tipc_link_bc_nack_rcv)."""
        w = msg.w
        if len(w) < 8 or w[7] == own_addr:
            return
        acked = w[1] & 0xFFFF
        frm = (acked + 1) & 0xFFFF
        peers_snd_nxt = ((w[2] & 0xFFFF) + 1) & 0xFFFF
        if _more(peers_snd_nxt, rcv_nxt) and not _less(rcv_nxt, frm):
            self.nack_state = _NACK_SUPPRESS
