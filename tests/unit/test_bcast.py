"""Broadcast send link (tipcpy/core/bcast.py): 1 sender + N receivers over a lossy,
reordering channel in virtual time, plus the rules the kernel applies around it
(window, synch, peer removal, method selection) and malformed input."""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Any

import pytest

from tipcpy.core.bcast import (
    BC_RETR_INTERVAL,
    METHOD_EXPIRE,
    BcastLink,
    BcastPeerFailure,
    BcastWakeup,
    BcMode,
    BcRcvNack,
    McMethod,
    bc_ack_due,
    bc_gap_ack_blocks,
    bc_nack_due,
    bc_rcv_gap,
    build_mcast_sync,
    gap_ack_record,
    named_use_bcast,
    parse_gap_ack_record,
)
from tipcpy.wire import Msg, decode
from tipcpy.wire.bundle import unbundle
from tipcpy.wire.consts import Cap, User
from tipcpy.wire.fragment import Reassembler

SENDER = 0x1001
NET_ID = 4711
ALL = int(Cap.ALL)


def data_msg(payload: bytes) -> Msg:
    return Msg.build(0, 1, data=payload, prevnode=SENDER, orignode=SENDER,
                     origport=7, nametype=1000, lower=0, upper=10)


def state(src: int, *, bcast_ack: int, ack: int = 1, bc_gap: int = 0,
          blocks: list[tuple[int, int]] | None = None, invalid: int = 0,
          data: bytes | None = None) -> Msg:
    payload = gap_ack_record(blocks or [], []) if data is None else data
    return Msg.build(7, 0, data=payload, prevnode=src, orignode=src, destnode=SENDER,
                     bcast_ack=bcast_ack, ack=ack, bc_gap=bc_gap, bc_ack_invalid=invalid,
                     redundant_link=1)


def synch(bc: BcastLink, addr: int) -> None:
    """What the node does for a kernel-like peer: its init arrived (rcv up), then a
    STATE acking our unicast packet 1 opens it."""
    bc.rcv_up(addr)
    bc.proto_rcv(addr, state(addr, bcast_ack=bc.peers[addr].acked), 0.0)
    assert bc.peers[addr].bc_peer_is_up


def new_link(n_peers: int = 0, **kw: Any) -> BcastLink:
    bc = BcastLink(own_addr=SENDER, net_id=NET_ID, **kw)
    bc.set_bearer(0, 1500, True)
    for i in range(n_peers):
        addr = 0x2000 + i
        bc.add_peer(addr)
        bc.inc_bearer_dst(0)
        synch(bc, addr)
    return bc


def seqnos(out: list[tuple[int, int | None, bytes]]) -> list[int]:
    return [decode(raw).seqno for _, _, raw in out]


