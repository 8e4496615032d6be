"""Name distributor: replicates this node's cluster-scope bindings to its peers.

Mirrors net/tipc/name_distr.c (§2.10, §2.13, §9.4 of the reference):

* a local bind/unbind of a cluster-scope binding yields one single-item
  ``NAME_DISTRIBUTOR`` PUBLICATION/WITHDRAWAL with ``non_legacy`` set and ``named_seqno``
  from a per-node counter (``snd_nxt``) that keeps running across link sessions;
* when a peer comes up it gets a *bulk*: all our cluster-scope bindings, packed
  ⌊(mss - 40) / 20⌋ items a message, every message with ``bulk``, ``non_legacy`` and
  ``bc_ack_invalid``; the last one also ``last_bulk`` and ``named_seqno = snd_nxt`` (the
  number the next single update will carry). A Linux peer only applies our singles after
  it has seen a ``last_bulk`` from us, so a bulk is sent even when it holds nothing but
  the node-state item (or nothing at all);
* from a peer, bulk and legacy messages are applied at once; non-legacy singles are
  applied strictly in ``named_seqno`` order starting at the seqno of the peer's last bulk;
  earlier ones (already covered by the bulk) are dropped, later ones wait in a bounded
  per-peer buffer;
* a withdrawal of a binding we do not (yet) know is kept for ``named_timeout`` (2 s, the
  kernel sysctl) and applied if the publication shows up, else dropped -- the kernel's
  old backlog behaviour; bounded.

Sans-IO: methods return the messages to send; the Stack sends them (singles to every up
peer over its unicast link, the bulk over the new peer's link).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from tipcpy.core.name_table import NameTable, Publication
from tipcpy.wire.consts import TIPC_CLUSTER_SCOPE, TIPC_MAX_PUBL, NameDistrType, User
from tipcpy.wire.items import DistrItem
from tipcpy.wire.msg import Msg, NameDistrMsg

__all__ = ["NAMED_TIMEOUT", "ITEM_SIZE", "NameDistrStats", "NameDistributor", "items_per_msg"]

ITEM_SIZE = 20
INT_H_SIZE = 40
#: sysctl net.tipc.named_timeout (ms -> s): how long an unmatched withdrawal is kept.
NAMED_TIMEOUT = 2.0
#: Most early single updates buffered per peer while waiting for a gap to fill.
MAX_PENDING_PER_PEER = 4096
NAMED_RESYNCH = 1024
"""A single update at least this far from the expected named_seqno (ahead or
behind) re-synchronises the peer's sequence (see NameDistributor._resynch)."""
NAMED_GAP_TIMEOUT = 2.0
"""Singles held this long for a missing seqno are released (see
NameDistributor._gap_timeout)."""
#: Most unmatched withdrawals kept (all peers together).
MAX_DEFERRED = 4096


_ITEM = struct.Struct(">5I")
#: An item as applied: (type, lower, upper, port, key); a DistrItem is one too.
Item = tuple[int, int, int, int, int]


