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
  NACK (STATE with ``seq_gap`` and Gap-ACK blocks) at 3 deferred and every 16 more;
  retransmission at most once per 1 ms per packet; reset after 10 x tolerance
  without progress on a retransmitted head.
* **Supervision**: the tick interval is ``min(tolerance/4, 500 ms)``.  A tick probes
  the peer when nothing was received since the previous one, when packets are
  missing, or when nothing new was sent (an idle link: one probe per tick and side,
  as the kernel); the link fails at the first tick at least ``tolerance`` after the
  last packet accepted from the peer, i.e. after between ``tolerance`` and
  ``tolerance + interval`` of silence.
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
from tipcpy.wire import DecodeError, Msg
from tipcpy.wire.consts import (
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
)
from tipcpy.wire.fragment import Reassembler
from tipcpy.wire.fragment import fragment as _fragment
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
NACK_FIRST, NACK_EVERY = 3, 16
RETR_INTERVAL = 0.001
"""TIPC_UC_RETR_TIME: a packet is retransmitted at most once per millisecond."""
RETR_FAIL_MULT = 10
"""Link fails when a retransmitted head stays unacked for 10 x tolerance."""
MAX_UC_GAP_BLOCKS = 64
KEEPALIVE_MAX = 0.5
PROTO_SEQNO_OFFSET = 32767

_USER_BCAST_PROTOCOL = 5
_USER_BUNDLER = 6
_USER_LINK_PROTOCOL = 7
_USER_TUNNEL = 10
_USER_FRAGMENTER = 12
_NOT_BUNDLED = frozenset({_USER_BCAST_PROTOCOL, _USER_BUNDLER, _USER_TUNNEL, _USER_FRAGMENTER})
_SYSTEM = 4