# ---------------------------------------------------------------- the channel model
class Receiver:
    """A minimal broadcast receive link (as node.py's BcastRcv, plus the NACK side
    from bcast.py): in-order delivery, deferred queue, STATE with gap and blocks."""

    def __init__(self, addr: int) -> None:
        self.addr = addr
        self.synced = False
        self.rcv_nxt = 1
        self.deferred: dict[int, Msg] = {}
        self.delivered: list[bytes] = []
        self.reasm = Reassembler()
        self.nack = BcRcvNack()
        self.rcv_unacked = 0
        self.deferred_recv = 0
        self.dups = 0

    def init(self, init: Msg) -> None:
        self.synced = True
        self.rcv_nxt = (init.last_bcast + 1) & 0xFFFF

    def _deliver(self, m: Msg) -> None:
        if m.user == User.MSG_BUNDLER:
            for inner in unbundle(m):  # type: ignore[arg-type]
                self.delivered.append(inner.data)
        elif m.user == User.MSG_FRAGMENTER:
            whole = self.reasm.feed(m)  # type: ignore[arg-type]
            if whole is not None:
                self.delivered.append(whole.data)
        else:
            self.delivered.append(m.data)

    def packet(self, raw: bytes) -> bool:
        """True when a STATE is due (ack rate or NACK)."""
        m = decode(raw)
        assert m.non_seq == 1 and m.w[5] == NET_ID and m.w[7] == 0 and m.bcast_ack == 0
        if not self.synced:
            return False
        seq = m.seqno
        d = (seq - self.rcv_nxt) & 0xFFFF
        if d >= 0x8000:
            self.dups += 1
            return False
        if d:
            if seq in self.deferred:
                self.dups += 1
                return False
            self.deferred[seq] = m
            self.deferred_recv += 1
            return bc_nack_due(self.deferred_recv, self.addr)
        while True:
            self._deliver(m)
            self.rcv_nxt = (self.rcv_nxt + 1) & 0xFFFF
            self.rcv_unacked += 1
            nxt = self.deferred.pop(self.rcv_nxt, None)
            if nxt is None:
                break
            m = nxt
        if self.rcv_unacked >= 16 and bc_ack_due(self.rcv_nxt, self.addr):
            self.rcv_unacked = 0
            return True
        return False

    def make_state(self) -> Msg:
        gap = self.nack.gap(self.rcv_nxt, self.deferred) & 0x3FF
        return state(self.addr, bcast_ack=(self.rcv_nxt - 1) & 0xFFFF, bc_gap=gap,
                     blocks=bc_gap_ack_blocks(self.rcv_nxt, self.deferred))

    def sender_state(self, last_bcast: int) -> bool:
        """The sender's unicast-link STATE (carrying last_bcast) arrived."""
        m = Msg.build(7, 0, prevnode=SENDER, destnode=self.addr, last_bcast=last_bcast,
                      redundant_link=1, ack=1)
        res = self.nack.sync_rcv(m, rcv_up=self.synced, rcv_nxt=self.rcv_nxt,
                                 deferred=self.deferred, peer_caps=ALL, own_addr=self.addr)
        return res.send_state


class Net:
    """Virtual time, seeded loss and delay (so reordering) on every copy."""

    def __init__(self, seed: int, loss: float, n: int, *, window: int = 50,
                 tick: float = 0.05, delay: tuple[float, float] = (0.0005, 0.02)) -> None:
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.now = 0.0
        self.q: list[tuple[float, int, str, Any, Any]] = []
        self.cnt = itertools.count()
        self.bc = BcastLink(own_addr=SENDER, net_id=NET_ID, window=window)
        self.bc.set_bearer(0, 1500, True)
        self.rx: dict[int, Receiver] = {}
        self.tick_iv = tick
        self.next_tick = tick
        for i in range(n):
            self.join(0x3000 + i)

    def join(self, addr: int) -> Receiver:
        r = Receiver(addr)
        self.rx[addr] = r
        init = self.bc.add_peer(addr, tolerance=1500)
        self.bc.inc_bearer_dst(0)
        r.init(init)  # travels reliably on the unicast link
        synch(self.bc, addr)
        return r

    def _later(self, kind: str, a: Any, b: Any) -> None:
        if self.rng.random() < self.loss:
            return
        heapq.heappush(self.q, (self.now + self.rng.uniform(*self.delay), next(self.cnt),
                                kind, a, b))

    def pump(self) -> None:
        for _bid, dest, raw in self.bc.take_outgoing():
            for addr in (self.rx if dest is None else [dest]):
                self._later("pkt", addr, raw)

    def run_until(self, t_end: float) -> None:
        while self.now < t_end:
            self.pump()
            t_q = self.q[0][0] if self.q else t_end
            t = min(t_q, self.next_tick, t_end)
            self.now = t
            if t == self.next_tick:
                self.next_tick += self.tick_iv
                self.bc.tick(t)
                for addr in self.rx:
                    if self.bc.peer_needs_state(addr):
                        self._later("sstate", addr, self.bc.last_bcast)
                continue
            if not self.q or self.q[0][0] > t:
                continue
            _, _, kind, a, b = heapq.heappop(self.q)
            r = self.rx.get(a)
            if r is None:
                continue
            if kind == "pkt":
                if r.packet(b):
                    self._later("rstate", a, r.make_state())
            elif kind == "sstate":
                r.sender_state(b)
                # the receiver's link answers (a probe reply is a STATE anyway)
                self._later("rstate", a, r.make_state())
            elif kind == "rstate" and a in self.bc.peers:
                self.bc.proto_rcv(a, b, self.now)
        self.pump()


