"""Neighbour monitoring: the Overlapping Ring Monitor (ORM), one :class:`Monitor` per bearer.

Mirrors the kernel's ``net/tipc/monitor.c`` (facts, not code).  Why it exists: with a
full mesh every node supervises every other node, so supervision work grows with N per
node.  Above a threshold (default 32 nodes) each node actively supervises only its
*local domain* - the ``ceil(sqrt(N)) - 1`` peers that follow it on a ring sorted by node
address - and tells every peer, in a *domain record* piggybacked on link STATE messages,
which of those it currently sees up.  Every node then learns about the rest of the
cluster from the records of the *domain heads* it has chosen, so the cluster is covered
with about sqrt(N) actively probed links per node.

Kernel facts mirrored here:

* Domain record wire layout (all network byte order; the kernel's ``mon_cpu_to_le*``
  helpers are in fact ``htons/htonl/cpu_to_be64``): ``be16 len, be16 gen, be16 ack_gen,
  be16 member_cnt, be64 up_map, be32 members[member_cnt]``; 16-byte header; at most 64
  members (``MAX_MON_DOMAIN``).  Bit ``i`` of ``up_map`` is member ``i``.
* Receive validation (``tipc_mon_rcv``): ``member_cnt > 64``, a payload shorter than the
  header, a payload whose length is not exactly ``16 + 4*member_cnt``, or a ``len``
  field that disagrees - the record is dropped (CVE-2022-0435 was the missing first
  check).  Records arrive only on links that are up.
* Local domain size: ``dom_size(peer_cnt)`` = smallest ``i`` with ``i*i >= peer_cnt``
  capped at 64; ``peer_cnt`` counts this node too; the local domain has
  ``dom_size - 1`` members.
* Active when ``peer_cnt > threshold``; below it every link is monitored (full mesh)
  and STATE carries no record at all.  Threshold range 0..4095 (``TIPC_CLUSTER_SIZE``).
* Generations are 16-bit serials compared modulo 2^16.  Our domain generation grows on
  every change of the local domain's members or up bits; a peer that has not acked the
  current one gets the full record (and is probed so it answers), otherwise it gets a
  16-byte dummy record whose ``ack_gen`` acks the peer's own generation.
* Loss of a peer outside the local domain is inferred: a head's new record that shows
  a member down (or drops it from the applied domain) makes this node *probe* that
  member (``down_cnt`` > 0); four such reports (``MAX_PEER_DOWN_EVENTS``) reset the
  link at once; a link to a probed peer that stays silent for its tolerance fails the
  ordinary way.  Any record from the peer itself clears ``down_cnt``.
* A timer every ``MON_TIMEOUT`` (120 s) + ``random & 0xffff`` ms resizes the local
  domain if the cluster size changed without touching it.

What tipcpy does with it (a decision, measured in bench/scale_cases.py): it is
kernel-exact, with the kernel's two probing rules.  Since Linux 5.6
``tipc_link_timeout`` probes an idle link on every tick whatever the monitor says
(``snd_nxt == checkpoint``), so the monitor decides which silent links count toward
failure, not how many STATE messages flow: a node still sends and answers one probe per
peer and tick (1360 STATEs/node/s at N = 256, the same as a full mesh), but only ~31 of
its 255 links can fail on silence, the rest fail when the nodes that supervise the peer
report it lost.  That is the default (``Stack.probe_idle``).  Linux 4.7-5.5, where the
monitor arrived, probed only after a silent interval and counted silence only on the
links the monitor supervises: the ORM design, O(sqrt N) traffic.  ``probe_idle = False``
(tipcd ``--probing silent``) is that rule; it mixes with either kernel (a 5.6+ peer
probes us every tick and we answer).

Contract (project style, sans-IO): events in - :meth:`peer_up`, :meth:`peer_down`,
:meth:`remove_peer` (from links/nodes), :meth:`link_reset`, :meth:`receive` (the STATE
payload after the Gap-ACK blocks, from a peer whose link is up), ``now`` via
:meth:`tick`; out - :meth:`prepare` (bytes to append to the next STATE to a peer),
:meth:`get_state` / :meth:`monitored_peers` (which links probe actively, which must
reset), events (:class:`PeerReportedDown`, :class:`PeerResetByMonitor`) and
introspection (:meth:`summary`, :meth:`list_peers`) for ``tipc link monitor``.
"""