_STATE_MSG, _RESET_MSG, _ACTIVATE_MSG = 0, 1, 2
_W0_PROTO = (2 << 29) | (_USER_LINK_PROTOCOL << 25) | ((INT_H_SIZE // 4) << 21)
"""w0 of every link protocol message (0x4f400000) before keepalive bit and size."""
_PROTO_HDR = struct.Struct(">10I")
_PACK_ACKS = struct.Struct(">HHH").pack_into
"""bcast_ack (w1[15:0]), ack and seqno (w2) are bytes 6..11 of every header."""
_GAP_HDR = struct.Struct(">HBB")
_GAP_BLK = struct.Struct(">HH")
_EMPTY_GAP_ACK = b"\x00\x04\x00\x00"
_W0_BUNDLE = (2 << 29) | (_USER_BUNDLER << 25) | ((INT_H_SIZE // 4) << 21)
_PAD = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")
_HDRS = [struct.Struct(f">{n}I") for n in range(16)]
_W0_KEEP = 0xFE1E0000  # w0 without hsize (24:21) and size (16:0), as in Msg.encode()


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
    """The link left ESTABLISHED; everything queued on it was discarded.

    ``peer_reset`` is the kernel's tipc_link_peer_is_down() at the moment the link
    went down (it was the peer's RESET, so the peer knows): the node FSM needs it to
    take PEER_LOST_CONTACT before SELF_LOST_CONTACT, and the link has already moved
    on to ESTABLISHING by the time the node reads the event."""

    __slots__ = ("reason", "peer_reset")

    def __init__(self, reason: str, peer_reset: bool = False) -> None:
        self.reason = reason
        self.peer_reset = peer_reset


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
    rx_invalid: int = 0
    """Malformed or impossible input: bad Gap-ACK blocks, acks of unsent packets,
    RESET/ACTIVATE without interface name or with a tiny max_pkt, non_seq packets."""
    rx_not_up: int = 0
    """Sequenced packets dropped because the link was not up."""
    rx_bad_inner: int = 0
    """Bundles that did not split / fragments that did not join."""
    rtt: LinkRtt = field(default_factory=LinkRtt)
    """Probe round trips (not in as_dict(): shown by ``-s`` on its own lines)."""

    @property
    def avg_queue_sz(self) -> int:
        return self.accu_queue_sz // self.queue_sz_counts if self.queue_sz_counts else 0

    @property
    def msg_length_avg(self) -> int:
        return self.msg_lengths_total // self.msg_length_counts if self.msg_length_counts else 0

    def clear(self) -> None:
        for f in fields(self):
            setattr(self, f.name, [0] * 7 if f.name == "msg_length_profile" else 0)
        self.rtt = LinkRtt()

    def as_dict(self) -> dict[str, int | list[int]]:
        d: dict[str, int | list[int]] = {f.name: getattr(self, f.name) for f in fields(self)
                                         if f.name != "rtt"}
        d["msg_length_profile"] = list(self.msg_length_profile)
        d["avg_queue_sz"] = self.avg_queue_sz
        d["msg_length_avg"] = self.msg_length_avg
        return d


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
    msgcnt = m.w[9] >> 16 if len(m.w) > 9 else 0
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
        self.last_bcast = 0
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
        self._rcv_unacked = 0
        self._deferred: dict[int, Msg] = {}
        self._reasm = Reassembler()
        # supervision
        self._interval = min(tolerance / 4000.0, KEEPALIVE_MAX)
        self._next_tick: float | None = None
        self._last_rx = 0.0
        self._rx_since_tick = False
        self.silent_intv_cnt = 0
        self._rst_cnt = 0
        self._checkpoint = 1
        self._probe_at: float | None = None  # when the last unanswered probe left

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
        if nt is not None and self.state in _UP_STATES:
            fail_at = self._last_rx + self.tolerance / 1000.0
            if fail_at < nt:
                return fail_at
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

    def tick(self, now: float) -> None:
        """Link timer (tipc_link_timeout): RESET/ACTIVATE while setting up; acks,
        probes, NACKs and failure detection once up.  Does nothing before the
        deadline, so the driver may call it whenever it likes."""
        nt = self._next_tick
        if nt is None:
            return
        st = self.state
        if st in _UP_STATES and now >= self._last_rx + self.tolerance / 1000.0:
            self._failure(now, "link timeout: peer silent for the tolerance")
            return
        if now < nt:
            return
        self._next_tick = now + self._interval
        if st in _UP_STATES:
            tq = self._transmq
            s = self.stats
            s.accu_queue_sz += len(tq)
            s.queue_sz_counts += 1
            silent = not self._rx_since_tick
            self._rx_since_tick = False
            if silent:
                self.silent_intv_cnt += 1
            else:
                self.silent_intv_cnt = 0
            # As the kernel: probe when the peer was silent, when we wait for
            # retransmissions, and whenever we sent nothing new since the last tick
            # (so an idle link sends one probe per tick and side, never more).  The
            # probes of both sides are what keeps a lossy link from timing out.
            probe = silent or bool(self._deferred) or self._snd_nxt == self._checkpoint
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

    def reset(self, now: float, reason: str) -> None:
        """Local reset or disable: the link goes down (LinkDown if it was up), starts
        a new session and tells the peer with a RESET carrying ``peer_stopping`` -
        which is what a kernel sends when it takes a link down."""
        if self.is_up:
            self.fsm_evt(LinkEvent.FAILURE)
            self._events.append(LinkDown(reason))
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
        self._interval = min(tol / 4000.0, KEEPALIVE_MAX)
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
        user = (w[0] >> 25) & 0xF
        if user <= 3 and not (w[1] >> 25) & 0xF:
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
                w[0] = (w[0] & _W0_KEEP) | (n << 21) | size  # as Msg.encode() does
                w1 = w[1]
                w2 = w[2]
                w[1] = (w1 & 0xFFFF0000) | (self.bcast_ack & 0xFFFF)
                w[2] = ((self._rcv_nxt - 1) & 0xFFFF) << 16 | seq
                raw = _HDRS[n].pack(*w) + data
                w[1] = w1
                w[2] = w2
                tq.append([seq, raw, now + RETR_INTERVAL, 0, 0.0])
                self._out.append(raw)
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
            w[0] = (w[0] & _W0_KEEP) | (n << 21) | size
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
        """MSG_BUNDLER packet from already encoded messages, laid out exactly as
        tipcpy.wire.bundle.bundle() (and the kernel) do, without decoding and
        re-encoding every inner message on this hot path."""
        parts: list[bytes] = []
        used = 0
        for r in raws:
            pad = -used & 3
            if pad:
                parts.append(_PAD[pad])
                used += pad
            parts.append(r)
            used += len(r)
        return _PROTO_HDR.pack(
            _W0_BUNDLE | (INT_H_SIZE + used),
            0,
            0,
            self.own_addr,
            0,
            0,
            self.own_addr,
            self.peer_addr,
            0,
            len(raws) << 16 | imp,
        ) + b"".join(parts)

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
        user = (w0 >> 25) & 0xF
        if user == _USER_LINK_PROTOCOL:
            self._proto_rcv(msg, now)
            return
        s = self.stats
        if w0 & (1 << 20):  # non_seq: broadcast-link traffic is the node's
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
            acked = w2 >> 16
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
            if n >= NACK_FIRST and (n - NACK_FIRST) % NACK_EVERY == 0:
                self._proto(_STATE_MSG, rcvgap=(self._first_deferred() - rcv_nxt) & 0xFFFF)
            return
        dq = self._deferred
        events = self._events
        while True:
            rcv_nxt = (rcv_nxt + 1) & 0xFFFF
            self._rcv_nxt = rcv_nxt
            s.recv_pkts += 1
            self._rcv_unacked += 1
            u = (msg.w[0] >> 25) & 0xF
            if u == _USER_BUNDLER or u == _USER_FRAGMENTER:
                if not self._input_inner(msg, u, now):
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
                if (m.w[0] >> 25) & 0xF in _NOT_BUNDLED:
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
        mtyp = w1 >> 29
        w5 = w[5]
        session = w5 >> 16
        if self.own_addr > w[3]:
            self.net_plane = (w5 >> 1) & 7
        # validation (tipc_link_validate_msg)
        if mtyp == _RESET_MSG:
            ok = not self.in_session or _less(self.peer_session, session)
        elif mtyp == _ACTIVATE_MSG:
            ok = not self.in_session or not _less(session, self.peer_session)
        elif mtyp == _STATE_MSG:
            ok = self.in_session and session == self.peer_session
            if ok and self.state not in _UP_STATES and (w[2] >> 16):
                ok = False
            if ok and self.peer_caps & Cap.LINK_PROTO_SEQNO:
                ok = not _less(w[2] & 0xFFFF, self._rcv_nxt_state)
        else:
            ok = False
        if not ok:
            s.rx_proto_rejected += 1
            return
        peers_tol = w[9] & 0xFFFF
        peers_prio = (w5 >> 4) & 0x1F
        if mtyp != _STATE_MSG:
            self._reset_activate_rcv(msg, mtyp, session, peers_tol, peers_prio, now)
            return
        # ---- STATE
        data = msg.data
        ga = self._parse_gap_blocks(data, w[2] >> 16, (w1 >> 16) & 0x1FFF)
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
        elif (w[0] >> 19) & 1 and self._probe_at is not None:
            # keepalive bit without probe bit: the reply to our last probe
            s.rtt.add(max(0.0, now - self._probe_at))
            self._probe_at = None
        if self.state not in _UP_STATES:
            if self.state == LinkState.ESTABLISHING:
                self._link_up(now)
            return
        rcvgap = 0
        peers_snd_nxt = w[4] & 0xFFFF
        rcv_nxt = self._rcv_nxt
        if (probe or (w[0] >> 19) & 1) and _less(rcv_nxt, peers_snd_nxt) and not self._deferred:
            rcvgap = (peers_snd_nxt - rcv_nxt) & 0xFFFF
        if rcvgap or probe:
            self._proto(_STATE_MSG, reply=bool(probe), rcvgap=rcvgap)
        acked = w[2] >> 16
        gap = (w1 >> 16) & 0x1FFF
        if gap:
            s.recv_nacks += 1
        if not _less_eq(acked, (self._snd_nxt - 1) & 0xFFFF):
            s.rx_invalid += 1  # acks something never sent: ignore the ack part
            return
        released = self._advance_transmq(acked, gap, ga[1], now)
        if released > 0 and self._backlog:
            self._advance_backlog(now)

    def _reset_activate_rcv(
        self, msg: Msg, mtyp: int, session: int, peers_tol: int, peers_prio: int, now: float
    ) -> None:
        s = self.stats
        w = msg.w
        max_pkt = (w[9] >> 16) * 4
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
        if (w[5] >> 13) & 1:  # peer_stopping: full re-establish cycle
            if self.is_up:
                self._failure(now, "peer stopping")
            return
        w1 = w[1]
        if mtyp == _ACTIVATE_MSG and (w1 >> 16) & 1 and self.session != (w1 & 0xFFFF):
            # we were re-created while the peer was establishing: resynch sessions
            if _less(self.session, w1 & 0xFFFF):
                self.session = ((w1 & 0xFFFF) + 1) & 0xFFFF
            return
        self.peer_session = session
        self.in_session = True
        self.peer_bearer_id = (w[5] >> 9) & 7
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
                self._enqueue(m, imp, (m.w[0] >> 25) & 0xF, now)

    def _failure(self, now: float, reason: str) -> None:
        """LINK_FAILURE_EVT on an up link: down, new session, RESET to the peer."""
        if self.fsm_evt(LinkEvent.FAILURE):
            self._events.append(LinkDown(reason))
        self.fsm_evt(LinkEvent.RESET)  # RESETTING -> RESET, as the node does
        self._reset_session()
        self._proto(_RESET_MSG, stopping=True)
        self._next_tick = now + self._interval

    def _peer_reset(self, now: float) -> None:
        """Peer sent a RESET while we were up: down, and straight to ESTABLISHING
        since we already know the peer's new session."""
        peer_session = self.peer_session
        if self.fsm_evt(LinkEvent.PEER_RESET):
            self._events.append(LinkDown("peer reset", self.state is LinkState.PEER_RESET))
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
        self._reasm.reset()
        self._rcv_unacked = 0
        self._snd_nxt = 1
        self._rcv_nxt = 1
        self._snd_nxt_state = 1
        self._rcv_nxt_state = 1
        self._checkpoint = 1
        self.silent_intv_cnt = 0
        self._rst_cnt = 0
        self._probe_at = None
        self.stats.clear()
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
        w1 = (mtyp << 29) | (self.bcast_ack & 0xFFFF)
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
            w1 |= (rcvgap & 0x1FFF) << 16
            # a kernel reads a Gap-ACK header if we advertise the cap: always send it
            if (self.peer_caps | self.own_caps) & Cap.GAP_ACK_BLOCK:
                data = self._gap_ack_blocks(rcvgap)
                if self.bc_gap_blocks:
                    data = self._with_bc_blocks(data)
            else:
                data = b""
            w8 = self.bc_gap & 0x3FF
            w9 = tol & 0xFFFF
            keepalive = 1 if (probe or reply) else 0
            s.sent_states += 1
            self._rcv_unacked = 0
        else:
            seqno = (snd_nxt + PROTO_SEQNO_OFFSET) & 0xFFFF
            if mtyp == _ACTIVATE_MSG:
                w1 = (mtyp << 29) | (1 << 16) | (self.peer_session & 0xFFFF)
            data = self._if_payload
            w8 = 0
            w9 = ((self.advertised_mtu // 4) & 0xFFFF) << 16 | (tol & 0xFFFF)
            probe = False
        redundant = 1 if (up and self.peer_node_up) else 0
        w5 = (
            (self.session & 0xFFFF) << 16
            | (1 if self.bc_ack_invalid else 0) << 14
            | (1 if stopping else 0) << 13
            | redundant << 12
            | (self.bearer_id & 7) << 9
            | (prio & 0x1F) << 4
            | (self.net_plane & 7) << 1
            | (1 if probe else 0)
        )
        size = INT_H_SIZE + len(data)
        hdr = _PROTO_HDR.pack(
            _W0_PROTO | keepalive << 19 | size,
            w1,
            ((self._rcv_nxt - 1) & 0xFFFF) << 16 | seqno,
            self.own_addr,
            (self.last_bcast & 0xFFFF) << 16 | snd_nxt,
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