def run_traffic(net: Net, payloads: list[bytes], t_limit: float) -> dict[str, int]:
    sent = 0
    blocked = False
    waits = 0
    t = 0.0
    while (sent < len(payloads) or net.bc.transmq_len or net.bc.backlog_len) and t < t_limit:
        while sent < len(payloads) and not blocked:
            ok = net.bc.xmit(data_msg(payloads[sent]), net.now)
            sent += 1
            if not ok:
                blocked = True
                waits += 1
        t += 0.01
        net.run_until(t)
        if any(isinstance(e, BcastWakeup) for e in net.bc.take_events()):
            blocked = False
    return {"sent": sent, "waits": waits}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_receiver_gets_every_broadcast_once_in_order(seed: int) -> None:
    net = Net(seed, loss=0.15, n=5)
    rng = random.Random(seed + 100)
    payloads = [bytes([i & 0xFF]) * rng.choice([10, 200, 1000, 3000]) + i.to_bytes(4, "big")
                for i in range(400)]
    res = run_traffic(net, payloads, t_limit=120.0)
    assert res["sent"] == len(payloads)
    assert net.bc.transmq_len == 0 and net.bc.backlog_len == 0
    for r in net.rx.values():
        assert r.delivered == payloads, f"receiver {r.addr:x}"
    s = net.bc.stats
    assert s.retransmitted > 0 and s.recv_nacks > 0  # loss really happened and was repaired
    assert s.sent_fragmented > 0 and s.sent_bundles > 0
    assert s.rx_malformed == 0


def test_lossless_in_order_run_needs_no_retransmission() -> None:
    net = Net(7, loss=0.0, n=3, delay=(0.005, 0.005))
    payloads = [i.to_bytes(4, "big") * 10 for i in range(300)]
    run_traffic(net, payloads, t_limit=30.0)
    assert all(r.delivered == payloads for r in net.rx.values())
    assert net.bc.stats.retransmitted == 0


# ---------------------------------------------------------------- wire format
def test_packets_carry_broadcast_link_fields_and_init_message() -> None:
    bc = BcastLink(own_addr=SENDER, net_id=NET_ID)
    bc.set_bearer(0, 1500, True)
    init = bc.add_peer(0x2000)
    bc.inc_bearer_dst(0)
    assert init.user == User.BCAST_PROTOCOL and init.mtype == 0
    assert init.last_bcast == 0 and init.bc_ack_invalid == 1 and init.destnode == 0x2000
    assert bc.xmit(data_msg(b"x" * 20), 0.0)
    out = bc.take_outgoing()
    assert len(out) == 1
    bid, dest, raw = out[0]
    assert (bid, dest) == (0, None)
    m = decode(raw)
    assert (m.non_seq, m.seqno, m.ack, m.bcast_ack, m.w[5], m.destnode) == (1, 1, 0, 0, NET_ID, 0)
    assert m.data == b"x" * 20
    assert bc.last_bcast == 1
    assert bc.add_peer(0x2001).last_bcast == 1  # a later peer starts after what it missed


def test_window_throttles_sender_and_bundles_backlog() -> None:
    bc = new_link(2)
    for i in range(300):
        assert bc.xmit(data_msg(i.to_bytes(4, "big") * 5), 0.0)
    out = bc.take_outgoing()
    assert seqnos(out) == list(range(1, 51))  # the window: 50 packets, no more
    assert bc.transmq_len == 50
    assert 0 < bc.backlog_len < 250  # the other 250 messages wait, bundled
    assert bc.stats.sent_bundled == 250
    # both peers ack 20: 20 more leave, as bundles
    for a in (0x2000, 0x2001):
        bc.proto_rcv(a, state(a, bcast_ack=20), 0.1)
    out = bc.take_outgoing()
    assert seqnos(out) == list(range(51, 51 + min(20, bc.snd_nxt - 51)))
    assert any(decode(raw).user == User.MSG_BUNDLER for _, _, raw in out)
    assert bc.transmq_len <= 50


