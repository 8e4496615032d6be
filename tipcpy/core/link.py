"""One reliable TIPC link endpoint (bearer x peer), sans-IO.

This is the kernel's ``net/tipc/link.c`` re-told for a userspace node that must be
wire-compatible with Linux kernel TIPC (facts from the kernel and from §9 of the
reference; the code is our own):

* **FSM** named after the kernel's states (:class:`LinkState`), driven by the
  kernel's events (:class:`LinkEvent`) through one table (:data:`TRANSITIONS`).
  RESET sends RESET_MSG on its first 5 ticks and then every 16th; a peer RESET moves
  to ESTABLISHING, which sends ACTIVATE each tick; ACTIVATE / STATE / data received
  in ESTABLISHING bring the link up (a data packet that does so is dropped: the peer
  retransmits it).
* **Sessions**: random u16 at creation, +1 on every reset.  RESET is accepted when
  not in session or newer, ACTIVATE when not older, STATE only with the current
  session (and, with ``LINK_PROTO_SEQNO``, a state seqno that does not go back).
* **Reliability**: 16-bit modular seqnos from 1 after each reset; a fixed send
  window; a per-importance backlog (LOW 2x, MEDIUM 4x, HIGH 6x, CRITICAL 8x the
  window; SYSTEM never refused); ack piggybacked on every packet and sent in a
  STATE every 16 in-sequence packets or on the timer; a sorted deferred queue;
  NACK (STATE with ``seq_gap`` and Gap-ACK blocks) at the first deferred packet;
  retransmission at most once per 1 ms per packet; reset after 10 x tolerance
  without progress on a retransmitted head.
* **Supervision**: the tick interval is ``min(tolerance/4, 500 ms)``.  A tick probes
  the peer when nothing was received since the previous one, when packets are
  missing, or when nothing new was sent (an idle link: one probe per tick and side,
  as the kernel); the link fails at the first tick at least ``tolerance`` after the
  last packet accepted from the peer, i.e. after between ``tolerance`` and
  ``tolerance + interval`` of silence.
* **Failover and synch** (the node decides, node.py): a link going down leaves a
  :class:`LinkResidue`; :meth:`Link.tnl_xmit` wraps it in TUNNEL_PROTOCOL
  FAILOVER_MSGs on the parallel link (tunnel fragments with TIPC_TUNNEL_ENHANCED)
  and the receiving link delivers them by the failed link's seqnos from its
  ``drop_point``; a SYNCH_MSG is header-only with the synch point, and delivery
  behind it waits in the deferred queue until :meth:`Link.resume`.
* **Loss recovery without the tick**: the first gap NACKs at once and again every
  ms while it lasts; an unacked transmit-queue head probes the peer after about two
  round trips, and the peer's answer (gap and Gap-ACK blocks) drives retransmission.
* **Fragmentation and bundling** exactly where the kernel does them (MSS = MTU -
  40 - 32, as on a Linux 6.1 kernel built with CONFIG_TIPC_CRYPTO), and the receive
  side splits bundles and joins fragments before :class:`Delivered`.

The link does I/O only through :meth:`Link.take_outgoing` (bytes for the peer) and
:meth:`Link.take_events`; time comes in as ``now`` (seconds) and randomness only
from the ``rng`` given.  The broadcast link is the node's business: the node sets
``bcast_ack``, ``bc_ack_invalid``, ``last_bcast``, ``bc_gap`` and ``peer_node_up``
and the link writes them into every packet; the node reads the peer's broadcast
fields from the packets it decodes before handing them to :meth:`Link.receive`.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from dataclasses import dataclass, field, fields
from enum import Enum, IntEnum, auto
from typing import Any

from tipcpy.core._event import SlotEvent
from tipcpy.core.discover import OWN_CAPS
from tipcpy.core.monitor import Monitor
from tipcpy.wire import DecodeError, Msg, decode
from tipcpy.wire.bundle import pack_bundle
from tipcpy.wire.consts import (
    BASIC_H_SIZE,
    INT_H_SIZE,
    MIN_H_SIZE,
    TIPC_MAX_IF_NAME,
    TIPC_MAX_LINK_PRI,
    TIPC_MAX_LINK_TOL_MS,
    TIPC_MAX_LINK_WIN,
    TIPC_MAX_PUBL,
    TIPC_MIN_LINK_TOL_MS,
    TIPC_MIN_LINK_WIN,
    Cap,
    ErrCode,
)
from tipcpy.wire.fragment import Reassembler
from tipcpy.wire.fragment import fragment as _fragment
from tipcpy.wire.msg import (
    ACK_MASK,
    ACK_SHIFT,
    BCAST_ACK_MASK,
    ERRCODE_MASK,
    ERRCODE_SHIFT,
    HSIZE_SHIFT,
    KEEPALIVE_SHIFT,
    LINKPRIO_MASK,
    LINKPRIO_SHIFT,
    MAX_PKT_MASK,
    MAX_PKT_SHIFT,
    MSGCNT_SHIFT,
    MTYPE_SHIFT,
    NON_SEQ_BIT,
    SEQ_GAP_MASK,
    SEQ_GAP_SHIFT,
    TOLERANCE_MASK,
    USER_MASK,
    USER_SHIFT,
    VERSION_SHIFT,
    W0_KEEP,
)
from tipcpy.wire.msg import decode_at as _decode_at

__all__ = [
    "OWN_CAPS",
    "Link",
    "LinkState",
    "LinkEvent",
    "TRANSITIONS",
    "link_fsm",
    "link_goes_down",
    "LinkStats",
    "LinkRtt",
    "LinkUp",
    "LinkDown",
    "Delivered",
    "LinkWakeup",
    "LinkEventType",
    "LinkResidue",
    "MIN_PEER_MTU",
    "CRYPTO_OVERHEAD",
]

# ---------------------------------------------------------------- constants
CRYPTO_OVERHEAD = 32
"""EMSG_OVERHEAD: a CONFIG_TIPC_CRYPTO kernel subtracts it from the MSS even without
a key (§2.9); doing the same keeps our packets the size a kernel expects."""
MIN_PEER_MTU = 256
"""RESET/ACTIVATE advertising a smaller max_pkt are ignored (the kernel ignores those
below the bearer's minimum MTU); below this our fragments would be mostly header."""
RCV_WINDOW = 8191
"""Receiver keeps packets in [rcv_nxt, rcv_nxt + 8191] (TIPC_MAX_LINK_WIN)."""
ACK_RATE = 16
"""Send a STATE (ack) after this many in-sequence packets (TIPC_MIN_LINK_WIN)."""
NACK_FIRST, NACK_EVERY = 1, 16
"""NACK at the first deferred packet (the kernel waits for 3: a lost packet then costs
a round trip more, and under heavy loss far more), then every 16 more."""
NACK_REPEAT = 0.001
"""While packets stay missing, a later out-of-order arrival NACKs again after this
long (the retransmission may have been lost too); the sender retransmits a packet
at most once per RETR_INTERVAL anyway."""
RPROBE_MIN = 0.001
RPROBE_DEFAULT = 0.02
"""Retransmission probe: when the head of the transmit queue has not been acked for
about two round trips (at least 1 ms, the per-packet retransmission limit; 20 ms
before the first measured round trip),
ask the peer for its state with a probe instead of waiting for the next tick.  The
peer's reply carries the gap (and Gap-ACK blocks), which drives the retransmission
(what a kernel also answers to a probe).  Backs off x2 up to the tick interval."""
RETR_INTERVAL = 0.001
"""TIPC_UC_RETR_TIME: a packet is retransmitted at most once per millisecond."""
RETR_FAIL_MULT = 10
"""Link fails when a retransmitted head stays unacked for 10 x tolerance."""
STATE_RESYNCH = 4
"""Consecutive STATE seqnos, all older than the last STATE taken, after which we
believe the peer's counter rather than ours (not in the kernel: it trusts the
media's checksum)."""
UNSENT_MARGIN, UNSENT_AGE = 1024, 0.1
"""A deferred packet this far beyond the peer's snd_nxt, for this long, is dropped
(see Link._drop_unsent)."""
UNSERVABLE_NACKS, UNSERVABLE_SECS = 3, 0.05
"""NACKs for packets we no longer hold, and for how long, before the link fails
(see Link._nack_unservable)."""
MAX_UC_GAP_BLOCKS = 64
KEEPALIVE_MAX = 0.5
PROTO_SEQNO_OFFSET = 32767


def keepalive_for(tolerance_ms: float) -> float:
    """A link's timer interval in seconds for a tolerance: a quarter of it, at most
    KEEPALIVE_MAX (kernel tipc_node_calculate_timer)."""
    return min(tolerance_ms / 4000.0, KEEPALIVE_MAX)


_USER_BCAST_PROTOCOL = 5
_USER_BUNDLER = 6
_USER_LINK_PROTOCOL = 7
_USER_TUNNEL = 10
_USER_FRAGMENTER = 12
_NOT_BUNDLED = frozenset({_USER_BCAST_PROTOCOL, _USER_BUNDLER, _USER_TUNNEL, _USER_FRAGMENTER})
_INNER_USERS = frozenset({_USER_BUNDLER, _USER_TUNNEL, _USER_FRAGMENTER})
"""Sequenced users the link opens itself instead of delivering."""
_SYSTEM = 4

_STATE_MSG, _RESET_MSG, _ACTIVATE_MSG = 0, 1, 2
_W0_PROTO = (2 << VERSION_SHIFT) | (_USER_LINK_PROTOCOL << USER_SHIFT) | ((INT_H_SIZE // 4) << HSIZE_SHIFT)
"""w0 of every link protocol message (0x4f400000) before keepalive bit and size."""
_PROTO_HDR = struct.Struct(">10I")
_PACK_ACKS = struct.Struct(">HHH").pack_into
"""bcast_ack (w1[15:0]), ack and seqno (w2) are bytes 6..11 of every header."""
_GAP_HDR = struct.Struct(">HBB")
_GAP_BLK = struct.Struct(">HH")
_EMPTY_GAP_ACK = b"\x00\x04\x00\x00"
_W0_TUNNEL = (2 << VERSION_SHIFT) | (_USER_TUNNEL << USER_SHIFT) | ((INT_H_SIZE // 4) << HSIZE_SHIFT)
SYNCH_MSG, FAILOVER_MSG = 0, 1
"""TUNNEL_PROTOCOL message types."""
_MAX_FO_DEFERRED = 8192
"""Out-of-order tunnelled packets kept while failing over (the failed link's window)."""
_HDRS = [struct.Struct(f">{n}I") for n in range(16)]
# w5 of LINK_PROTOCOL and TUNNEL_PROTOCOL (msg.h); w9[31:16] of BUNDLER / TUNNEL
_SESSION_SHIFT = 16
_BC_ACK_INVALID_SHIFT = 14
_STOPPING_SHIFT = 13
_REDUNDANT_SHIFT = 12
_BEARER_ID_SHIFT, _BEARER_ID_MASK = 9, 0x7
_NET_PLANE_SHIFT, _NET_PLANE_MASK = 1, 0x7
_DEST_SESSION_VALID_BIT = 1 << 16  # ACTIVATE w1
_FRAGM_NO_SHIFT, _NOF_FRAGMS_MASK = 16, 0xFFFF  # tunnel fragments, w4


def _align4(n: int) -> int:
    return (n + 3) & ~3


# ---------------------------------------------------------------- FSM
class LinkState(IntEnum):
    """Kernel link FSM states; the values are the kernel's (link.c) so that traces and
    ``tipc link`` output line up."""

    ESTABLISHED = 0xE
    ESTABLISHING = 0xE0
    RESET = 0x100
    RESETTING = 0x2000
    PEER_RESET = 0xD0000
    FAILINGOVER = 0xF00000
    SYNCHING = 0xC000000


class LinkEvent(Enum):
    """The kernel's link FSM events (``LINK_*_EVT``)."""

    ESTABLISH = auto()
    PEER_RESET = auto()
    FAILURE = auto()
    RESET = auto()
    FAILOVER_BEGIN = auto()
    FAILOVER_END = auto()
    SYNCH_BEGIN = auto()
    SYNCH_END = auto()


_S, _E = LinkState, LinkEvent
TRANSITIONS: dict[tuple[LinkState, LinkEvent], LinkState] = {
    # (state, event): next state, the kernel's tipc_link_fsm_evt().  A legal event
    # that changes nothing maps to its own state; absent pairs are illegal: counted
    # (Link.illegal_evts) and the state left alone, as the kernel does.
    (_S.RESETTING, _E.PEER_RESET): _S.PEER_RESET,
    (_S.RESETTING, _E.RESET): _S.RESET,
    (_S.RESET, _E.PEER_RESET): _S.ESTABLISHING,
    (_S.RESET, _E.FAILOVER_BEGIN): _S.FAILINGOVER,
    (_S.RESET, _E.FAILURE): _S.RESET,
    (_S.RESET, _E.RESET): _S.RESET,
    (_S.RESET, _E.ESTABLISH): _S.RESET,
    (_S.RESET, _E.FAILOVER_END): _S.RESET,
    (_S.PEER_RESET, _E.RESET): _S.ESTABLISHING,
    (_S.PEER_RESET, _E.PEER_RESET): _S.PEER_RESET,
    (_S.PEER_RESET, _E.ESTABLISH): _S.PEER_RESET,
    (_S.PEER_RESET, _E.FAILURE): _S.PEER_RESET,
    (_S.FAILINGOVER, _E.FAILOVER_END): _S.RESET,
    (_S.FAILINGOVER, _E.PEER_RESET): _S.FAILINGOVER,
    (_S.FAILINGOVER, _E.RESET): _S.FAILINGOVER,
    (_S.FAILINGOVER, _E.ESTABLISH): _S.FAILINGOVER,
    (_S.FAILINGOVER, _E.FAILURE): _S.FAILINGOVER,
    (_S.ESTABLISHING, _E.ESTABLISH): _S.ESTABLISHED,
    (_S.ESTABLISHING, _E.FAILOVER_BEGIN): _S.FAILINGOVER,
    (_S.ESTABLISHING, _E.RESET): _S.RESET,
    (_S.ESTABLISHING, _E.FAILURE): _S.ESTABLISHING,
    (_S.ESTABLISHING, _E.PEER_RESET): _S.ESTABLISHING,
    (_S.ESTABLISHING, _E.SYNCH_BEGIN): _S.ESTABLISHING,
    (_S.ESTABLISHING, _E.FAILOVER_END): _S.ESTABLISHING,
    (_S.ESTABLISHED, _E.PEER_RESET): _S.PEER_RESET,
    (_S.ESTABLISHED, _E.FAILURE): _S.RESETTING,
    (_S.ESTABLISHED, _E.RESET): _S.RESET,
    (_S.ESTABLISHED, _E.ESTABLISH): _S.ESTABLISHED,
    (_S.ESTABLISHED, _E.SYNCH_END): _S.ESTABLISHED,
    (_S.ESTABLISHED, _E.SYNCH_BEGIN): _S.SYNCHING,
    (_S.SYNCHING, _E.PEER_RESET): _S.PEER_RESET,
    (_S.SYNCHING, _E.FAILURE): _S.RESETTING,
    (_S.SYNCHING, _E.RESET): _S.RESET,
    (_S.SYNCHING, _E.ESTABLISH): _S.SYNCHING,
    (_S.SYNCHING, _E.SYNCH_BEGIN): _S.SYNCHING,
    (_S.SYNCHING, _E.SYNCH_END): _S.ESTABLISHED,
}
_DOWN_EVTS = frozenset({_E.PEER_RESET, _E.FAILURE})
"""From an up state these take the link down (the kernel's TIPC_LINK_DOWN_EVT)."""
del _S, _E


def link_fsm(state: LinkState, evt: LinkEvent) -> LinkState | None:
    """Next state, or None for an illegal event."""
    return TRANSITIONS.get((state, evt))


def link_goes_down(state: LinkState, evt: LinkEvent) -> bool:
    """Whether ``evt`` in ``state`` takes an up link down (TIPC_LINK_DOWN_EVT)."""
    nxt = TRANSITIONS.get((state, evt))
    return nxt is not None and state in _UP_STATES and nxt not in _UP_STATES \
        and evt in _DOWN_EVTS


_UP_STATES = frozenset({LinkState.ESTABLISHED, LinkState.SYNCHING})
_BLOCKED_STATES = frozenset({LinkState.RESETTING, LinkState.PEER_RESET, LinkState.FAILINGOVER})


# ---------------------------------------------------------------- events
class LinkUp(SlotEvent):
    """The link reached ESTABLISHED: the node may route traffic over it."""

    __slots__ = ()


class LinkDown(SlotEvent):
    """The link left ESTABLISHED.  Its queues are gone from the link; ``residue``
    holds what it still owed and held, for the node to fail over (or, with the node
    down, to return).

    ``peer_reset`` is the kernel's tipc_link_peer_is_down() at the moment the link
    went down (it was the peer's RESET, so the peer knows): the node FSM needs it to
    take PEER_LOST_CONTACT before SELF_LOST_CONTACT, and the link has already moved
    on to ESTABLISHING by the time the node reads the event."""

    __slots__ = ("reason", "peer_reset", "residue")

    def __init__(self, reason: str, peer_reset: bool = False,
                 residue: LinkResidue | None = None) -> None:
        self.reason = reason
        self.peer_reset = peer_reset
        self.residue = residue


class LinkResidue:
    """What a link that went down still owed and held, taken before its reset, so
    that the node can fail it over to a parallel link (kernel tipc_link_tnl_prepare
    reads the same things off the failed link): every packet not yet acked by the
    peer - the transmit queue, then the backlog given the seqnos it would have had,
    then a dummy message so that at least one is tunnelled - and the receive side:
    ``rcv_nxt`` (the drop point), the deferred packets and a half-joined message."""

    __slots__ = ("pkts", "rcv_nxt", "deferred", "reasm", "peer_bearer_id", "snd_nxt")

    def __init__(self, pkts: list[bytes], rcv_nxt: int, deferred: dict[int, Msg],
                 reasm: Reassembler, peer_bearer_id: int, snd_nxt: int) -> None:
        self.pkts = pkts
        self.rcv_nxt = rcv_nxt
        self.deferred = deferred
        self.reasm = reasm
        self.peer_bearer_id = peer_bearer_id
        self.snd_nxt = snd_nxt


class Delivered(SlotEvent):
    """A message received in link order, bundles already split and fragments joined.
    Emitted exactly once per message sent by the peer within one link session."""

    __slots__ = ("msg",)

    def __init__(self, msg: Msg) -> None:
        self.msg = msg


class LinkWakeup(SlotEvent):
    """The backlog of ``importance`` has room again after :meth:`Link.send` refused a
    message of that importance (the kernel's SOCK_WAKEUP); also sent when a reset
    empties the queues, so that no sender waits forever."""

    __slots__ = ("importance",)

    def __init__(self, importance: int) -> None:
        self.importance = importance


LinkEventType = LinkUp | LinkDown | Delivered | LinkWakeup


# ---------------------------------------------------------------- statistics
_PROFILE_LIMITS = (64, 256, 1024, 4096, 16384, 32768)


@dataclass(slots=True)
class LinkRtt:
    """Probe -> probe-reply round trips (``tipc link stat show -s``; the kernel has no
    such counter).  The link times them itself: it knows when its probe left and
    when a STATE with the keepalive bit and no probe bit (a reply) came back."""

    count: int = 0
    total: float = 0.0
    min: float | None = None
    max: float | None = None

    def add(self, rtt: float) -> None:
        self.count += 1
        self.total += rtt
        self.min = rtt if self.min is None or rtt < self.min else self.min
        self.max = rtt if self.max is None or rtt > self.max else self.max

    def as_dict(self) -> dict[str, Any]:
        """Milliseconds (None until the first reply)."""
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000.0, 3)
        return {"count": self.count, "min": ms(self.min), "max": ms(self.max),
                "avg": ms(self.total / self.count) if self.count else None}


@dataclass(slots=True)
class LinkStats:
    """Counters of ``tipc link stat show`` (kernel ``struct tipc_stats``), plus a few
    of ours (after ``duplicates``) that say why input was dropped.  Cleared on every
    link reset, like the kernel's: a cleared count is how a reset shows."""

    sent_pkts: int = 0
    recv_pkts: int = 0
    sent_states: int = 0
    recv_states: int = 0
    sent_probes: int = 0
    recv_probes: int = 0
    sent_nacks: int = 0
    recv_nacks: int = 0
    sent_acks: int = 0
    sent_bundled: int = 0
    sent_bundles: int = 0
    recv_bundled: int = 0
    recv_bundles: int = 0
    retransmitted: int = 0
    sent_fragmented: int = 0
    sent_fragments: int = 0
    recv_fragmented: int = 0
    recv_fragments: int = 0
    link_congs: int = 0
    deferred_recv: int = 0
    duplicates: int = 0
    max_queue_sz: int = 0
    accu_queue_sz: int = 0
    queue_sz_counts: int = 0
    msg_length_counts: int = 0
    msg_lengths_total: int = 0
    msg_length_profile: list[int] = field(default_factory=lambda: [0] * 7)
    # ours
    rx_out_of_window: int = 0
    """Sequenced packets beyond rcv_nxt + 8191 (also counted in duplicates)."""
    rx_proto_rejected: int = 0
    """Link protocol messages refused by session / state-seqno validation."""
    rx_unsent_dropped: int = 0
    """Deferred packets dropped because STATEs said the peer never sent them
    (corrupted seqnos; see Link._drop_unsent)."""
    state_resynchs: int = 0
    """Times a run of genuine STATEs looked old and we took the peer's STATE
    counter (only after corruption that decoded: see STATE_RESYNCH)."""
    rx_invalid: int = 0
    """Malformed or impossible input: bad Gap-ACK blocks, acks of unsent packets,
    RESET/ACTIVATE without interface name or with a tiny max_pkt, non_seq packets."""
    rx_not_up: int = 0
    """Sequenced packets dropped because the link was not up."""
    rx_bad_inner: int = 0
    """Bundles that did not split / fragments that did not join."""
    tunnel_tx: int = 0
    """TUNNEL_PROTOCOL packets this link carried for a parallel link (failover, synch)."""
    tunnel_rx: int = 0
    """TUNNEL_PROTOCOL packets received in sequence on this link."""
    tunnel_too_big: int = 0
    """Packets a failover could not tunnel: too big, and the peer cannot join
    tunnel fragments (no TIPC_TUNNEL_ENHANCED)."""
    failovers: int = 0
    """Times this link went down while a parallel link carried on: its unacked
    packets were tunnelled (kept across link resets: the reset is the event)."""
    synchs: int = 0
    """Times this link came up beside a working one and synchronised with it (kept
    across link resets)."""
    rtt: LinkRtt = field(default_factory=LinkRtt)
    """Probe round trips (not in as_dict(): shown by ``-s`` on its own lines)."""

    @property
    def avg_queue_sz(self) -> int:
        return self.accu_queue_sz // self.queue_sz_counts if self.queue_sz_counts else 0

    @property
    def msg_length_avg(self) -> int:
        return self.msg_lengths_total // self.msg_length_counts if self.msg_length_counts else 0

    def clear(self, keep_lifetime: bool = False) -> None:
        """Zero every counter (``tipc link stat reset``); a link reset keeps the
        failover / synch counts, which count exactly those resets."""
        for f in fields(self):
            if keep_lifetime and f.name in _LIFETIME_STATS:
                continue
            setattr(self, f.name, [0] * 7 if f.name == "msg_length_profile" else 0)
        self.rtt = LinkRtt()

    def as_dict(self) -> dict[str, int | list[int]]:
        d: dict[str, int | list[int]] = {f.name: getattr(self, f.name) for f in fields(self)
                                         if f.name != "rtt"}
        d["msg_length_profile"] = list(self.msg_length_profile)
        d["avg_queue_sz"] = self.avg_queue_sz
        d["msg_length_avg"] = self.msg_length_avg
        return d


_LIFETIME_STATS = frozenset({"failovers", "synchs"})


# ---------------------------------------------------------------- queue entries
class _Pending:
    """A backlog entry: a ready packet, or a small message that may still grow into a
    bundle (``raws`` set once a second message joined it)."""

    __slots__ = ("imp", "raw", "raws", "bsz")

    def __init__(self, imp: int, raw: bytes, bsz: int) -> None:
        self.imp = imp
        self.raw = raw
        self.raws: list[bytes] | None = None  # set once a second message joined
        self.bsz = bsz  # size of the bundle this would make (40 + inner sizes); 0 = never


def _split_bundle(m: Msg) -> list[Msg]:
    """tipcpy.wire.bundle.unbundle() - same checks, same DecodeErrors - decoding each
    inner message in place in the bundle's payload instead of from a memoryview
    slice of it (this runs for every message of a loaded link)."""
    data = m.data
    n = len(data)
    base = len(m.w) << 2
    out: list[Msg] = []
    pos = 0
    end = 0
    while pos <= n - MIN_H_SIZE:
        inner = _decode_at(data, pos, base + pos)
        out.append(inner)
        end = pos + (len(inner.w) << 2) + len(inner.data)
        pos = (end + 3) & ~3
    if end != n:
        raise DecodeError(
            "bundle", base + end, f"{n - end} bytes after the last inner message", n - end
        )
    msgcnt = m.w[9] >> MSGCNT_SHIFT if len(m.w) > 9 else 0
    if len(out) != msgcnt:
        raise DecodeError("msgcnt", base - 4, f"bundle holds {len(out)} messages", msgcnt)
    return out


def _profile_slot(size: int) -> int:
    """Index in LinkStats.msg_length_profile (<=64, 256, 1K, 4K, 16K, 32K, more)."""
    if size <= 256:
        return 0 if size <= 64 else 1
    if size <= 4096:
        return 2 if size <= 1024 else 3
    if size <= 16384:
        return 4
    return 5 if size <= 32768 else 6


# transmit queue entry indexes: [seqno, packet (bytes, acks as last sent: retransmission
# re-stamps a copy), next_retransmit_time, retr_cnt, retr_stamp]
_SEQ, _BUF, _NXT, _CNT, _STAMP = range(5)


def _less(a: int, b: int) -> bool:
    """Kernel ``less()``: a precedes b in 16-bit modular order."""
    return a != b and ((b - a) & 0xFFFF) < 0x8000


def _less_eq(a: int, b: int) -> bool:
    return ((b - a) & 0xFFFF) < 0x8000


# ---------------------------------------------------------------- the link
class Link:
    """One link endpoint.  See the module docstring and docs/HACKING.md for the
    contract; every public attribute below is read by the node or the CLI."""

    def __init__(
        self,
        *,
        own_addr: int,
        peer_addr: int,
        own_name: str,
        peer_name: str,
        bearer_id: int,
        if_name: str,
        mtu: int,
        peer_caps: int,
        rng: random.Random,
        tolerance: int = 1500,
        priority: int = 10,
        window: int = 50,
        own_caps: int = OWN_CAPS,
    ) -> None:
        if not TIPC_MIN_LINK_WIN <= window <= TIPC_MAX_LINK_WIN:
            raise ValueError(f"window {window}: must be {TIPC_MIN_LINK_WIN}..{TIPC_MAX_LINK_WIN}")
        if not TIPC_MIN_LINK_TOL_MS <= tolerance <= TIPC_MAX_LINK_TOL_MS:
            raise ValueError(f"tolerance {tolerance}: must be 50..30000 ms")
        if not 0 <= priority <= TIPC_MAX_LINK_PRI:
            raise ValueError(f"priority {priority}: must be 0..31")
        if mtu < MIN_PEER_MTU:
            raise ValueError(f"mtu {mtu} below {MIN_PEER_MTU}")
        raw_if = if_name.encode()
        if len(raw_if) >= TIPC_MAX_IF_NAME:
            raise ValueError(f"interface name {if_name!r} longer than 15 bytes")
        self.own_addr = own_addr
        self.peer_addr = peer_addr
        self.own_name = own_name
        self.peer_name = peer_name
        self.bearer_id = bearer_id
        self.if_name = if_name
        self.peer_if_name: str | None = None
        self.peer_bearer_id = 0
        self.peer_caps = peer_caps
        self.own_caps = own_caps
        self.advertised_mtu = mtu
        self.mtu = mtu
        self.tolerance = tolerance
        self.priority = priority
        self.net_plane = 0
        self._if_payload = raw_if + bytes(TIPC_MAX_IF_NAME - len(raw_if))
        # broadcast-link bookkeeping, written by the node
        self.bcast_ack = 0
        self.bc_ack_invalid = True
        self._bc_cell = [0]
        self.bc_gap = 0
        self.bc_gap_blocks: list[tuple[int, int]] = []
        """Broadcast Gap-ACK blocks for our STATEs (core/stack_bcast.py keeps them)."""
        self.peer_node_up = False

        self.state = LinkState.RESETTING  # kernel: a new link starts RESETTING
        self.session = rng.getrandbits(16)
        self.peer_session = 0
        self.in_session = False
        self.stats = LinkStats()
        self.illegal_evts = 0
        """Events the FSM table refused; never cleared (the simulator asserts 0)."""

        # sending
        self.window = window
        self._bl_limit = [0] * 5
        self._set_limits()
        self._snd_nxt = 1
        self._snd_nxt_state = 1
        self._transmq: deque[list[Any]] = deque()
        self._backlog: deque[_Pending] = deque()
        self._bl_len = [0] * 5
        self._target: list[_Pending | None] = [None] * 5
        self._congested = [False] * 5
        self._pre_up: list[tuple[int, Msg]] = []
        # receiving
        self._rcv_nxt = 1
        self._rcv_nxt_state = 1
        self._old_state_run = 0
        """STATEs in a row rejected as old, each one after the previous (see
        STATE_RESYNCH)."""
        self._old_state_last = 0
        self._unserv_n = 0
        self._unserv_at = 0.0
        self._suspect: dict[int, float] = {}
        """Deferred seqnos far beyond the peer's snd_nxt -> when first seen so."""
        self._rcv_unacked = 0
        self._deferred: dict[int, Msg] = {}
        self._reasm = Reassembler()
        # failover receive side (kernel drop_point / failover_deferdq /
        # failover_reasm_skb / reasm_tnlmsg): set by the node when a parallel link
        # fails over onto this one
        self.drop_point = 1
        self._fo_deferred: dict[int, Msg] = {}
        self._fo_reasm = Reassembler()
        self._tnl_parts: list[bytes] = []
        self._tnl_nof = 0
        # supervision
        self._interval = keepalive_for(tolerance)
        self._next_tick: float | None = None
        self._last_rx = 0.0
        self._rx_since_tick = False
        self.silent_intv_cnt = 0
        self._rst_cnt = 0
        self._checkpoint = 1
        self._probe_at: float | None = None  # when the last unanswered probe left
        self._rprobe_at: float | None = None  # retransmission probe due (tq not empty)
        self._rprobe_wait = RPROBE_DEFAULT
        self._rprobe_base = RPROBE_DEFAULT  # 2 x the mean probe round trip, >= 1 ms
        self._nack_at = 0.0
        # neighbour monitoring (core/monitor.py), set by the stack once the bearer has
        # a monitor; see _mon_timer / _mon_rcv and the STATE build in _proto
        self.monitor: Monitor | None = None
        self.probe_idle = True
        """Probe on every tick that sent nothing new (Linux >= 5.6).  False: probe only
        after a silent interval, and count silence only on links the monitor
        supervises (Linux 4.7-5.5, the overlapping-ring design: O(sqrt N) probes)."""
        self._supervised = True

        self._out: list[bytes] = []
        self._events: list[LinkEventType] = []

    # ------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """``own:if-peer:peerif``; the peer's interface is learned from RESET/ACTIVATE."""
        return f"{self.own_name}:{self.if_name}-{self.peer_name}:{self.peer_if_name or 'unknown'}"

    @property
    def is_up(self) -> bool:
        return self.state in _UP_STATES

    @property
    def last_bcast(self) -> int:
        """Our broadcast snd_nxt - 1, carried in every protocol message (w4)."""
        return self._bc_cell[0]

    @last_bcast.setter
    def last_bcast(self, value: int) -> None:
        self._bc_cell = [value]  # this link alone (a test, a link outside a Stack)

    def share_last_bcast(self, cell: list[int]) -> None:
        """Read last_bcast from a cell the node's broadcast link keeps current, so
        it moves for a thousand links with one write (kernel: l->bc_sndlink)."""
        self._bc_cell = cell

    @property
    def mss(self) -> int:
        """Largest packet built for the peer (tipc_link_mss on a crypto kernel)."""
        return self.mtu - INT_H_SIZE - CRYPTO_OVERHEAD

    @property
    def keepalive_interval(self) -> float:
        """Tick interval in seconds: min(tolerance / 4, 500 ms)."""
        return self._interval

    @property
    def abort_limit(self) -> int:
        """Silent intervals the kernel tolerates (tolerance / interval)."""
        return int(self.tolerance / (self._interval * 1000))

    @property
    def snd_nxt(self) -> int:
        return self._snd_nxt

    @property
    def rcv_nxt(self) -> int:
        return self._rcv_nxt

    @property
    def transmq_len(self) -> int:
        return len(self._transmq)

    @property
    def backlog_len(self) -> int:
        return len(self._backlog) + len(self._pre_up)

    @property
    def backlog_pkts(self) -> int:
        """Packets the backlog will become (one per entry: bundles are made up)."""
        return len(self._backlog)

    @property
    def deferred_len(self) -> int:
        return len(self._deferred)

    def is_congested(self, importance: int) -> bool:
        """True when :meth:`send` would refuse a message of this importance."""
        return importance < _SYSTEM and self._bl_len[importance] >= self._bl_limit[importance]

    def backlog_limit(self, importance: int) -> int:
        return self._bl_limit[importance]

    # ------------------------------------------------------------ driver contract
    def start(self, now: float) -> None:
        """Enter RESET and send the first RESET_MSG now; ticks follow."""
        self.fsm_evt(LinkEvent.RESET)  # RESETTING -> RESET
        self._rst_cnt = 0
        self._next_tick = now
        self.tick(now)

    def next_deadline(self) -> float | None:
        # Once up, the link also wakes exactly when the peer has been silent for the
        # tolerance, so a dead peer is declared after the tolerance itself rather
        # than at the next tick after it (which would add up to one interval).
        nt = self._next_tick
        if nt is not None and self._supervised and self.state in _UP_STATES:
            fail_at = self._last_rx + self.tolerance / 1000.0
            if fail_at < nt:
                nt = fail_at
            rp = self._rprobe_at
            if rp is not None and rp < nt:
                return rp
        return nt

    def take_outgoing(self) -> list[bytes]:
        out = self._out
        if out:
            self._out = []
        return out

    def take_events(self) -> list[LinkEventType]:
        ev = self._events
        if ev:
            self._events = []
        return ev

    def tick(self, now: float, early: float = 0.0) -> None:
        """Link timer (tipc_link_timeout): RESET/ACTIVATE while setting up; acks,
        probes, NACKs and failure detection once up.  Does nothing before the
        deadline, so the driver may call it whenever it likes.

        ``early``: run the periodic part if it is due within that many seconds, at
        most a quarter interval (the node's timer slack, see ``Stack.timer_slack``);
        failure detection and the retransmission probe stay exact."""
        nt = self._next_tick
        if nt is None:
            return
        st = self.state
        if (st in _UP_STATES and self._supervised
                and now >= self._last_rx + self.tolerance / 1000.0):
            self._failure(now, "link timeout: peer silent for the tolerance")
            return
        rp = self._rprobe_at
        if rp is not None and now >= rp:
            self._retr_probe(now)
        if now < nt - (min(early, self._interval / 4) if early else 0.0):
            return
        self._next_tick = now + self._interval
        if st in _UP_STATES:
            tq = self._transmq
            s = self.stats
            s.accu_queue_sz += len(tq)
            s.queue_sz_counts += 1
            mon = self._mon_timer(now) if self.monitor is not None else (True, False)
            if mon is None:
                self._failure(now, "link reset by the neighbour monitor")
                return
            supervised, probing = mon
            silent = supervised and not self._rx_since_tick
            self._rx_since_tick = False
            if silent:
                self.silent_intv_cnt += 1
            else:
                self.silent_intv_cnt = 0
            # As the kernel: probe when the peer was silent, when we wait for
            # retransmissions, and (Linux >= 5.6, probe_idle) whenever we sent nothing
            # new since the last tick, so an idle link sends one probe per tick and
            # side, never more.  The monitor decides whether silence counts (see
            # _mon_timer); without probe_idle that alone decides whether to probe.
            idle = self.probe_idle and self._snd_nxt == self._checkpoint
            probe = silent or probing or bool(self._deferred) or idle
            state = self._rcv_unacked > 0 or bool(tq)
            self._checkpoint = self._snd_nxt
            if probe or state:
                self._proto(_STATE_MSG, probe=probe)
                if probe:
                    self._probe_at = now
        elif st == LinkState.RESET:
            setup = self._rst_cnt <= 4
            self._rst_cnt += 1
            if setup or self._rst_cnt % 16 == 0:
                self._proto(_RESET_MSG)
        elif st == LinkState.ESTABLISHING:
            self._proto(_ACTIVATE_MSG)


    def _retr_probe(self, now: float) -> None:
        """The head of the transmit queue waited too long: probe the peer now."""
        if self.state not in _UP_STATES or not self._transmq:
            self._rprobe_at = None
            return
        self._proto(_STATE_MSG, probe=True)
        self._probe_at = now
        self._rprobe_wait = min(self._rprobe_wait * 2.0, self._interval)
        self._rprobe_at = now + self._rprobe_wait

    def _mon_timer(self, now: float) -> tuple[bool, bool] | None:
        """What the monitor says this tick must do (kernel tipc_mon_get_state in
        tipc_link_timeout): ``(supervised, probing)``, or None to fail the link now.

        Why: above the threshold only local-domain members, heads and peers reported
        lost (or that have not acked our record) are supervised; for the others the
        kernel never counts silent intervals, so a dead one is only found when its
        neighbours report it.  Here that means the tolerance clock restarts while a
        link is unsupervised (``_last_rx`` kept at ``now``).
        """
        mon = self.monitor
        assert mon is not None
        ms = mon.get_state(self.peer_addr)
        if ms.reset:
            return None
        sup = ms.monitoring or ms.probing
        if not sup or not self._supervised:
            self._last_rx = max(self._last_rx, now)
        self._supervised = sup
        return sup, ms.probing

    def _mon_rcv(self, data: bytes) -> None:
        """The rest of an accepted STATE after the Gap-ACK blocks, on an up link
        (kernel tipc_mon_rcv; empty payloads too: they end a probing round)."""
        mon = self.monitor
        if mon is not None:
            mon.receive(self.peer_addr, data)

    def reset(self, now: float, reason: str) -> None:
        """Local reset or disable: the link goes down (LinkDown if it was up), starts
        a new session and tells the peer with a RESET carrying ``peer_stopping`` -
        which is what a kernel sends when it takes a link down."""
        if self.is_up:
            residue = self._residue()
            self.fsm_evt(LinkEvent.FAILURE)
            self._events.append(LinkDown(reason, residue=residue))
        self.fsm_evt(LinkEvent.RESET)
        self._reset_session()
        self._proto(_RESET_MSG, stopping=True)
        self._next_tick = now + self._interval

    def send_state(self) -> None:
        """Send a STATE now (e.g. when the node has a broadcast ack to give); no-op
        unless the link is up."""
        self._proto(_STATE_MSG)

    # ------------------------------------------------------------ configuration
    def set_tolerance(self, tolerance: int, now: float) -> None:
        """``tipc link set tolerance``: use it and tell the peer in a STATE."""
        if not TIPC_MIN_LINK_TOL_MS <= tolerance <= TIPC_MAX_LINK_TOL_MS:
            raise ValueError(f"tolerance {tolerance}: must be 50..30000 ms")
        self._adopt_tolerance(tolerance, now)
        if self.is_up:
            self._proto(_STATE_MSG, tol=tolerance)

    def set_priority(self, priority: int) -> None:
        """``tipc link set priority``: the peer adopts it and both ends reset."""
        if not 0 <= priority <= TIPC_MAX_LINK_PRI:
            raise ValueError(f"priority {priority}: must be 0..31")
        self.priority = priority
        if self.is_up:
            self._proto(_STATE_MSG, prio=priority)

    def set_window(self, window: int) -> None:
        if not TIPC_MIN_LINK_WIN <= window <= TIPC_MAX_LINK_WIN:
            raise ValueError(f"window {window}: must be {TIPC_MIN_LINK_WIN}..{TIPC_MAX_LINK_WIN}")
        self.window = window
        self._set_limits()

    def _set_limits(self) -> None:
        w = self.window
        lim = self._bl_limit
        lim[0], lim[1], lim[2], lim[3] = 2 * w, 4 * w, 6 * w, 8 * w
        lim[4] = TIPC_MAX_PUBL // max(1, self.advertised_mtu // 20)  # informative only

    def _adopt_tolerance(self, tol: int, now: float) -> None:
        self.tolerance = tol
        self._interval = keepalive_for(tol)
        nt = self._next_tick
        if nt is not None and nt > now + self._interval:
            self._next_tick = now + self._interval

    # ------------------------------------------------------------ sending
    def send(self, msg: Msg, now: float) -> bool:
        """Queue one upper-layer message (data, NAME_DISTRIBUTOR, BCAST_PROTOCOL ...).

        Returns False - and queues nothing - when the backlog of the message's
        importance is full (the caller blocks until :class:`LinkWakeup`); SYSTEM
        importance is never refused.  Messages bigger than the MSS are fragmented;
        small ones waiting in the backlog are bundled.  Before the link is up,
        accepted messages wait and go out when it comes up.
        """
        w = msg.w
        user = (w[0] >> USER_SHIFT) & USER_MASK
        if user <= 3 and not (w[1] >> ERRCODE_SHIFT) & ERRCODE_MASK:
            imp = user
        else:
            imp = msg.importance
        if imp < _SYSTEM and self._bl_len[imp] >= self._bl_limit[imp]:
            self.stats.link_congs += 1
            self._congested[imp] = True
            return False
        if self.state not in _UP_STATES:
            self._pre_up.append((imp, msg))
            self._bl_len[imp] += 1
            return True
        tq = self._transmq
        if not self._backlog and len(tq) < self.window:
            # the common case - window open, nothing queued, fits one packet: encode
            # once with seqno and acks in place (what _enqueue + _xmit_new would do)
            data = msg.data
            n = len(w)
            size = (n << 2) + len(data)
            if size <= self.mtu - INT_H_SIZE - CRYPTO_OVERHEAD:
                s = self.stats
                s.msg_length_counts += 1
                s.msg_lengths_total += size
                s.msg_length_profile[_profile_slot(size)] += 1
                seq = self._snd_nxt
                w[0] = (w[0] & W0_KEEP) | (n << HSIZE_SHIFT) | size  # as Msg.encode() does
                w1 = w[1]
                w2 = w[2]
                w[1] = (w1 & ~BCAST_ACK_MASK) | (self.bcast_ack & BCAST_ACK_MASK)
                w[2] = ((self._rcv_nxt - 1) & ACK_MASK) << ACK_SHIFT | seq
                raw = _HDRS[n].pack(*w) + data
                w[1] = w1
                w[2] = w2
                tq.append([seq, raw, now + RETR_INTERVAL, 0, 0.0])
                self._out.append(raw)
                if self._rprobe_at is None:
                    rw = self._rprobe_wait = self._rprobe_base
                    self._rprobe_at = now + rw
                self._snd_nxt = (seq + 1) & 0xFFFF
                self._rcv_unacked = 0
                s.sent_pkts += 1
                q = len(tq)
                if q > s.max_queue_sz:
                    s.max_queue_sz = q
                return True
        self._enqueue(msg, imp, user, now)
        return True

    def _enqueue(self, msg: Msg, imp: int, user: int, now: float) -> None:
        s = self.stats
        size = (len(msg.w) << 2) + len(msg.data)
        # message length profile (kernel samples it per tick; we count every message)
        s.msg_length_counts += 1
        s.msg_lengths_total += size
        s.msg_length_profile[_profile_slot(size)] += 1
        mss = self.mtu - INT_H_SIZE - CRYPTO_OVERHEAD
        tq = self._transmq
        bl = self._backlog
        if size > mss:
            frags = _fragment(msg, mss, imp, prevnode=self.own_addr, destnode=self.peer_addr)
            s.sent_fragmented += 1
            s.sent_fragments += len(frags)
            for f in frags:
                raw = f.encode()
                if not bl and len(tq) < self.window:
                    self._xmit_new(raw, now)
                else:
                    self._target[imp] = None
                    bl.append(_Pending(imp, raw, 0))
                    self._bl_len[imp] += 1
        else:
            # msg.encode(), inline (size <= mss: the 17-bit size field holds it)
            w = msg.w
            n = len(w)
            w[0] = (w[0] & W0_KEEP) | (n << HSIZE_SHIFT) | size
            raw = _HDRS[n].pack(*w) + msg.data
            if not bl and len(tq) < self.window:
                self._xmit_new(raw, now)
            elif user not in _NOT_BUNDLED and mss > INT_H_SIZE + size:
                t = self._target[imp]
                if t is not None and ((t.bsz + 3) & ~3) + size <= mss:
                    if t.raws is None:
                        t.raws = [t.raw]
                        s.sent_bundles += 1
                        s.sent_bundled += 1
                    t.raws.append(raw)
                    t.bsz = ((t.bsz + 3) & ~3) + size
                    s.sent_bundled += 1
                else:
                    t = _Pending(imp, raw, INT_H_SIZE + size)
                    self._target[imp] = t
                    bl.append(t)
                    self._bl_len[imp] += 1
            else:
                self._target[imp] = None
                bl.append(_Pending(imp, raw, 0))
                self._bl_len[imp] += 1
        q = len(tq) + len(bl)
        if q > s.max_queue_sz:
            s.max_queue_sz = q

    def _xmit_new(self, raw: bytes, now: float) -> None:
        """Give the packet the next seqno and current acks, keep it for
        retransmission and hand a copy to the bearer."""
        buf = bytearray(raw)
        seq = self._snd_nxt
        _PACK_ACKS(buf, 6, self.bcast_ack & 0xFFFF, (self._rcv_nxt - 1) & 0xFFFF, seq)
        raw = bytes(buf)
        self._transmq.append([seq, raw, now + RETR_INTERVAL, 0, 0.0])
        self._out.append(raw)
        if self._rprobe_at is None:
            rw = self._rprobe_wait = self._rprobe_base
            self._rprobe_at = now + rw
        self._snd_nxt = (seq + 1) & 0xFFFF
        self._rcv_unacked = 0
        self.stats.sent_pkts += 1

    def _advance_backlog(self, now: float) -> None:
        """Move backlog entries into the window (tipc_link_advance_backlog); a
        message that collected others on the way becomes one MSG_BUNDLER packet."""
        bl = self._backlog
        tq = self._transmq
        win = self.window
        bl_len = self._bl_len
        target = self._target
        while bl and len(tq) < win:
            e = bl.popleft()
            imp = e.imp
            bl_len[imp] -= 1
            if target[imp] is e:
                target[imp] = None
            raws = e.raws
            if raws is None:
                self._xmit_new(e.raw, now)
            else:
                self._xmit_new(self._make_bundle(raws, imp), now)
        if True in self._congested:
            self._wakeup()

    def _make_bundle(self, raws: list[bytes], imp: int) -> bytes:
        """A bundle of already encoded messages for this peer (wire.bundle.pack_bundle)."""
        return pack_bundle(raws, imp, self.own_addr, self.peer_addr)

    def _wakeup(self) -> None:
        cong = self._congested
        for imp in range(4):
            if cong[imp] and self._bl_len[imp] < self._bl_limit[imp]:
                cong[imp] = False
                self._events.append(LinkWakeup(imp))

    def _advance_transmq(
        self, acked: int, gap: int, blocks: list[tuple[int, int]], now: float
    ) -> int:
        """Release what the peer acked (and Gap-ACKed) and retransmit what it says is
        missing (tipc_link_advance_transmq).  Returns the number released, or -1 if
        the link failed on a retransmission that never got through."""
        tq = self._transmq
        n0 = len(tq)
        while tq and ((acked - tq[0][_SEQ]) & 0xFFFF) < 0x8000:
            tq.popleft()
        if len(tq) != n0:  # progress: the retransmission probe starts again
            if tq:
                rw = self._rprobe_wait = self._rprobe_base
                self._rprobe_at = now + rw
            else:
                self._rprobe_at = None
        if not (gap or blocks) or not tq:
            return n0 - len(tq)
        keep: deque[list[Any]] = deque()
        nacked, ngap, bi = acked, gap, 0
        ack = (self._rcv_nxt - 1) & 0xFFFF
        bc_ack = self.bcast_ack & 0xFFFF
        it = iter(tq)
        for e in it:
            seq = e[_SEQ]
            while True:
                if _less_eq(seq, nacked):
                    break  # released by a gap-ack block
                if _less_eq(seq, (nacked + ngap) & 0xFFFF):
                    if (
                        seq == ((acked + 1) & 0xFFFF)
                        and e[_CNT]
                        and now - e[_STAMP] > RETR_FAIL_MULT * self.tolerance / 1000.0
                    ):
                        self._failure(now, "retransmission failure")
                        return -1
                    if now >= e[_NXT]:
                        e[_NXT] = now + RETR_INTERVAL
                        buf = bytearray(e[_BUF])
                        _PACK_ACKS(buf, 6, bc_ack, ack, seq)
                        self._out.append(bytes(buf))
                        self.stats.retransmitted += 1
                        if not e[_CNT]:
                            e[_STAMP] = now
                        e[_CNT] += 1
                    keep.append(e)
                    break
                if bi >= len(blocks):
                    keep.append(e)
                    keep.extend(it)
                    break
                nacked, ngap = blocks[bi]
                bi += 1
        released = n0 - len(keep)
        self._transmq = keep
        return released

    # ------------------------------------------------------------ receiving
    def receive(self, msg: Msg, now: float) -> None:
        """A decoded unicast packet from this peer on this bearer."""
        w = msg.w
        w0 = w[0]
        user = (w0 >> USER_SHIFT) & USER_MASK
        if user == _USER_LINK_PROTOCOL:
            self._proto_rcv(msg, now)
            return
        s = self.stats
        if w0 & NON_SEQ_BIT:  # non_seq: broadcast-link traffic is the node's
            s.rx_invalid += 1
            return
        # any sequenced packet proves the peer alive (kernel: silent_intv_cnt = 0)
        self._rx_since_tick = True
        self._last_rx = now
        if self.state not in _UP_STATES:
            if self.state == LinkState.ESTABLISHING and self.in_session:
                self._link_up(now)  # the packet itself is dropped: it will come again
            else:
                s.rx_not_up += 1
            return
        w2 = w[2]
        seqno = w2 & 0xFFFF
        rcv_nxt = self._rcv_nxt
        d = (seqno - rcv_nxt) & 0xFFFF
        if d > RCV_WINDOW:
            s.duplicates += 1
            if d < 0x8000:
                s.rx_out_of_window += 1
            return
        # piggybacked ack
        tq = self._transmq
        if tq:
            acked = w2 >> ACK_SHIFT
            if ((acked - tq[0][_SEQ]) & 0xFFFF) < 0x8000:
                if ((self._snd_nxt - 1 - acked) & 0xFFFF) < 0x8000:
                    if self._advance_transmq(acked, 0, [], now) > 0 and self._backlog:
                        self._advance_backlog(now)
                else:
                    s.rx_invalid += 1
        if d:
            dq = self._deferred
            if seqno in dq:
                s.duplicates += 1
            else:
                dq[seqno] = msg
            s.deferred_recv += 1
            n = len(dq)
            if n >= NACK_FIRST and (n - NACK_FIRST) % NACK_EVERY == 0 \
                    or now >= self._nack_at:
                self._nack_at = now + NACK_REPEAT
                self._proto(_STATE_MSG, rcvgap=(self._first_deferred() - rcv_nxt) & 0xFFFF)
            return
        dq = self._deferred
        events = self._events
        while True:
            rcv_nxt = (rcv_nxt + 1) & 0xFFFF
            self._rcv_nxt = rcv_nxt
            s.recv_pkts += 1
            self._rcv_unacked += 1
            u = (msg.w[0] >> USER_SHIFT) & USER_MASK
            if u in _INNER_USERS:
                if u == _USER_TUNNEL:
                    if not self._tnl_rcv(msg, now):
                        return
                elif not self._input_inner(msg, u, now):
                    return
            else:
                events.append(Delivered(msg))
            if not dq:
                break
            nxt = dq.pop(rcv_nxt, None)
            if nxt is None:
                break
            msg = nxt
        if self._rcv_unacked >= ACK_RATE:
            s.sent_acks += 1
            self._proto(_STATE_MSG)

    def _input_inner(self, msg: Msg, user: int, now: float) -> bool:
        """Split a bundle / feed a fragment; False if the link failed meanwhile."""
        s = self.stats
        if user == _USER_BUNDLER:
            try:
                inner = _split_bundle(msg)
            except DecodeError:
                s.rx_bad_inner += 1
                return True
            s.recv_bundles += 1
            s.recv_bundled += len(inner)
            ev = self._events
            for m in inner:
                if (m.w[0] >> USER_SHIFT) & USER_MASK in _NOT_BUNDLED:
                    s.rx_bad_inner += 1
                else:
                    ev.append(Delivered(m))
            return True
        s.recv_fragments += 1
        try:
            whole = self._reasm.feed(msg)
        except DecodeError:
            # the kernel resets the link: a broken chain means lost data
            s.rx_bad_inner += 1
            self._failure(now, "fragment reassembly failure")
            return False
        if whole is not None:
            s.recv_fragmented += 1
            self._events.append(Delivered(whole))
        return True

    def _first_deferred(self) -> int:
        rn = self._rcv_nxt
        return min(self._deferred, key=lambda q: (q - rn) & 0xFFFF)

    def _gap_ack_blocks(self, seq_gap: int) -> bytes:
        """Our Gap-ACK record: header always, unicast blocks only with a NACK."""
        dq = self._deferred
        if not seq_gap or not dq:
            return _EMPTY_GAP_ACK
        rn = self._rcv_nxt
        seqs = sorted(dq, key=lambda q: (q - rn) & 0xFFFF)
        blocks: list[bytes] = []
        expect = seqs[0]
        for q in seqs:
            if q != expect:
                blocks.append(_GAP_BLK.pack((expect - 1) & 0xFFFF, (q - expect) & 0xFFFF))
                if len(blocks) >= MAX_UC_GAP_BLOCKS:
                    break
            expect = (q + 1) & 0xFFFF
        else:
            blocks.append(_GAP_BLK.pack(seqs[-1], 0))
        n = len(blocks)
        return _GAP_HDR.pack(4 + 4 * n, n, 0) + b"".join(blocks)

    def _with_bc_blocks(self, uc_record: bytes) -> bytes:
        """The Gap-ACK record with the broadcast blocks first (tipc_build_gap_ack_blks):
        len, ugack_cnt, bgack_cnt, broadcast blocks, unicast blocks."""
        bc = self.bc_gap_blocks[:MAX_UC_GAP_BLOCKS]
        ucnt = uc_record[2]
        n = len(bc) + ucnt
        return (_GAP_HDR.pack(4 + 4 * n, ucnt, len(bc))
                + b"".join(_GAP_BLK.pack(a & 0xFFFF, g & 0xFFFF) for a, g in bc)
                + uc_record[4:])

    def _parse_gap_blocks(
        self, data: bytes, acked: int, gap: int
    ) -> tuple[int, list[tuple[int, int]]] | None:
        """(record length, unicast blocks) from a STATE payload; None = drop the
        STATE (length beyond the payload, as the kernel does)."""
        dlen = len(data)
        if not (self.peer_caps & Cap.GAP_ACK_BLOCK) or dlen < 4:
            return 0, []
        ln, ucnt, bcnt = _GAP_HDR.unpack_from(data, 0)
        if ln > dlen:
            return None
        if ln == 4 + 4 * (ucnt + bcnt):
            first = bcnt
        elif ln == 4 + 4 * ucnt:
            first = 0
        else:
            return ln, []
        if not ucnt:
            return ln, []
        blocks = []
        prev_end = (acked + gap) & 0xFFFF
        last = (self._snd_nxt - 1) & 0xFFFF
        for i in range(first, first + ucnt):
            a, g = _GAP_BLK.unpack_from(data, 4 + 4 * i)
            # sane blocks go forward and never ack what we have not sent
            if not _less(prev_end, a) or not _less_eq(a, last):
                self.stats.rx_invalid += 1
                return ln, []
            blocks.append((a, g))
            prev_end = (a + g) & 0xFFFF
        return ln, blocks

    def _proto_rcv(self, msg: Msg, now: float) -> None:
        """tipc_link_proto_rcv: RESET / ACTIVATE / STATE."""
        s = self.stats
        w = msg.w
        if len(w) < 10:
            s.rx_invalid += 1
            return
        if self.state in _BLOCKED_STATES or self._next_tick is None:
            return
        w1 = w[1]
        mtyp = w1 >> MTYPE_SHIFT
        w5 = w[5]
        session = w5 >> _SESSION_SHIFT
        if self.own_addr > w[3]:
            self.net_plane = (w5 >> _NET_PLANE_SHIFT) & _NET_PLANE_MASK
        # validation (tipc_link_validate_msg)
        if mtyp == _RESET_MSG:
            ok = not self.in_session or _less(self.peer_session, session)
        elif mtyp == _ACTIVATE_MSG:
            ok = not self.in_session or not _less(session, self.peer_session)
        elif mtyp == _STATE_MSG:
            ok = self.in_session and session == self.peer_session
            if ok and self.state not in _UP_STATES and (w[2] >> ACK_SHIFT):
                ok = False
            if ok and self.peer_caps & Cap.LINK_PROTO_SEQNO:
                ok = self._state_seqno_ok(w[2] & 0xFFFF)
        else:
            ok = False
        if not ok:
            s.rx_proto_rejected += 1
            return
        peers_tol = w[9] & TOLERANCE_MASK
        peers_prio = (w5 >> LINKPRIO_SHIFT) & LINKPRIO_MASK
        if mtyp != _STATE_MSG:
            self._reset_activate_rcv(msg, mtyp, session, peers_tol, peers_prio, now)
            return
        # ---- STATE
        data = msg.data
        ga = self._parse_gap_blocks(data, w[2] >> ACK_SHIFT, (w1 >> SEQ_GAP_SHIFT) & SEQ_GAP_MASK)
        if ga is None:
            s.rx_invalid += 1
            return
        self._rcv_nxt_state = ((w[2] & 0xFFFF) + 1) & 0xFFFF
        if TIPC_MIN_LINK_TOL_MS <= peers_tol <= TIPC_MAX_LINK_TOL_MS:
            self._adopt_tolerance(peers_tol, now)
        if peers_prio != self.priority and 1 <= peers_prio <= TIPC_MAX_LINK_PRI:
            self.priority = peers_prio
            if self.is_up:
                self._failure(now, f"peer changed priority to {peers_prio}")
                return
        self._rx_since_tick = True
        self._last_rx = now
        self.silent_intv_cnt = 0
        s.recv_states += 1
        probe = w5 & 1
        if probe:
            s.recv_probes += 1
        elif (w[0] >> KEEPALIVE_SHIFT) & 1 and self._probe_at is not None:
            # keepalive bit without probe bit: the reply to our last probe
            r = s.rtt
            r.add(max(0.0, now - self._probe_at))
            self._probe_at = None
            self._rprobe_base = max(RPROBE_MIN, 2.0 * r.total / r.count)
        if self.state not in _UP_STATES:
            if self.state == LinkState.ESTABLISHING:
                self._link_up(now)
            return
        if self.monitor is not None:
            self._mon_rcv(data[ga[0]:])
        rcvgap = 0
        peers_snd_nxt = w[4] & 0xFFFF
        rcv_nxt = self._rcv_nxt
        if self._deferred or self._suspect:
            self._drop_unsent(peers_snd_nxt, now)
        if (probe or (w[0] >> KEEPALIVE_SHIFT) & 1) and _less(rcv_nxt, peers_snd_nxt) \
                and not self._deferred and self.state is not LinkState.SYNCHING:
            rcvgap = (peers_snd_nxt - rcv_nxt) & 0xFFFF
        if rcvgap or probe:
            self._proto(_STATE_MSG, reply=bool(probe), rcvgap=rcvgap)
        acked = w[2] >> ACK_SHIFT
        gap = (w1 >> SEQ_GAP_SHIFT) & SEQ_GAP_MASK
        if gap:
            s.recv_nacks += 1
        if not _less_eq(acked, (self._snd_nxt - 1) & 0xFFFF):
            s.rx_invalid += 1  # acks something never sent: ignore the ack part
            return
        if gap and self._nack_unservable(acked, now):
            return
        released = self._advance_transmq(acked, gap, ga[1], now)
        if released > 0 and self._backlog:
            self._advance_backlog(now)

    def _drop_unsent(self, peers_snd_nxt: int, now: float) -> None:
        """Deferred packets far beyond what the peer says it has sent can only be
        corrupted seqnos (TIPC has no checksum of its own); left there, one would be
        delivered in place of the real packet once the sequence got there, long
        after the corruption, and until then we NACK a gap that does not exist.
        Dropping a packet the peer did send would lose it for good once our Gap-ACK
        blocks have released it, so the rule is deliberately narrow: at least
        UNSENT_MARGIN packets beyond the peer's snd_nxt, in STATEs taken over
        UNSENT_AGE.  (A packet that merely overtook some STATEs is a few packets
        and milliseconds ahead of them.)  Flips that land closer are not caught."""
        dq = self._deferred
        rn = self._rcv_nxt
        lim = ((peers_snd_nxt - rn) & 0xFFFF) + UNSENT_MARGIN
        old = self._suspect
        sus = {q: old.get(q, now) for q in dq if lim <= (q - rn) & 0xFFFF < 0x8000}
        for q in [q for q, t in sus.items() if now - t >= UNSENT_AGE]:
            del dq[q], sus[q]
            self.stats.rx_unsent_dropped += 1
        self._suspect = sus

    def _nack_unservable(self, acked: int, now: float) -> bool:
        """A NACK for packets below our transmit queue asks for something an ack
        (or Gap-ACK block) of the peer's already released: possible only if that
        ack was corrupted on the way (or the STATE is a late one).  The kernel would
        stall there for good: the peer defers everything after the hole, its Gap-ACK
        blocks release that too, and STATEs keep the link alive.  When the NACKs
        persist (UNSERVABLE_NACKS of them over UNSERVABLE_SECS, so a late STATE
        does not count) the link fails, which a parallel link can take over and a
        single link recovers from with a new session."""
        tq = self._transmq
        lowest = tq[0][_SEQ] if tq else self._snd_nxt
        if not _less((acked + 1) & 0xFFFF, lowest):
            self._unserv_n = 0
            return False
        if not self._unserv_n:
            self._unserv_at = now
        self._unserv_n += 1
        if self._unserv_n < UNSERVABLE_NACKS or now - self._unserv_at < UNSERVABLE_SECS:
            return False
        self._unserv_n = 0
        self._failure(now, "peer misses packets we no longer hold (a corrupted ack?)")
        return True

    def _state_seqno_ok(self, seq: int) -> bool:
        """The kernel drops a STATE older than the last one taken (a late STATE
        carries stale gap reports).  Undetected corruption (TIPC has no checksum of
        its own; UDP's or the NIC's is all there is) can push ``rcv_nxt_state`` far
        ahead, and then every genuine STATE looks old: NACKs are never served and
        the link stalls for a whole tolerance or more.  A late STATE comes alone or
        in a short burst; the peer's real counter shows as a run of consecutive
        seqnos, so after STATE_RESYNCH of those in a row we take the peer's."""
        if not _less(seq, self._rcv_nxt_state):
            self._old_state_run = 0
            return True
        if self._old_state_run and seq == ((self._old_state_last + 1) & 0xFFFF):
            self._old_state_run += 1
        else:
            self._old_state_run = 1
        self._old_state_last = seq
        if self._old_state_run < STATE_RESYNCH:
            return False
        self._old_state_run = 0
        self.stats.state_resynchs += 1
        return True

    def _reset_activate_rcv(
        self, msg: Msg, mtyp: int, session: int, peers_tol: int, peers_prio: int, now: float
    ) -> None:
        s = self.stats
        w = msg.w
        max_pkt = (w[9] >> MAX_PKT_SHIFT) * 4
        data = msg.data
        if max_pkt < MIN_PEER_MTU or len(data) < TIPC_MAX_IF_NAME:
            s.rx_invalid += 1
            return
        raw = data[:TIPC_MAX_IF_NAME]
        nul = raw.find(0)
        self.peer_if_name = (raw if nul < 0 else raw[:nul]).decode("ascii", "replace")
        if TIPC_MIN_LINK_TOL_MS <= peers_tol <= TIPC_MAX_LINK_TOL_MS:
            self._adopt_tolerance(peers_tol, now)
        if self.priority < peers_prio <= TIPC_MAX_LINK_PRI:
            self.priority = peers_prio
        if (w[5] >> _STOPPING_SHIFT) & 1:  # peer_stopping: full re-establish cycle
            if self.is_up:
                self._failure(now, "peer stopping")
            return
        w1 = w[1]
        if mtyp == _ACTIVATE_MSG and w1 & _DEST_SESSION_VALID_BIT \
                and self.session != (w1 & 0xFFFF):
            # we were re-created while the peer was establishing: resynch sessions
            if _less(self.session, w1 & 0xFFFF):
                self.session = ((w1 & 0xFFFF) + 1) & 0xFFFF
            return
        self.peer_session = session
        self.in_session = True
        self.peer_bearer_id = (w[5] >> _BEARER_ID_SHIFT) & _BEARER_ID_MASK
        st = self.state
        if st in _UP_STATES:
            if mtyp == _RESET_MSG:
                self._peer_reset(now)  # resets mtu to ours: negotiate below
            else:
                # the peer is still ESTABLISHING: it missed our STATE, so answer now
                # instead of leaving it to our next tick (speeds set-up under loss)
                self._proto(_STATE_MSG)
                return
        elif st == LinkState.RESET:
            self.fsm_evt(LinkEvent.PEER_RESET)  # -> ESTABLISHING
            if mtyp == _RESET_MSG:
                self._proto(_ACTIVATE_MSG)  # answer at once rather than next tick
        if max_pkt < self.mtu:
            self.mtu = max_pkt
        if mtyp == _ACTIVATE_MSG and self.state == LinkState.ESTABLISHING:
            self._link_up(now)

    # ------------------------------------------------------------ failover / synch
    # The node decides (kernel node.c); these are the link halves of
    # tipc_link_tnl_prepare / tipc_link_failover_prepare / tipc_link_tnl_rcv.
    def dummy_pkt(self, seq: int) -> bytes:
        """The LOW importance direct message with TIPC_ERR_NO_PORT and no port that
        the kernel adds so that a failover always tunnels at least one packet; the
        receiver drops it (see _fo_input)."""
        return _HDRS[8].pack(
            (2 << VERSION_SHIFT) | ((BASIC_H_SIZE // 4) << HSIZE_SHIFT) | BASIC_H_SIZE,
            (3 << MTYPE_SHIFT) | (int(ErrCode.TIPC_ERR_NO_PORT) << ERRCODE_SHIFT),
            seq & 0xFFFF, self.own_addr, 0, 0, self.own_addr, self.peer_addr)

    def unacked_packets(self) -> list[bytes]:
        """Every packet the peer has not acked, in seqno order: the transmit queue as
        sent, then the backlog with the seqnos it would get (bundles made now)."""
        pkts = [e[_BUF] for e in self._transmq]
        seq = self._snd_nxt
        bc_ack = self.bcast_ack & 0xFFFF
        ack = (self._rcv_nxt - 1) & 0xFFFF
        for e in self._backlog:
            raw = e.raw if e.raws is None else self._make_bundle(e.raws, e.imp)
            buf = bytearray(raw)
            _PACK_ACKS(buf, 6, bc_ack, ack, seq)
            pkts.append(bytes(buf))
            seq = (seq + 1) & 0xFFFF
        return pkts

    def _residue(self) -> LinkResidue:
        pkts = self.unacked_packets()
        end = (self._snd_nxt + len(self._backlog)) & 0xFFFF
        pkts.append(self.dummy_pkt(end))
        return LinkResidue(pkts, self._rcv_nxt, dict(self._deferred), self._reasm,
                           self.peer_bearer_id, (end + 1) & 0xFFFF)

    def failover_down(self, now: float) -> LinkResidue | None:
        """The peer started failing this link over (a FAILOVER_MSG came on the
        parallel link) while it still looks up here: reset it quietly - the peer's
        end is already down - and hand back what it owed (kernel: the node calls
        __tipc_node_link_down for the parallel link)."""
        if not self.is_up:
            return None
        residue = self._residue()
        self.fsm_evt(LinkEvent.RESET)
        self._reset_session()
        self._next_tick = now + self._interval
        return residue

    def failover_end(self, now: float) -> None:
        """LINK_FAILOVER_END_EVT: the tunnel delivered everything; set up afresh."""
        if self.state is LinkState.FAILINGOVER:
            self.fsm_evt(LinkEvent.FAILOVER_END)
            self._rst_cnt = 0
            self._next_tick = now
            self.tick(now)

    def activate(self, now: float) -> bool:
        """Take an ESTABLISHING link up now (a SYNCH_MSG is its first packet)."""
        if self.state is LinkState.ESTABLISHING and self.in_session:
            self._link_up(now)
            return True
        return False

    def failover_rx(self, residue: LinkResidue | None) -> None:
        """Receive a failover on this link: the failed link's rcv_nxt is the drop
        point, its deferred packets and half-joined message carry on here; None =
        a failed link that never received anything (tipc_link_failover_prepare)."""
        if residue is None:
            self.drop_point = 1
            self._fo_deferred = {}
            self._fo_reasm = Reassembler()
        else:
            self.drop_point = residue.rcv_nxt
            self._fo_deferred = residue.deferred
            self._fo_reasm = residue.reasm
        self._tnl_parts = []
        self._tnl_nof = 0

    def tnl_xmit(self, mtyp: int, pkts: list[bytes], tnl_bearer_id: int, now: float,
                 syncpt: int | None = None) -> int:
        """Send packets of the parallel link (the one on the peer's bearer
        ``tnl_bearer_id``) wrapped in TUNNEL_PROTOCOL ``mtyp`` messages on this link.
        A packet too big for this link is split into tunnel fragments when the peer
        has TIPC_TUNNEL_ENHANCED (FAILOVER only), else skipped, as the kernel does.
        ``syncpt`` replaces msgcnt (the enhanced SYNCH_MSG).  Returns packets sent."""
        dmax = self.mtu - INT_H_SIZE
        split = mtyp == FAILOVER_MSG and bool(self.peer_caps & Cap.TUNNEL_ENHANCED)
        parts: list[tuple[bytes, int]] = []
        for raw in pkts:
            n = len(raw)
            if n <= dmax:
                parts.append((raw, 0))
            elif split:
                nof = n // dmax + 1
                for k in range(nof):
                    parts.append((raw[k * dmax:(k + 1) * dmax], (k + 1) << _FRAGM_NO_SHIFT | nof))
            else:
                self.stats.tunnel_too_big += 1
        cnt = len(parts) if syncpt is None else syncpt
        w5 = (tnl_bearer_id & _BEARER_ID_MASK) << _BEARER_ID_SHIFT
        w9 = (cnt & 0xFFFF) << MSGCNT_SHIFT
        own, peer = self.own_addr, self.peer_addr
        for payload, w4 in parts:
            raw = _PROTO_HDR.pack(_W0_TUNNEL | (INT_H_SIZE + len(payload)), mtyp << MTYPE_SHIFT, 0,
                                  own, w4, w5, own, peer, 0, w9) + payload
            self._xmit_raw(raw, now)
        self.stats.tunnel_tx += len(parts)
        return len(parts)

    def send_dummy(self, now: float) -> None:
        """Queue the dummy message on this link (legacy synch needs one packet)."""
        self._xmit_raw(self.dummy_pkt(0), now)

    def _xmit_raw(self, raw: bytes, now: float) -> None:
        """Queue one encoded SYSTEM packet (never refused, never bundled).  Behind
        it in the backlog, no bundle of any importance may take more messages: a
        tunnel packet carries a sender's earlier messages (failover of the parallel
        link), and a later message of that sender joining a bundle queued before the
        tunnel packet would overtake them."""
        if not self._backlog and len(self._transmq) < self.window:
            self._xmit_new(raw, now)
        else:
            self._target[:] = [None] * len(self._target)
            self._backlog.append(_Pending(_SYSTEM, raw, 0))
            self._bl_len[_SYSTEM] += 1

    def _tnl_rcv(self, msg: Msg, now: float) -> bool:
        """An in-sequence TUNNEL_PROTOCOL packet: a SYNCH_MSG carries nothing to
        deliver; a FAILOVER_MSG carries a packet of the failed link, delivered once
        and in that link's order using its seqnos and the drop point.  False if
        this link failed meanwhile."""
        s = self.stats
        s.tunnel_rx += 1
        w = msg.w
        if len(w) < 10 or (w[1] >> MTYPE_SHIFT) != FAILOVER_MSG:
            # a SYNCH_MSG that started synching: what follows it on this link waits
            # (in the deferred queue) until the node calls resume()
            return self.state is not LinkState.SYNCHING
        w4 = w[4]
        nof = w4 & _NOF_FRAGMS_MASK
        if nof:
            no = w4 >> _FRAGM_NO_SHIFT
            parts = self._tnl_parts
            if no == 1 and not parts:
                self._tnl_nof = nof
            elif not parts or no != len(parts) + 1 or nof != self._tnl_nof:
                self._tnl_parts = []
                s.rx_bad_inner += 1
                self._failure(now, "tunnel reassembly failure")
                return False
            parts.append(bytes(msg.data))
            if no < nof:
                return True
            raw: bytes = b"".join(parts)
            self._tnl_parts = []
        else:
            raw = bytes(msg.data)
        try:
            inner: Msg | None = decode(raw)
        except DecodeError:
            s.rx_bad_inner += 1
            return True
        fdq = self._fo_deferred
        while inner is not None:
            seq = inner.w[2] & 0xFFFF
            dp = self.drop_point
            if seq == dp:
                self.drop_point = (dp + 1) & 0xFFFF
                if not self._fo_input(inner, now):
                    return False
            elif _less(seq, dp):
                s.duplicates += 1
            elif seq not in fdq and len(fdq) < _MAX_FO_DEFERRED:
                fdq[seq] = inner
            inner = fdq.pop(self.drop_point, None)
        return True

    def resume(self, now: float) -> None:
        """Synch ended: deliver what waited behind the SYNCH_MSG."""
        msg = self._deferred.pop(self._rcv_nxt, None)
        if msg is not None and self.is_up:
            self.receive(msg, now)

    def _fo_input(self, msg: Msg, now: float) -> bool:
        """tipc_link_input for a tunnelled packet, with the failed link's reassembly."""
        w = msg.w
        u = (w[0] >> USER_SHIFT) & USER_MASK
        if u <= 3:
            if (w[1] >> ERRCODE_SHIFT) & ERRCODE_MASK and len(w) > 5 and not w[5] and not msg.data:
                return True  # the failover dummy
            self._events.append(Delivered(msg))
            return True
        if u == _USER_BUNDLER:
            return self._input_inner(msg, u, now)
        if u == _USER_FRAGMENTER:
            try:
                whole = self._fo_reasm.feed(msg)
            except DecodeError:
                self.stats.rx_bad_inner += 1
                return True
            if whole is not None:
                self._events.append(Delivered(whole))
            return True
        if u in _NOT_BUNDLED and u != _USER_BCAST_PROTOCOL or u == _USER_LINK_PROTOCOL:
            self.stats.rx_bad_inner += 1
            return True
        self._events.append(Delivered(msg))
        return True

    # ------------------------------------------------------------ state changes
    def fsm_evt(self, evt: LinkEvent) -> bool:
        """Apply one FSM event (the only way the state changes after creation);
        True if it took the link down.  Public for the node, which owns failover and
        synch and drives FAILOVER_* / SYNCH_* on its links (kernel node.c)."""
        st = self.state
        nxt = TRANSITIONS.get((st, evt))
        if nxt is None:
            self.illegal_evts += 1
            return False
        self.state = nxt
        return st in _UP_STATES and nxt not in _UP_STATES and evt in _DOWN_EVTS


    def _link_up(self, now: float) -> None:
        self.fsm_evt(LinkEvent.ESTABLISH)
        self._last_rx = now
        self._rx_since_tick = True
        self.silent_intv_cnt = 0
        self._checkpoint = self._snd_nxt
        self._events.append(LinkUp())
        self.stats.sent_acks += 1
        self._proto(_STATE_MSG)
        pre = self._pre_up
        if pre:
            self._pre_up = []
            for imp, m in pre:
                self._bl_len[imp] -= 1
                self._enqueue(m, imp, (m.w[0] >> USER_SHIFT) & USER_MASK, now)

    def _failure(self, now: float, reason: str) -> None:
        """LINK_FAILURE_EVT on an up link: down, new session, RESET to the peer."""
        residue = self._residue() if self.is_up else None
        if self.fsm_evt(LinkEvent.FAILURE):
            self._events.append(LinkDown(reason, residue=residue))
        self.fsm_evt(LinkEvent.RESET)  # RESETTING -> RESET, as the node does
        self._reset_session()
        self._proto(_RESET_MSG, stopping=True)
        self._next_tick = now + self._interval

    def _peer_reset(self, now: float) -> None:
        """Peer sent a RESET while we were up: down, and straight to ESTABLISHING
        since we already know the peer's new session."""
        peer_session = self.peer_session
        residue = self._residue() if self.is_up else None
        if self.fsm_evt(LinkEvent.PEER_RESET):
            self._events.append(LinkDown("peer reset", self.state is LinkState.PEER_RESET,
                                         residue))
        self.fsm_evt(LinkEvent.RESET)  # PEER_RESET -> ESTABLISHING
        self._reset_session()
        self.peer_session = peer_session
        self.in_session = True
        self._proto(_ACTIVATE_MSG)
        self._next_tick = now + self._interval

    def _reset_session(self) -> None:
        """tipc_link_reset: forget the session's queues and counters."""
        self.in_session = False
        self.peer_session = (self.peer_session - 1) & 0xFFFF
        self.session = (self.session + 1) & 0xFFFF
        self.mtu = self.advertised_mtu
        self._transmq.clear()
        self._backlog.clear()
        self._pre_up.clear()
        self._deferred.clear()
        self._bl_len = [0] * 5
        self._target = [None] * 5
        self._reasm = Reassembler()  # a residue may hold the old one
        self._rcv_unacked = 0
        self._snd_nxt = 1
        self._rcv_nxt = 1
        self._snd_nxt_state = 1
        self._rcv_nxt_state = 1
        self._old_state_run = 0
        self._unserv_n = 0
        self._suspect = {}
        self._checkpoint = 1
        self.silent_intv_cnt = 0
        self._rst_cnt = 0
        self._probe_at = None
        self._rprobe_at = None
        self._supervised = True
        if self.monitor is not None:
            self.monitor.link_reset(self.peer_addr)
        self.stats.clear(keep_lifetime=True)
        if True in self._congested:
            self._wakeup()

    # ------------------------------------------------------------ protocol messages
    def _proto(
        self,
        mtyp: int,
        *,
        probe: bool = False,
        reply: bool = False,
        rcvgap: int = 0,
        tol: int = 0,
        prio: int = 0,
        stopping: bool = False,
    ) -> None:
        """Build and queue one LINK_PROTOCOL message (tipc_link_build_proto_msg)."""
        st = self.state
        if st in _BLOCKED_STATES:
            return
        up = st in _UP_STATES
        if mtyp == _STATE_MSG and not up:
            return
        s = self.stats
        snd_nxt = self._snd_nxt
        w1 = (mtyp << MTYPE_SHIFT) | (self.bcast_ack & BCAST_ACK_MASK)
        keepalive = 0
        if mtyp == _STATE_MSG:
            if (probe or reply) and self._deferred:
                rcvgap = (self._first_deferred() - self._rcv_nxt) & 0xFFFF
            # a peer checks our state seqnos if *we* advertise LINK_PROTO_SEQNO, and
            # we check its if it does: count whenever either side has the bit
            if (self.peer_caps | self.own_caps) & Cap.LINK_PROTO_SEQNO:
                seqno = self._snd_nxt_state
                self._snd_nxt_state = (seqno + 1) & 0xFFFF
            else:
                seqno = (snd_nxt + PROTO_SEQNO_OFFSET) & 0xFFFF
            w1 |= (rcvgap & SEQ_GAP_MASK) << SEQ_GAP_SHIFT
            # a kernel reads a Gap-ACK header if we advertise the cap: always send it
            if (self.peer_caps | self.own_caps) & Cap.GAP_ACK_BLOCK:
                data = self._gap_ack_blocks(rcvgap)
                if self.bc_gap_blocks:
                    data = self._with_bc_blocks(data)
            else:
                data = b""
            if self.monitor is not None:  # domain record after the Gap-ACK blocks
                data += self.monitor.prepare(self.peer_addr)
            w8 = self.bc_gap & 0x3FF
            w9 = tol & 0xFFFF
            keepalive = 1 if (probe or reply) else 0
            s.sent_states += 1
            self._rcv_unacked = 0
        else:
            seqno = (snd_nxt + PROTO_SEQNO_OFFSET) & 0xFFFF
            if mtyp == _ACTIVATE_MSG:
                w1 = (mtyp << MTYPE_SHIFT) | _DEST_SESSION_VALID_BIT | (self.peer_session & 0xFFFF)
            data = self._if_payload
            w8 = 0
            w9 = ((self.advertised_mtu // 4) & MAX_PKT_MASK) << MAX_PKT_SHIFT | (tol & TOLERANCE_MASK)
            probe = False
        redundant = 1 if (up and self.peer_node_up) else 0
        w5 = (
            (self.session & 0xFFFF) << _SESSION_SHIFT
            | (1 if self.bc_ack_invalid else 0) << _BC_ACK_INVALID_SHIFT
            | (1 if stopping else 0) << _STOPPING_SHIFT
            | redundant << _REDUNDANT_SHIFT
            | (self.bearer_id & _BEARER_ID_MASK) << _BEARER_ID_SHIFT
            | (prio & LINKPRIO_MASK) << LINKPRIO_SHIFT
            | (self.net_plane & _NET_PLANE_MASK) << _NET_PLANE_SHIFT
            | (1 if probe else 0)
        )
        size = INT_H_SIZE + len(data)
        hdr = _PROTO_HDR.pack(
            _W0_PROTO | keepalive << KEEPALIVE_SHIFT | size,
            w1,
            ((self._rcv_nxt - 1) & ACK_MASK) << ACK_SHIFT | seqno,
            self.own_addr,
            (self._bc_cell[0] & 0xFFFF) << 16 | snd_nxt,  # w4: last_bcast, next_sent
            w5,
            self.own_addr,
            self.peer_addr,
            w8,
            w9,
        )
        self._out.append(hdr + data)
        if probe:
            s.sent_probes += 1
        if rcvgap:
            s.sent_nacks += 1