def items_per_msg(mss: int) -> int:
    """Items in one bulk message for a link with this MSS (kernel ``named_distribute``)."""
    return max(1, (mss - INT_H_SIZE) // ITEM_SIZE)


def _less(a: int, b: int) -> bool:
    """16-bit serial-number ``a < b`` (kernel ``less()``)."""
    d = (b - a) & 0xFFFF
    return d != 0 and d < 0x8000


def _far(a: int, b: int) -> bool:
    """``a`` and ``b`` at least NAMED_RESYNCH apart, either way round (16-bit)."""
    return NAMED_RESYNCH <= (a - b) & 0xFFFF <= 0x10000 - NAMED_RESYNCH


@dataclass
class NameDistrStats:
    """Counters for `tipc`-style statistics; every dropped thing is counted."""

    tx_publ: int = 0
    tx_withdraw: int = 0
    tx_bulk_msgs: int = 0
    tx_bulk_items: int = 0
    rx_msgs: int = 0
    rx_bulk_msgs: int = 0
    rx_single_msgs: int = 0
    rx_legacy_msgs: int = 0
    applied_publ: int = 0
    applied_withdraw: int = 0
    dup_publ: int = 0
    malformed_msgs: int = 0
    malformed_items: int = 0
    unknown_mtype: int = 0
    stale_dropped: int = 0
    early_buffered: int = 0
    pending_dups: int = 0
    pending_overflow: int = 0
    deferred_withdraw: int = 0
    deferred_applied: int = 0
    deferred_expired: int = 0
    deferred_overflow: int = 0
    orignode_mismatch: int = 0
    resynchs: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Peer:
    """Per-peer receive state (kernel ``named_rcv_nxt``/``named_open`` on the node)."""

    rcv_nxt: int = 0
    open: bool = False
    pending: dict[int, tuple[int, list[Item]]] = field(default_factory=dict)
    opened_at: float = 0.0


class NameDistributor:
    """Builds and applies NAME_DISTRIBUTOR messages for one node.

    ``table`` is the node's :class:`NameTable`; local publications are inserted and
    removed here (as ``tipc_nametbl_publish``/``withdraw`` do), remote ones on receive.
    """

    def __init__(self, own_addr: int, table: NameTable) -> None:
        self.own_addr = own_addr
        self.table = table
        self.snd_nxt = 0  # next single-update named_seqno (u16, wraps)
        self.stats = NameDistrStats()
        self._peers: dict[int, _Peer] = {}
        self._held: dict[int, float] = {}
        """Peers whose singles wait for a missing seqno -> since when."""
        # (node, type, lower, upper, key) -> expiry; insertion order = age
        self._deferred: dict[tuple[int, int, int, int, int], float] = {}
        self._now = 0.0
        # (mtype, own_addr) -> header words of a single-item message (_singles)
        self._tmpl: dict[tuple[int, int], list[int]] = {}
        # our cluster-scope bindings for bulks, cached until a local binding changes
        # (the kernel keeps them on a list of their own; a 1000-node cluster builds
        # 999 bulks per node, each a scan of ~1000 own bindings, most of node scope)
        self._bulk_key: tuple[int, int] | None = None
        self._bulk_publs: list[Publication] = []

    # ------------------------------------------------------------------ local side
    def set_own_addr(self, addr: int) -> None:
        """Node address committed: our messages and local bindings carry it from now."""
        self.own_addr = addr
        self.table.set_own_addr(addr)

    def _build(self, mtype: int, items: list[DistrItem], dest: int = 0) -> NameDistrMsg:
        m = Msg.build(
            User.NAME_DISTRIBUTOR,
            mtype,
            data=b"".join(i.pack() for i in items),
            prevnode=self.own_addr,
            orignode=self.own_addr,
            destnode=dest,
        )
        assert isinstance(m, NameDistrMsg)
        return m

    @staticmethod
    def _item(p: Publication) -> DistrItem:
        return DistrItem(p.type, p.lower, p.upper, p.port, p.key)

    def _single(self, mtype: int, p: Publication) -> NameDistrMsg:
        """The plain construction of one single update (``_singles`` is its fast twin)."""
        m = self._build(mtype, [self._item(p)])
        m.named_seqno = self.snd_nxt
        m.non_legacy = 1
        self.snd_nxt = (self.snd_nxt + 1) & 0xFFFF
        return m

    def _singles(self, mtype: int, publs: list[Publication]) -> list[NameDistrMsg]:
        """One single-item message per publication, consecutive named_seqnos: what
        ``_single`` builds for each, from one template header instead of a
        ``Msg.build`` (keyword parsing, property setters) per message."""
        if not publs:
            return []
        k = (mtype, self.own_addr)
        w = self._tmpl.get(k)
        if w is None:
            t = self._build(mtype, [DistrItem(0, 0, 0, 0, 0)])  # size field: one item
            t.non_legacy = 1
            w = self._tmpl[k] = t.w
        pack = _ITEM.pack
        seq = self.snd_nxt
        w4 = w[4] & ~0xFFFF
        out = []
        for p in publs:
            m = NameDistrMsg(list(w), pack(p.type, p.lower, p.upper, p.port, p.key))
            m.w[4] = w4 | seq
            seq = (seq + 1) & 0xFFFF
            out.append(m)
        self.snd_nxt = seq
        return out

    def publish(self, publ: Publication) -> NameDistrMsg | None:
        """Bind locally: insert ``publ`` in the table (unless this very object is already
        there) and return the single PUBLICATION to send to every up peer, or None for a
        node-scope binding. Raises ``OSError(EINVAL)`` at the 65535-publication limit or
        for a duplicate (same key and node in the same range), as the kernel fails the
        bind."""
        if not self.table.contains(publ):
            # The limit is for applications: the node's own reserved publications
            # (node state {0}, topology server {1}, link state {2}) must never fail,
            # or a node full of user bindings could not report a link coming up.
            if publ.type >= 64 and self.table.local_count >= TIPC_MAX_PUBL:
                raise OSError(
                    errno.EINVAL,
                    f"publish: node already has {TIPC_MAX_PUBL} publications (TIPC_MAX_PUBL)",
                )
            if not self.table.insert(publ):
                raise OSError(errno.EINVAL, f"publish: duplicate publication {publ!r}")
        if publ.scope != TIPC_CLUSTER_SCOPE:
            return None
        self.stats.tx_publ += 1
        return self._singles(NameDistrType.PUBLICATION, [publ])[0]

    def withdraw(self, publ: Publication) -> NameDistrMsg | None:
        """Unbind locally: remove ``publ`` from the table if it is still there and return
        the single WITHDRAWAL for every up peer (None for node scope). Call once per
        publication."""
        self.table.remove_publication(publ)
        if publ.scope != TIPC_CLUSTER_SCOPE:
            return None
        self.stats.tx_withdraw += 1
        return self._singles(NameDistrType.WITHDRAWAL, [publ])[0]

    def withdraw_many(self, publs: Iterable[Publication]) -> list[NameDistrMsg]:
        """Unbind many at once (a closing socket): the same table changes, observer calls,
        counters and messages (one single WITHDRAWAL per cluster-scope publication, in
        order, as the kernel sends them) as ``withdraw`` on each, built in one pass."""
        publs = list(publs)
        self.table.remove_many(publs)
        cl = [p for p in publs if p.scope == TIPC_CLUSTER_SCOPE]
        self.stats.tx_withdraw += len(cl)
        return self._singles(NameDistrType.WITHDRAWAL, cl)

    def withdraw_port(
        self, port: int, limit: int | None = None
    ) -> tuple[list[Publication], list[NameDistrMsg], bool]:
        """Withdraw up to ``limit`` (all if None) of local socket ``port``'s bindings,
        oldest first: ``(withdrawn, messages for every up peer, more remain)``. Lets the
        runtime spread a socket holding 65,535 bindings over several loop turns."""
        done, more = self.table.withdraw_port(port, limit)
        cl = [p for p in done if p.scope == TIPC_CLUSTER_SCOPE]
        self.stats.tx_withdraw += len(cl)
        return done, self._singles(NameDistrType.WITHDRAWAL, cl), more

    def bulk(self, mss: int, dest: int = 0) -> list[NameDistrMsg]:
        """All our cluster-scope bindings for a peer that just came up, in bind order.

        Always at least one message (the ``last_bulk`` one), so the peer opens its
        in-order window for our singles (§9.4). ``dest`` = the peer (header destnode).
        """
        n = items_per_msg(mss)
        own = self._bulk_list()
        pack = _ITEM.pack
        msgs: list[NameDistrMsg] = []
        for i in range(0, max(len(own), 1), n):
            m = self._build(NameDistrType.PUBLICATION, [], dest)
            m.data = b"".join(
                [pack(p.type, p.lower, p.upper, p.port, p.key) for p in own[i : i + n]]
            )
            m.bulk = 1
            m.non_legacy = 1
            m.bc_ack_invalid = 1
            msgs.append(m)
        last = msgs[-1]
        last.last_bulk = 1
        last.named_seqno = self.snd_nxt
        self.stats.tx_bulk_msgs += len(msgs)
        self.stats.tx_bulk_items += len(own)
        return msgs

    def _bulk_list_plain(self) -> list[Publication]:
        own = [
            p for p in self.table.publications_of(self.own_addr) if p.scope == TIPC_CLUSTER_SCOPE
        ]
        if self.own_addr:
            own += [p for p in self.table.publications_of(0) if p.scope == TIPC_CLUSTER_SCOPE]
        return own

    def _bulk_list(self) -> list[Publication]:
        """:meth:`_bulk_list_plain`, recomputed only when a local binding changed
        (twin-tested in tests/unit/test_name_distr.py)."""
        key = (self.own_addr, self.table.local_gen)
        if key != self._bulk_key:
            self._bulk_publs = self._bulk_list_plain()
            self._bulk_key = key
        return self._bulk_publs

    # ------------------------------------------------------------------ peers
    def node_up(self, peer: int, mss: int | None = None) -> list[NameDistrMsg]:
        """Peer node came up: fresh receive state for it; with ``mss`` also return the
        bulk to send it (same as :meth:`bulk`)."""
        self._peers[peer] = _Peer()
        return self.bulk(mss, peer) if mss is not None else []

    def node_down(self, peer: int) -> list[Publication]:
        """Peer node lost: purge all its bindings (subscribers see WITHDRAWN through the
        table's observers), forget its ordering state and deferred withdrawals."""
        self._peers.pop(peer, None)
        self._held.pop(peer, None)
        for k in [k for k in self._deferred if k[0] == peer]:
            del self._deferred[k]
        return self.table.withdraw_node(peer)

    # ------------------------------------------------------------------ receive
    def receive(self, msg: Msg, from_node: int, now: float | None = None) -> None:
        """A NAME_DISTRIBUTOR message delivered by the link from ``from_node``.

        Never raises on bad input: malformed messages/items are counted and dropped.
        """
        if now is not None:
            self._now = now
        st = self.stats
        st.rx_msgs += 1
        if not isinstance(msg, NameDistrMsg):
            st.malformed_msgs += 1
            return
        data = msg.data
        if len(data) % 20:
            st.malformed_msgs += 1
            return
        items: list[Item] = list(_ITEM.iter_unpack(data))
        if msg.mtype not in (NameDistrType.PUBLICATION, NameDistrType.WITHDRAWAL):
            st.unknown_mtype += 1
            return
        if msg.orignode != from_node:
            st.orignode_mismatch += 1
        peer = self._peers.get(from_node)
        if peer is None:
            peer = self._peers[from_node] = _Peer()
        seqno = msg.named_seqno
        if msg.last_bulk:
            peer.rcv_nxt = seqno
            peer.open = True
            peer.opened_at = self._now
            for s in [s for s in peer.pending if _less(s, seqno)]:
                del peer.pending[s]
                st.stale_dropped += 1
        if msg.bulk or not msg.non_legacy:
            if msg.bulk:
                st.rx_bulk_msgs += 1
            else:
                st.rx_legacy_msgs += 1
            self._apply(msg.mtype, items, from_node)
        else:
            st.rx_single_msgs += 1
            if peer.open and (_far(seqno, peer.rcv_nxt)
                              or _less(seqno, peer.rcv_nxt)
                              and self._now - peer.opened_at >= NAMED_GAP_TIMEOUT):
                # (a stale single is the bulk's race at node up, within moments of
                # it; seconds later, our expected seqno is what is wrong)
                self._resynch(peer, seqno)
            if peer.open and _less(seqno, peer.rcv_nxt):
                st.stale_dropped += 1
                return
            if seqno in peer.pending:
                st.pending_dups += 1
                return
            if len(peer.pending) >= MAX_PENDING_PER_PEER:
                st.pending_overflow += 1
                return
            peer.pending[seqno] = (msg.mtype, items)
            if not (peer.open and seqno == peer.rcv_nxt):
                st.early_buffered += 1
        if peer.open:
            self._drain(peer, from_node)

    def _drain(self, peer: _Peer, from_node: int) -> None:
        pend = peer.pending
        while pend:
            nxt = pend.pop(peer.rcv_nxt, None)
            if nxt is None:
                break
            peer.rcv_nxt = (peer.rcv_nxt + 1) & 0xFFFF
            self._apply(nxt[0], nxt[1], from_node)
        if not pend:
            self._held.pop(from_node, None)
        elif from_node not in self._held:
            self._held[from_node] = self._now

    def _resynch(self, peer: _Peer, seqno: int) -> None:
        """A single update this far from where we are cannot be ours to wait for or
        to drop as stale: the link delivers in order, and only the few updates in
        flight between the bulk and the broadcast link can be behind or ahead.  It
        takes a seqno (or a bulk's) corrupted on the way (TIPC has no checksum of
        its own) - and the kernel would then drop, or hold, every later update of
        that peer for good.  Follow the newest: if this one was the corrupted one,
        the next genuine update is as far away and brings us back."""
        self.stats.resynchs += 1
        peer.rcv_nxt = seqno
        for s in [s for s in peer.pending if _far(s, seqno)]:
            del peer.pending[s]
            self.stats.stale_dropped += 1

    def _apply(self, mtype: int, items: list[Item], node: int) -> None:
        st = self.stats
        table = self.table
        publish = mtype == NameDistrType.PUBLICATION
        deferred = self._deferred
        if publish and not deferred:
            # no withdrawal waits for its publication: the table's batch insert
            done, dup, bad = table.insert_items(node, TIPC_CLUSTER_SCOPE, items)
            st.applied_publ += done
            st.dup_publ += dup
            st.malformed_items += bad
            return
        for it in items:
            t, lo, up, port, key = it
            if lo > up:
                st.malformed_items += 1
                continue
            if publish:
                p = Publication(t, lo, up, TIPC_CLUSTER_SCOPE, node, port, key)
                if not table.insert(p):
                    st.dup_publ += 1
                    continue
                st.applied_publ += 1
                if deferred and deferred.pop((node, t, lo, up, key), None) is not None:
                    # the withdrawal overtook its publication: apply it now
                    table.remove_publication(p)
                    st.deferred_applied += 1
            else:
                if table.remove(t, lo, node, key, up) is not None:
                    st.applied_withdraw += 1
                    continue
                st.deferred_withdraw += 1
                if len(deferred) >= MAX_DEFERRED:
                    deferred.pop(next(iter(deferred)))
                    st.deferred_overflow += 1
                deferred[(node, t, lo, up, key)] = self._now + NAMED_TIMEOUT

    def apply_items(self, mtype: int, items: Iterable[Item], node: int) -> None:
        """Apply items as if they came in a bulk/legacy message (tests, tools)."""
        self._apply(mtype, list(items), node)

    # ------------------------------------------------------------------ timers
    def tick(self, now: float) -> None:
        """Drop unmatched withdrawals older than ``NAMED_TIMEOUT``; release singles
        held for a missing seqno longer than ``NAMED_GAP_TIMEOUT``."""
        self._now = now
        for addr, since in list(self._held.items()):
            peer = self._peers.get(addr)
            if peer is None or not peer.pending:
                del self._held[addr]
            elif now - since >= NAMED_GAP_TIMEOUT:
                self._gap_timeout(peer, addr)
        d = self._deferred
        while d:
            k = next(iter(d))
            if d[k] > now:
                break
            del d[k]
            self.stats.deferred_expired += 1

    def _gap_timeout(self, peer: _Peer, addr: int) -> None:
        """The link delivers in order, so a missing single is one the broadcast and
        unicast paths are still carrying, for a moment; one missing for seconds
        was never sent - the expected seqno itself was corrupted on the way (a
        bulk's seqno a few off) - and the kernel would hold every later update of
        the peer for good.  Go on from the oldest held one."""
        rn = peer.rcv_nxt
        first = min(peer.pending, key=lambda q: (q - rn) & 0xFFFF)
        self.stats.resynchs += 1
        peer.rcv_nxt = first
        del self._held[addr]
        self._drain(peer, addr)

    def next_deadline(self) -> float | None:
        t = min(self._held.values()) + NAMED_GAP_TIMEOUT if self._held else None
        if not self._deferred:
            return t
        d = self._deferred[next(iter(self._deferred))]
        return d if t is None else min(d, t)

    # ------------------------------------------------------------------ inspection
    def peer_state(self, peer: int) -> tuple[int, bool, int] | None:
        """``(rcv_nxt, open, buffered singles)`` for a peer, for `tipc`-style output."""
        p = self._peers.get(peer)
        return (p.rcv_nxt, p.open, len(p.pending)) if p else None

    @property
    def deferred_count(self) -> int:
        return len(self._deferred)