def test_congestion_returns_false_and_wakeup_follows_acks() -> None:
    bc = new_link(1)
    limit = bc.backlog_limit(0)
    big = b"y" * 1000  # never two in one bundle (mss 1428), never fragmented
    results = [bc.xmit(data_msg(big), 0.0) for _ in range(50 + limit + 1)]
    assert all(results[:-1]) and results[-1] is False
    assert bc.is_congested(0) and bc.stats.link_congs == 1
    assert not bc.take_events()
    bc.take_outgoing()
    bc.proto_rcv(0x2000, state(0x2000, bcast_ack=10), 0.1)
    assert BcastWakeup(0) in bc.take_events()
    assert seqnos(bc.take_outgoing()) == list(range(51, 61))


def test_late_joiner_is_excluded_from_acks_until_synched() -> None:
    bc = new_link(1)
    a, b = 0x2000, 0x2ABC
    for i in range(10):
        bc.xmit(data_msg(bytes([i])), 0.0)
    bc.proto_rcv(a, state(a, bcast_ack=10), 0.0)
    assert bc.transmq_len == 0
    init = bc.add_peer(b)
    bc.inc_bearer_dst(0)
    assert init.last_bcast == 10 and bc.peers[b].acked == 10
    for i in range(5):
        bc.xmit(data_msg(bytes([i])), 0.0)
    bc.proto_rcv(a, state(a, bcast_ack=15), 0.0)
    assert bc.transmq_len == 5  # b still owes acks for all 5
    # b's acks before it is synched do not count, whatever they claim
    bc.proto_rcv(b, state(b, bcast_ack=15, invalid=1), 0.0)       # bc_ack_invalid
    bc.ack_rcv(b, Msg.build(0, 3, bcast_ack=15, prevnode=b), 0.0)  # receive link not up
    bc.proto_rcv(b, state(b, bcast_ack=15, ack=0), 0.0)            # init not acked yet
    assert bc.transmq_len == 5 and not bc.peers[b].bc_peer_is_up
    assert bc.stats.rx_not_synched >= 3
    bc.rcv_up(b)
    bc.proto_rcv(b, state(b, bcast_ack=15, ack=1), 0.0)  # opens (this one not counted)
    assert bc.peers[b].bc_peer_is_up and bc.transmq_len == 5
    bc.ack_rcv(b, Msg.build(0, 3, bcast_ack=13, prevnode=b), 0.0)
    assert bc.transmq_len == 2
    bc.proto_rcv(b, state(b, bcast_ack=15), 0.0)
    assert bc.transmq_len == 0


def test_dead_receiver_blocks_until_removed() -> None:
    bc = new_link(2)
    live, dead = 0x2000, 0x2001
    for i in range(120):
        bc.xmit(data_msg(b"z" * 1000 + bytes([i])), 0.0)
    bc.take_outgoing()
    bc.proto_rcv(live, state(live, bcast_ack=50), 0.1)
    assert bc.transmq_len == 50 and not bc.take_outgoing()  # the dead one holds the window
    bc.remove_peer(dead)
    bc.dec_bearer_dst(0)
    assert seqnos(bc.take_outgoing()) == list(range(51, 101))
    bc.proto_rcv(live, state(live, bcast_ack=100), 0.2)
    bc.proto_rcv(live, state(live, bcast_ack=120), 0.3)
    assert bc.transmq_len == 0 and bc.backlog_len == 0


def test_last_peer_leaving_resets_seqnos() -> None:
    bc = new_link(1)
    for _ in range(5):
        bc.xmit(data_msg(b"q"), 0.0)
    assert bc.snd_nxt == 6
    bc.remove_peer(0x2000)
    assert bc.snd_nxt == 1 and bc.transmq_len == 0 and bc.stats.resets == 1
    assert bc.xmit(data_msg(b"q"), 0.0) and bc.stats.tx_no_peers == 1  # nobody to send to
    assert bc.add_peer(0x2000).last_bcast == 0