from __future__ import annotations

import struct
from bisect import bisect_left, insort
from dataclasses import dataclass, field

from tipcpy.wire import DecodeError

__all__ = [
    "MAX_MON_DOMAIN",
    "MON_TIMEOUT",
    "MAX_PEER_DOWN_EVENTS",
    "DEF_MON_THRESHOLD",
    "TIPC_CLUSTER_SIZE",
    "DOM_HDR_SIZE",
    "DomainRecordError",
    "DomainRecord",
    "dom_size",
    "dom_rec_len",
    "MonState",
    "MonPeer",
    "MonStats",
    "Monitor",
    "PeerReportedDown",
    "PeerResetByMonitor",
]

MAX_MON_DOMAIN = 64
MON_TIMEOUT = 120.0
MAX_PEER_DOWN_EVENTS = 4
DEF_MON_THRESHOLD = 32
TIPC_CLUSTER_SIZE = (1 << 12) - 1
DOM_HDR_SIZE = 16

_HDR = struct.Struct("!HHHHQ")
_U16 = 0xFFFF


def _more(a: int, b: int) -> bool:
    """16-bit serial ``a > b`` (kernel ``more``)."""
    return ((b - a) & _U16) >= 0x8000


def dom_size(peers: int) -> int:
    """Kernel dom_size(): smallest i with i*i >= peers, at most MAX_MON_DOMAIN."""
    i = 0
    while i * i < peers:
        i += 1
    return min(i, MAX_MON_DOMAIN)


def dom_rec_len(member_cnt: int) -> int:
    return DOM_HDR_SIZE + 4 * member_cnt


# ---------------------------------------------------------------- codec
class DomainRecordError(DecodeError):
    """A domain record that the kernel's tipc_mon_rcv() would drop."""


@dataclass(frozen=True)
class DomainRecord:
    """One domain record as carried in a STATE message.

    ``length`` is the ``len`` field as sent; :meth:`encode` always writes the real
    length, so only :meth:`decode` of a valid record can produce an object.
    """

    gen: int
    ack_gen: int
    up_map: int
    members: tuple[int, ...] = ()

    @property
    def member_cnt(self) -> int:
        return len(self.members)

    @property
    def length(self) -> int:
        return dom_rec_len(len(self.members))

    def is_up(self, i: int) -> bool:
        return bool((self.up_map >> i) & 1)

    def encode(self) -> bytes:
        n = len(self.members)
        if n > MAX_MON_DOMAIN:
            raise ValueError(f"domain record with {n} members (max {MAX_MON_DOMAIN})")
        hdr = _HDR.pack(dom_rec_len(n), self.gen & _U16, self.ack_gen & _U16, n,
                        self.up_map & 0xFFFFFFFFFFFFFFFF)
        return hdr + struct.pack(f"!{n}I", *self.members)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, base: int = 0) -> DomainRecord:
        """Parse exactly ``data`` (the STATE payload after the Gap-ACK blocks).

        Validation as the kernel's: header present, member_cnt <= 64, payload length
        exactly header + 4*member_cnt, and the ``len`` field equal to that length.
        ``base`` is only used to report offsets relative to the enclosing message.
        """
        dlen = len(data)
        if dlen < DOM_HDR_SIZE:
            raise DomainRecordError("domain record", base, f"{dlen} bytes, header needs 16",
                                    dlen)
        length, gen, ack_gen, cnt, up_map = _HDR.unpack_from(data, 0)
        if cnt > MAX_MON_DOMAIN:
            raise DomainRecordError("member_cnt", base + 6, f"more than {MAX_MON_DOMAIN}", cnt)
        need = dom_rec_len(cnt)
        if dlen != need:
            raise DomainRecordError("domain record length", base,
                                    f"{dlen} bytes for {cnt} members, must be {need}", dlen)
        if length != need:
            raise DomainRecordError("len", base, f"must be {need} for {cnt} members", length)
        members = struct.unpack_from(f"!{cnt}I", data, DOM_HDR_SIZE)
        return cls(gen, ack_gen, up_map, tuple(members))