def test_retransmission_rate_limit_gap_blocks_and_failure() -> None:
    bc = new_link(1)
    p = 0x2000
    for i in range(10):
        bc.xmit(data_msg(bytes([i])), 0.0)
    bc.take_outgoing()
    # got 1..3 and 6..8: missing 4,5 (bc_gap) and 9,10 (after the block)
    bc.proto_rcv(p, state(p, bcast_ack=3, bc_gap=2, blocks=[(8, 2)]), 0.02)
    assert seqnos(bc.take_outgoing()) == [4, 5, 9, 10]
    assert bc.transmq_len == 4  # 1..3 and the gap-acked 6..8 released
    bc.proto_rcv(p, state(p, bcast_ack=3, bc_gap=2, blocks=[(8, 2)]), 0.02 + BC_RETR_INTERVAL / 2)
    assert bc.take_outgoing() == []  # not twice within 10 ms
    bc.proto_rcv(p, state(p, bcast_ack=3, bc_gap=2, blocks=[(8, 2)]), 0.04)
    assert seqnos(bc.take_outgoing()) == [4, 5, 9, 10]
    # the peer never gets 4: after 10 x tolerance it is declared failed
    bc.proto_rcv(p, state(p, bcast_ack=3, bc_gap=2, blocks=[(8, 2)]), 16.0)
    assert bc.take_events() == [BcastPeerFailure(p)]


def test_peer_acking_what_we_never_sent_is_failed() -> None:
    """A peer whose broadcast receive state was corrupted (its sync point, say)
    acks packets we never sent and never asks for what we hold: it is failed once
    that persists as long as a retransmission failure takes (10 x tolerance, 3 acks
    or more), so its links resynchronise.
    Single such acks (a damaged STATE) are only counted."""
    bc = new_link(1)
    p = 0x2000
    bc.xmit(data_msg(b"x"), 0.0)
    bc.take_outgoing()
    bogus = (bc.last_bcast + 2048) & 0xFFFF
    bc.proto_rcv(p, state(p, bcast_ack=bogus), 0.1)
    bc.proto_rcv(p, state(p, bcast_ack=bc.peers[p].acked), 0.2)  # a sane one between
    for t in (0.3, 0.5, 1.0, 14.0):
        bc.proto_rcv(p, state(p, bcast_ack=bogus), t)
    assert bc.take_events() == []  # in a row, but not yet for 10 x tolerance
    bc.proto_rcv(p, state(p, bcast_ack=bogus), 15.4)
    assert bc.take_events() == [BcastPeerFailure(p)]
    assert bc.stats.rx_malformed == 6


def test_legacy_nack_on_broadcast_link() -> None:
    bc = new_link(1)
    for i in range(6):
        bc.xmit(data_msg(bytes([i])), 0.0)
    bc.take_outgoing()
    nack = BcRcvNack().build_legacy_nack(3, 7, {5: None, 6: None}, own_addr=0x2000, peer=SENDER)
    assert (nack.bcast_ack, nack.bcgap_after, nack.bcgap_to, nack.non_seq) == (2, 2, 4, 1)
    bc.nack_rcv(0x2000, nack, 0.05)
    assert seqnos(bc.take_outgoing()) == [3, 4]
    other = nack.copy()
    other.destnode = 0x9999
    bc.nack_rcv(0x2000, other, 0.2)  # for another node's link: nothing here
    assert bc.take_outgoing() == []


# ---------------------------------------------------------------- malformed input
def test_malformed_state_and_nack_are_counted_and_dropped() -> None:
    bc = new_link(1)
    p = 0x2000
    for i in range(5):
        bc.xmit(data_msg(bytes([i])), 0.0)
    bc.take_outgoing()
    before = bc.stats.rx_malformed
    bad = [
        state(p, bcast_ack=5, data=b"\x00\x40\x00\x01"),               # record longer than payload
        state(p, bcast_ack=5, data=b"\x00\x08\x02\x05\x00\x01\x00\x00"),  # counts do not match
        state(p, bcast_ack=9),                                            # acks what we never sent
        state(p, bcast_ack=2, bc_gap=9),                                  # NACKs beyond snd_nxt
        state(p, bcast_ack=2, bc_gap=1, blocks=[(3, 0)]),                 # block not after the gap
        state(p, bcast_ack=1, bc_gap=1, blocks=[(4, 0), (4, 0)]),         # blocks going back
        Msg.build(7, 0, hsize=24, prevnode=p),                            # short header
    ]
    for m in bad:
        bc.proto_rcv(p, m, 0.05)
    bc.nack_rcv(p, Msg.build(5, 0, hsize=24, prevnode=p), 0.05)
    assert bc.stats.rx_malformed == before + len(bad) + 1
    assert bc.transmq_len == 5 and bc.take_outgoing() == [] and bc.peers[p].acked == 0
    bc.proto_rcv(0x7777, state(0x7777, bcast_ack=5), 0.05)
    bc.ack_rcv(0x7777, Msg.build(0, 3, bcast_ack=5), 0.05)
    assert bc.stats.rx_unknown_peer == 2
    bc.proto_rcv(p, state(p, bcast_ack=5), 0.1)  # still works afterwards
    assert bc.transmq_len == 0


def test_parse_gap_ack_record_roundtrip_and_compat() -> None:
    bcb, ucb = [(5, 2), (9, 0)], [(100, 1)]
    rec = gap_ack_record(bcb, ucb)
    assert rec[:4] == b"\x00\x10\x01\x02"
    assert parse_gap_ack_record(rec) == (bcb, ucb)
    assert parse_gap_ack_record(b"\x00\x04\x00\x00") == ([], [])
    assert parse_gap_ack_record(b"") == ([], [])
    # a peer without broadcast blocks: len counts only the unicast ones
    assert parse_gap_ack_record(b"\x00\x08\x01\x07\x00\x05\x00\x01") == ([], [(5, 1)])
    assert parse_gap_ack_record(b"\x00\x09\x01\x00" + bytes(8)) is None


# ---------------------------------------------------------------- method selection
def test_autoselect_follows_kernel_rule_and_hysteresis() -> None:
    bc = new_link(20)
    assert bc.bc_threshold == 1 + 20 * 10 // 100 == 3
    m = McMethod()
    assert m.rcast is False
    assert bc.mcast_plan(m, 3, 0.0) == (True, True)    # 3 <= 3: replicast, switched
    assert bc.mcast_plan(m, 4, 0.1) == (False, True)   # RBCTL cluster: re-evaluated each send
    bc.set_cluster_caps(ALL & ~int(Cap.MCAST_RBCTL))
    assert bc.mcast_plan(m, 2, 0.2) == (False, False)  # within 5 s of the last send: kept
    assert bc.mcast_plan(m, 2, 0.2 + METHOD_EXPIRE + 0.01) == (True, False)  # switch, no SYN
    bc.set_cluster_caps(ALL)
    bc.set_ratio(50)
    assert bc.bc_threshold == 11
    assert bc.select_xmit_method(McMethod(), 11, 0.0) is True
    assert bc.select_xmit_method(McMethod(), 12, 0.0) is False
    bc.set_mode(BcMode.BCAST)
    assert bc.select_xmit_method(McMethod(), 1, 0.0) is False
    bc.set_mode(BcMode.RCAST)
    assert bc.select_xmit_method(McMethod(), 19, 0.0) is True
    mand = McMethod(rcast=False, mandatory=True)
    assert bc.select_xmit_method(mand, 1, 0.0) is False
    assert bc.get_broadcast() == {"method": "REPLICAST", "mode": 2}
    bc.set_mode(BcMode.SEL)
    assert bc.get_broadcast() == {"method": "AUTOSELECT", "mode": 4, "ratio": 50}