# ---------------------------------------------------------------- per-link state
@dataclass
class MonState:
    """Per-link cache of the monitor state (kernel struct tipc_mon_state).

    The kernel keeps it in the link and zeroes it on every link reset; here the
    monitor keeps one per peer so the link needs no new fields: call
    :meth:`Monitor.link_reset` where the kernel's tipc_link_reset() runs.
    """

    list_gen: int = 0
    peer_gen: int = 0
    acked_gen: int = 0
    monitoring: bool = False
    probing: bool = False
    reset: bool = False
    synched: bool = False


@dataclass(eq=False, slots=True)
class MonPeer:
    """A node on the ring (kernel struct tipc_peer); ``domain`` is its last applied record.

    ``nxt``/``prv`` link the ring in ascending circular address order, as the kernel's
    list does, so walking the ring costs no lookups.
    """

    addr: int
    domain: DomainRecord | None = None
    applied: int = 0
    down_cnt: int = 0
    is_up: bool = False
    is_head: bool = False
    is_local: bool = False
    nxt: MonPeer | None = field(default=None, repr=False)
    prv: MonPeer | None = field(default=None, repr=False)


@dataclass
class MonStats:
    rx_records: int = 0
    rx_dummy: int = 0
    rx_duplicate: int = 0
    rx_applied: int = 0
    rx_malformed: int = 0
    rx_unknown_peer: int = 0
    tx_full: int = 0
    tx_dummy: int = 0
    down_reports: int = 0
    monitor_resets: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class PeerReportedDown:
    """Another node's domain record says ``addr`` is lost: its link should probe now."""

    bearer_id: int
    addr: int
    reporter: int
    down_cnt: int


@dataclass(frozen=True)
class PeerResetByMonitor:
    """``MAX_PEER_DOWN_EVENTS`` reports: the link to ``addr`` must fail now (mstate->reset)."""

    bearer_id: int
    addr: int