def test_method_forced_by_bearer_and_peer_capabilities() -> None:
    bc = new_link(4)
    bc.set_bearer(0, 1500, False)  # UDP with unicast remote IPs
    assert not bc.bcast_support and bc.get_mode() == BcMode.NONE
    assert bc.select_xmit_method(McMethod(), 4, 0.0) is True
    with pytest.raises(OSError) as ei:
        bc.set_mode(BcMode.BCAST)
    assert ei.value.errno == 92  # ENOPROTOOPT
    bc.set_bearer(0, 1500, True)
    bc.set_cluster_caps(ALL & ~int(Cap.BCAST_RCAST))  # some node cannot take replicast
    assert bc.select_xmit_method(McMethod(rcast=True, mandatory=True), 1, 0.0) is False
    with pytest.raises(OSError):
        bc.set_mode(BcMode.RCAST)
    bc.set_cluster_caps(ALL)
    with pytest.raises(OSError) as ei:
        bc.set_ratio(0)
    assert ei.value.errno == 22
    with pytest.raises(OSError):
        bc.set_mode(9)


def test_primary_bearer_and_mtu() -> None:
    bc = BcastLink(own_addr=SENDER, net_id=NET_ID)
    assert bc.mtu == 3584
    bc.set_bearer(0, 1500, True)
    bc.set_bearer(1, 14000, True)
    for addr in (0x2000, 0x2001):
        bc.add_peer(addr)
        synch(bc, addr)
    bc.inc_bearer_dst(0)  # bearer 0 reaches only one of the two
    bc.inc_bearer_dst(1)
    bc.inc_bearer_dst(1)
    assert bc.primary_bearer == 1 and bc.mtu == 1500  # lowered by the used bearers
    bc.xmit(data_msg(b"a"), 0.0)
    assert [(b, d) for b, d, _ in bc.take_outgoing()] == [(1, None)]
    bc.dec_bearer_dst(1)
    assert bc.primary_bearer is None
    bc.xmit(data_msg(b"b"), 0.0)
    assert [(b, d) for b, d, _ in bc.take_outgoing()] == [(0, None), (1, None)]


def test_named_updates_use_broadcast_only_when_every_peer_can() -> None:
    assert named_use_bcast([ALL, ALL], BcMode.SEL)
    assert named_use_bcast([], BcMode.BCAST)
    assert not named_use_bcast([ALL, ALL & ~int(Cap.NAMED_BCAST)], BcMode.SEL)
    assert not named_use_bcast([ALL], BcMode.RCAST)


def test_mcast_sync_dummy() -> None:
    m = data_msg(b"payload")
    m.w[0] |= 1 << 18  # is_rcast: the new method is replicast
    d = build_mcast_sync(m)
    assert m.syn == 1
    raw = d.encode()
    assert len(raw) == 44
    dd = decode(raw)
    assert (dd.syn, (dd.w[0] >> 18) & 1, dd.errcode, dd.mtype, dd.data) == (1, 0, 2, 1, b"")
    assert dd.origport == 7 and dd.w[8:11] == m.w[8:11]


# ---------------------------------------------------------------- receive-side helpers
def test_receive_side_gap_blocks_and_ack_turns() -> None:
    assert bc_rcv_gap(5, 9, {}) == 4
    assert bc_rcv_gap(5, 9, {7: 1, 8: 1}) == 2
    assert bc_rcv_gap(5, 5, {}) == 0
    assert bc_gap_ack_blocks(5, {7: 1, 8: 1, 11: 1}) == [(8, 2), (11, 0)]
    assert bc_gap_ack_blocks(0xFFFE, {0: 1, 2: 1}) == [(0, 1), (2, 0)]  # wraps
    assert [r for r in range(32) if bc_ack_due(r, 0x1235)] == [0xA, 0x1A]
    assert [c for c in range(1, 40) if bc_nack_due(c, 0x1235)] == [5, 21, 37]


def test_receive_side_state_nack_and_legacy() -> None:
    n = BcRcvNack()
    st = Msg.build(7, 0, prevnode=SENDER, last_bcast=9, ack=1, redundant_link=1)
    r = n.sync_rcv(st, rcv_up=True, rcv_nxt=5, deferred={}, peer_caps=ALL, own_addr=1)
    assert r.send_state and r.legacy_nack is None and n.snd_nxt == 10
    st_inv = Msg.build(7, 0, prevnode=SENDER, last_bcast=9, bc_ack_invalid=1)
    assert not n.sync_rcv(st_inv, rcv_up=True, rcv_nxt=5, deferred={}, peer_caps=ALL,
                          own_addr=1).send_state
    far = Msg.build(7, 0, prevnode=SENDER, last_bcast=500)
    assert not n.sync_rcv(far, rcv_up=True, rcv_nxt=5, deferred={}, peer_caps=ALL,
                          own_addr=1).send_state and n.rx_out_of_window == 1
    # a peer without BCAST_STATE_NACK: conditional, then a legacy NACK, then suppressed
    old = ALL & ~int(Cap.BCAST_STATE_NACK)
    n2 = BcRcvNack()
    r1 = n2.sync_rcv(st, rcv_up=True, rcv_nxt=5, deferred={}, peer_caps=old, own_addr=1)
    r2 = n2.sync_rcv(st, rcv_up=True, rcv_nxt=5, deferred={}, peer_caps=old, own_addr=1)
    r3 = n2.sync_rcv(st, rcv_up=True, rcv_nxt=5, deferred={}, peer_caps=old, own_addr=1)
    assert r1.legacy_nack is None and r2.legacy_nack is not None and r3.legacy_nack is None
    assert (r2.legacy_nack.bcast_ack, r2.legacy_nack.bcgap_to, r2.legacy_nack.destnode) == (4, 9, SENDER)


def test_bc_ack_invalid_is_ignored_from_a_synched_peer() -> None:
    bc = new_link(1)
    p = 0x2000
    for i in range(5):
        bc.xmit(data_msg(bytes([i])), 0.0)
    bc.proto_rcv(p, state(p, bcast_ack=5, invalid=1), 0.0)
    # a bulk NAME_DISTRIBUTOR carries bc_ack_invalid too; data reuses w5 as destport
    bulk = Msg.build(11, 0, prevnode=p, bcast_ack=5, bc_ack_invalid=1)
    bc.ack_rcv(p, bulk, 0.0)
    assert bc.transmq_len == 5
    dm = Msg.build(0, 3, prevnode=p, bcast_ack=2, destport=1 << 14)
    bc.ack_rcv(p, dm, 0.0)
    assert bc.transmq_len == 3


def test_name_updates_bundle_as_system_importance_and_stats_shape() -> None:
    from tipcpy.core.bcast import ADVERTISE_CAPS
    from tipcpy.runtime.ops.link import cli_link_stats

    assert ADVERTISE_CAPS == 0xB7F  # OWN_CAPS (0x37F) | NAMED_BCAST
    bc = new_link(1)
    for _ in range(50):
        bc.xmit(data_msg(b"d" * 1000), 0.0)
    bc.take_outgoing()
    for i in range(24):  # single PUBLICATIONs while the window is full
        upd = Msg.build(11, 0, data=bytes(20), prevnode=SENDER, orignode=SENDER,
                        named_seqno=i, non_legacy=1)
        assert bc.xmit(upd, 0.0)
    # 23 x 60 B fill a bundle at MTU 1500, as the kernel's 1420-byte 0x00170004 (§2.9)
    assert bc.backlog_len == 2
    bc.proto_rcv(0x2000, state(0x2000, bcast_ack=50), 0.1)
    (_, _, raw), (_, _, raw2) = bc.take_outgoing()
    b = decode(raw)
    assert (b.user, b.non_seq, b.w[5], b.w[9]) == (User.MSG_BUNDLER, 1, NET_ID, 0x00170004)
    assert len(raw) == 1420
    assert decode(raw2).user == User.NAME_DISTRIBUTOR  # the 24th alone: no bundle of one
    inner = unbundle(b)  # type: ignore[arg-type]
    assert [m.named_seqno for m in inner] == list(range(23))  # type: ignore[attr-defined]
    assert all(m.non_seq == 0 for m in inner)
    n = cli_link_stats(bc.stats_dict(), bc.max_win)
    assert n["name"] == "broadcast-link" and n["broadcast"]
    assert (n["tx_packets"], n["tx_bundles"], n["tx_bundled"], n["window"]) == (52, 1, 23, 50)