# ---------------------------------------------------------------- the monitor
class Monitor:
    """The ring, the local domain and the applied domains of one bearer."""

    def __init__(self, self_addr: int, *, bearer_id: int = 0, bearer_name: str = "",
                 threshold: int = DEF_MON_THRESHOLD, now: float = 0.0,
                 random16: int = 0) -> None:
        self.bearer_id = bearer_id
        self.bearer_name = bearer_name
        self._threshold = 0
        self.threshold = threshold
        me = MonPeer(self_addr, is_up=True, is_head=True)
        me.nxt = me.prv = me
        me.domain = DomainRecord(0, 0, 0, ())
        self.self_peer = me
        self._peers: dict[int, MonPeer] = {self_addr: me}
        self._ring: list[int] = [self_addr]  # sorted; circular order = ring order
        self.list_gen = 0
        self.dom_gen = 0
        self._cache = b""  # our full record without ack_gen (filled per peer)
        self._states: dict[int, MonState] = {}
        self._events: list[PeerReportedDown | PeerResetByMonitor] = []
        self.stats = MonStats()
        self.timer_intv = MON_TIMEOUT + (random16 & 0xFFFF) / 1000.0
        self._deadline = now + self.timer_intv
        self._update_local_domain()

    # ---- configuration / introspection ----------------------------------------------
    @property
    def threshold(self) -> int:
        return self._threshold

    @threshold.setter
    def threshold(self, value: int) -> None:
        """``tipc link monitor set threshold``: the kernel refuses more than 4095 (EINVAL)."""
        if not 0 <= value <= TIPC_CLUSTER_SIZE:
            raise ValueError(f"threshold {value} out of range 0..{TIPC_CLUSTER_SIZE}")
        self._threshold = value

    @property
    def self_addr(self) -> int:
        return self.self_peer.addr

    @property
    def peer_cnt(self) -> int:
        """Nodes on the ring, this one included (kernel mon->peer_cnt)."""
        return len(self._ring)

    @property
    def active(self) -> bool:
        return self.peer_cnt > self._threshold

    def peer(self, addr: int) -> MonPeer | None:
        return self._peers.get(addr)

    def ring(self) -> list[MonPeer]:
        """All nodes in ring order starting with this node (the order of ``list``)."""
        i = bisect_left(self._ring, self.self_addr)
        order = self._ring[i:] + self._ring[:i]
        return [self._peers[a] for a in order]

    def local_domain(self) -> list[int]:
        """Addresses this node supervises actively as members of its own domain."""
        dom = self.self_peer.domain
        return list(dom.members) if dom else []

    def summary(self) -> dict[str, object]:
        """One bearer's entry of ``tipc link monitor summary``."""
        return {
            "bearer": self.bearer_name,
            "table_generation": self.list_gen,
            "cluster_size": self.peer_cnt,
            "algorithm": "overlapping-ring" if self.active else "full-mesh",
        }

    def list_peers(self) -> list[dict[str, object]]:
        """Rows of ``tipc link monitor list`` (the netlink attributes per peer).

        ``monitored`` is "direct" for local members and heads, "indirect" otherwise;
        ``applied_node_status`` has one U/D per applied member and
        ``non_applied`` the ``(addr, U/D)`` of the rest, only when a domain is known
        (the CLI prints nothing after the generation otherwise).
        """
        rows: list[dict[str, object]] = []
        for p in self.ring():
            row: dict[str, object] = {
                "addr": p.addr,
                "status": "up" if p.is_up else "down",
                "monitored": "direct" if (p.is_local or p.is_head) else "indirect",
                "generation": p.domain.gen if p.domain else 0,
                "applied": p.applied,
                "is_local": p.is_local,
                "is_head": p.is_head,
                "down_cnt": p.down_cnt,
            }
            if p.domain is not None:
                d = p.domain
                row["up_map"] = d.up_map
                row["members"] = list(d.members)
                row["applied_node_status"] = [
                    "U" if d.is_up(i) else "D" for i in range(min(p.applied, d.member_cnt))]
                row["non_applied"] = [
                    (d.members[i], "U" if d.is_up(i) else "D")
                    for i in range(p.applied, d.member_cnt)]
            rows.append(row)
        return rows

    # ---- ring helpers -----------------------------------------------------------------
    def _idx(self, addr: int) -> int:
        return bisect_left(self._ring, addr)

    @staticmethod
    def _nxt(p: MonPeer) -> MonPeer:
        n = p.nxt
        assert n is not None
        return n

    @staticmethod
    def _prev(p: MonPeer) -> MonPeer:
        n = p.prv
        assert n is not None
        return n

    def _head_of(self, p: MonPeer) -> MonPeer:
        while not p.is_head:
            p = self._prev(p)
        return p

    # ---- kernel algorithm --------------------------------------------------------------
    def _apply_domain(self, p: MonPeer) -> None:
        """How many leading members of p's record match the ring after p."""
        dom = p.domain
        if dom is None or not p.is_up:
            return
        n = 0
        m = p.nxt
        for a in dom.members:
            if m is None or a != m.addr:
                break
            n += 1
            m = m.nxt
        p.applied = n

    def _update_local_domain(self) -> None:
        me = self.self_peer
        dom = me.domain
        assert dom is not None
        cnt = dom_size(self.peer_cnt) - 1
        me.applied = cnt
        members: list[int] = []
        up_map = dom.up_map
        p = me
        for i in range(cnt):
            p = self._nxt(p)
            members.append(p.addr)
            # as the kernel: only bits below member_cnt are rewritten
            up_map = (up_map & ~(1 << i)) | (int(p.is_up) << i)
        if tuple(members) == dom.members and up_map == dom.up_map:
            return
        self.dom_gen = (self.dom_gen + 1) & _U16
        me.domain = DomainRecord(self.dom_gen, 0, up_map, tuple(members))
        self._cache = me.domain.encode()
        self._apply_domain(me)

    def _update_neighbors(self, p: MonPeer) -> None:
        for _ in range(dom_size(self.peer_cnt)):
            self._apply_domain(p)
            p = self._prev(p)

    def _assign_roles(self, head: MonPeer) -> None:
        me = self.self_peer
        p = head.nxt
        applied = head.applied
        local = head is me
        i = 0
        while p is not me and p is not None:
            p.is_local = False
            if i < applied:
                i += 1
                p.is_head = False
                if local:
                    p.is_local = True
            else:
                i += 1
                if p.is_up:
                    if p.is_head:
                        break
                    head = p
                    p.is_head = True
                    applied = p.applied
                    local = False
                    i = 0
            p = p.nxt
        self.list_gen = (self.list_gen + 1) & 0xFFFFFFFF

    def _identify_lost_members(self, p: MonPeer, dom_bef: DomainRecord | None,
                               applied_bef: int) -> None:
        if dom_bef is None:
            return
        dom_aft = p.domain
        applied_aft = p.applied
        m = p
        for i in range(applied_bef):
            m = self._nxt(m)
            if not m.is_up or not dom_bef.is_up(i):
                continue
            if m.is_local:  # loss of a local member is found by our own probing
                continue
            if m is self.self_peer:
                # the kernel marks itself here too (a reporter's domain holds us);
                # nothing reads it, so we leave it out
                continue
            if not applied_aft or applied_aft < i:
                m.down_cnt = 1
                self._report(m, p)
                continue
            if dom_aft is not None and not dom_aft.is_up(i):
                m.down_cnt = min(m.down_cnt + 1, 255)
                self._report(m, p)

    def _report(self, m: MonPeer, reporter: MonPeer) -> None:
        self.stats.down_reports += 1
        self._events.append(PeerReportedDown(self.bearer_id, m.addr, reporter.addr,
                                             m.down_cnt))
        if m.down_cnt >= MAX_PEER_DOWN_EVENTS:
            self._events.append(PeerResetByMonitor(self.bearer_id, m.addr))

    def _add_peer(self, addr: int) -> MonPeer:
        p = MonPeer(addr)
        self._peers[addr] = p
        insort(self._ring, addr)
        r = self._ring
        i = self._idx(addr)
        after = self._peers[r[i + 1 if i + 1 < len(r) else 0]]
        before = self._prev(after)
        p.prv, p.nxt = before, after
        before.nxt = after.prv = p
        self._update_neighbors(p)
        return p

    # ---- events in ----------------------------------------------------------------------
    def peer_up(self, addr: int) -> None:
        """A link to ``addr`` on this bearer came up (kernel tipc_mon_peer_up)."""
        if addr == self.self_addr:
            return
        p = self._peers.get(addr) or self._add_peer(addr)
        p.is_up = True
        head = self._head_of(p)
        if head is self.self_peer:
            self._update_local_domain()
        self._assign_roles(head)

    def peer_down(self, addr: int) -> None:
        """The link to ``addr`` went down (kernel tipc_mon_peer_down); the peer stays on
        the ring, marked down, so our record reports its loss to everybody."""
        p = self._peers.get(addr)
        if p is None or p is self.self_peer:
            return
        applied = p.applied
        dom = p.domain
        p.applied = 0
        p.domain = None
        if p.is_head:
            self._identify_lost_members(p, dom, applied)
        p.is_up = p.is_head = p.is_local = False
        p.down_cnt = 0
        head = self._head_of(p)
        if head is self.self_peer:
            self._update_local_domain()
        self._assign_roles(head)

    def remove_peer(self, addr: int) -> None:
        """The link endpoint is deleted (kernel tipc_mon_remove_peer): off the ring."""
        p = self._peers.get(addr)
        if p is None or p is self.self_peer:
            return
        prev = self._prev(p)
        nxt = self._nxt(p)
        prev.nxt, nxt.prv = nxt, prev
        p.nxt = p.prv = None
        del self._peers[addr]
        self._ring.pop(self._idx(addr))
        self._states.pop(addr, None)
        head = self._head_of(prev)
        if head is self.self_peer:
            self._update_local_domain()
        self._update_neighbors(prev)
        if not self.active:  # back to full mesh: forget every applied domain
            for q in self._peers.values():
                if q is not self.self_peer:
                    q.domain = None
                    q.applied = 0
        self._assign_roles(head)

    def link_reset(self, addr: int) -> None:
        """The link to ``addr`` was reset: forget the generation sync (kernel memset)."""
        self._states.pop(addr, None)

    def state(self, addr: int) -> MonState:
        st = self._states.get(addr)
        if st is None:
            st = self._states[addr] = MonState()
        return st

    def receive(self, addr: int, data: bytes | bytearray | memoryview) -> bool:
        """The STATE payload after the Gap-ACK blocks from ``addr`` (link up).

        Returns True if a new domain record was applied.  Empty data (peer below its
        threshold) and malformed records are dropped; malformed ones are counted.
        """
        st = self.state(addr)
        probing = st.probing
        st.probing = False
        if not data:
            return False
        try:
            rec = DomainRecord.decode(data)
        except DomainRecordError:
            self.stats.rx_malformed += 1
            return False
        self.stats.rx_records += 1
        if not rec.members:
            self.stats.rx_dummy += 1
        new_gen = rec.gen
        if not st.synched:
            st.peer_gen = (new_gen - 1) & _U16
            st.acked_gen = rec.ack_gen
            st.synched = True
        if _more(rec.ack_gen, st.acked_gen):
            st.acked_gen = rec.ack_gen
        fresh = _more(new_gen, st.peer_gen)
        if not fresh and not probing:
            self.stats.rx_duplicate += 1
            return False
        p = self._peers.get(addr)
        if p is None or not p.is_up:
            self.stats.rx_unknown_peer += 1
            return False
        p.down_cnt = 0  # the peer answered: it is alive
        if not fresh:
            self.stats.rx_duplicate += 1
            return False
        st.peer_gen = new_gen
        dom_bef = p.domain
        applied_bef = p.applied
        p.domain = DomainRecord(new_gen, 0, rec.up_map, rec.members)
        self._apply_domain(p)
        self._identify_lost_members(p, dom_bef, applied_bef)
        self._assign_roles(self._head_of(p))
        self.stats.rx_applied += 1
        return True

    # ---- outputs --------------------------------------------------------------------------
    def prepare(self, addr: int) -> bytes:
        """Bytes to append to the next STATE to ``addr`` (after the Gap-ACK blocks).

        Nothing while the monitor is inactive; a 16-byte dummy with our generation and
        the ack of the peer's once the peer acked our current record; else the full
        record.
        """
        if not self.active:
            return b""
        st = self.state(addr)
        if st.acked_gen == self.dom_gen:
            self.stats.tx_dummy += 1
            return _HDR.pack(DOM_HDR_SIZE, self.dom_gen, st.peer_gen, 0, 0)
        self.stats.tx_full += 1
        c = self._cache
        return c[:4] + struct.pack("!H", st.peer_gen) + c[6:]

    def get_state(self, addr: int) -> MonState:
        """What the link to ``addr`` must do on its timer (kernel tipc_mon_get_state).

        ``monitoring``: supervise actively (silent intervals count towards failure);
        ``probing``: send a probe now (peer has not acked our record, or others report
        it lost); ``reset``: fail the link now.
        """
        st = self.state(addr)
        if not self.active:
            st.probing = False
            st.monitoring = True
            return st
        if not st.probing and st.list_gen == self.list_gen and st.acked_gen == self.dom_gen:
            return st
        p = self._peers.get(addr)
        if p is not None:
            st.probing = st.acked_gen != self.dom_gen or p.down_cnt > 0
            if p.down_cnt >= MAX_PEER_DOWN_EVENTS:
                st.reset = True
            st.monitoring = p.is_local or p.is_head
            st.list_gen = self.list_gen
        return st

    def monitored_peers(self) -> set[int]:
        """Peers whose links must supervise actively right now (monitoring or probing)."""
        if not self.active:
            return {a for a, p in self._peers.items() if p is not self.self_peer}
        out = set()
        for a, p in self._peers.items():
            if p is self.self_peer:
                continue
            if p.is_local or p.is_head or p.down_cnt > 0:
                out.add(a)
            else:
                st = self._states.get(a)
                if st is not None and st.acked_gen != self.dom_gen:
                    out.add(a)
        return out

    def directly_monitored(self) -> set[int]:
        """Local members and heads: the steady-state actively supervised set."""
        if not self.active:
            return {a for a, p in self._peers.items() if p is not self.self_peer}
        return {a for a, p in self._peers.items()
                if p is not self.self_peer and (p.is_local or p.is_head)}

    # ---- time -----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        return self._deadline

    def tick(self, now: float) -> None:
        """Kernel mon_timeout: resize the local domain if the cluster size changed."""
        if now < self._deadline:
            return
        self._deadline = now + self.timer_intv
        if dom_size(self.peer_cnt) - 1 != self.self_peer.applied:
            self._update_local_domain()
            self._assign_roles(self.self_peer)

    def take_events(self) -> list[PeerReportedDown | PeerResetByMonitor]:
        ev, self._events = self._events, []
        return ev

