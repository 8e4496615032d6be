"""Corruption that still decodes (TIPC has no checksum of its own: a bit flipped on
a medium without one, or by a broken NIC, reaches the link as a valid packet).

Three ways one flipped field used to stall a link for good (found with bit flips in
the simulator and through the UDP impairment relay, issue 11); each test here
builds that packet by hand and fails without its defence in tipcpy/core/link.py."""

from __future__ import annotations

from tests.unit.test_link import Pair, _proto, data_msg
from tipcpy.core.link import STATE_RESYNCH, UNSENT_AGE, Link, LinkDown
from tipcpy.wire import decode


def _states(lk: Link, n: int) -> list[bytes]:
    """n genuine STATEs from ``lk`` (its real, consecutive state seqnos)."""
    out = []
    for _ in range(n):
        lk.send_state()
        out += [p for p in lk.take_outgoing() if decode(p).user == 7]
    return out


def test_state_seqno_pushed_ahead_by_corruption_resynchs():
    """A STATE whose seqno was flipped far ahead makes every genuine STATE after it
    look old; a run of consecutive ones proves the peer's counter is the real one."""
    p = Pair().up()
    a, b = p.a, p.b
    b.take_outgoing()
    bogus = _proto(b, 0, seqno=(b._snd_nxt_state + 0x4000) & 0xFFFF,
                   ack=(b.rcv_nxt - 1) & 0xFFFF, next_sent=b.snd_nxt)
    a.receive(bogus, p.now)
    rej0, took0 = a.stats.rx_proto_rejected, a.stats.recv_states
    for i, raw in enumerate(_states(b, STATE_RESYNCH + 2)):
        a.receive(decode(raw), p.now)
        if i < STATE_RESYNCH - 1:
            assert a.stats.recv_states == took0, i  # still taken as old
    assert a.stats.rx_proto_rejected == rej0 + STATE_RESYNCH - 1
    assert a.stats.recv_states == took0 + 3  # the resynching one and the two after
    assert a.stats.state_resynchs == 1 and a.is_up


def test_single_late_states_still_rejected():
    """The kernel's rule survives: late STATEs that are not a consecutive run of
    STATE_RESYNCH are dropped."""
    p = Pair().up()
    a, b = p.a, p.b
    b.take_outgoing()
    old = _states(b, 6)
    for raw in old[3:]:
        a.receive(decode(raw), p.now)
    rej = a.stats.rx_proto_rejected
    for raw in (old[0], old[2], old[1]):  # late, not a run
        a.receive(decode(raw), p.now)
    assert a.stats.rx_proto_rejected == rej + 3
    assert a.stats.state_resynchs == 0


def test_nack_for_packets_a_corrupted_ack_released_fails_the_link():
    """An ack flipped upwards releases packets the peer never got; the peer NACKs
    the hole for ever and its Gap-ACK blocks release everything after it.  The link
    must fail (and recover with a new session), not stay up delivering nothing."""
    p = Pair().up()
    a, b = p.a, p.b
    for i in range(5):
        assert a.send(data_msg(b"lost %d" % i), p.now)
    a.take_outgoing()  # lost on the way
    # b's ack, corrupted on the way: "I have everything you sent"
    a.receive(_proto(b, 0, seqno=b._snd_nxt_state, ack=(a.snd_nxt - 1) & 0xFFFF,
                     next_sent=b.snd_nxt), p.now)
    b._snd_nxt_state += 1
    assert a.transmq_len == 0  # released what b never got
    for i in range(3):
        assert a.send(data_msg(b"next %d" % i), p.now)
    p.flush()
    p.run_for(0.5)
    downs = p.events("a", LinkDown)
    assert downs and "no longer hold" in downs[0].reason, p.ev["a"]
    p.run_until(lambda: a.is_up and b.is_up, 5.0)  # a new session
    assert a.send(data_msg(b"after"), p.now)
    p.flush()
    p.run_until(lambda: any(m.data == b"after" for m in p.delivered("b")), 2.0)


def test_deferred_packet_from_the_future_is_dropped():
    """A data packet whose seqno was flipped ahead waits in the deferred queue and
    would be delivered in place of the real packet once the sequence got there.
    STATEs saying, for UNSENT_AGE, that the peer is UNSENT_MARGIN or more short of
    it drop it."""
    p = Pair().up()
    a, b = p.a, p.b
    a.send(data_msg(b"real"), p.now)
    (raw,) = a.take_outgoing()
    forged = bytearray(raw)
    seq = int.from_bytes(forged[10:12], "big")
    forged[10:12] = ((seq + 3000) & 0xFFFF).to_bytes(2, "big")  # word 2, low half
    b.receive(decode(bytes(forged)), p.now)
    assert b.deferred_len == 1
    st1, st2 = _states(a, 2)
    b.receive(decode(st1), p.now)
    b.receive(decode(st2), p.now + UNSENT_AGE / 2)
    assert b.deferred_len == 1  # not yet: a late STATE is possible for a while
    (st3,) = _states(a, 1)
    b.receive(decode(st3), p.now + UNSENT_AGE)
    assert b.deferred_len == 0 and b.stats.rx_unsent_dropped == 1
    b.receive(decode(raw), p.now)  # the real one is delivered in its place
    assert [e.msg.data for e in b.take_events() if hasattr(e, "msg")] == [b"real"]


def test_packet_that_overtook_a_state_is_kept():
    """The twin: a packet that overtook the STATEs sent before it is ahead of
    their snd_nxt, but never by UNSENT_MARGIN: it stays, however long they say so
    (dropping it would lose it for good once a Gap-ACK block released it)."""
    p = Pair().up()
    a, b = p.a, p.b
    a.send(data_msg(b"one"), p.now)
    a.take_outgoing()  # lost: b will defer what follows
    early = _states(a, 3)  # snd_nxt = seq(one) + 1 in all three
    a.send(data_msg(b"two"), p.now)
    (two,) = a.take_outgoing()
    b.receive(decode(two), p.now)  # overtakes them all
    for k, st in enumerate(early):  # each says "two" was not sent yet, for long
        b.receive(decode(st), p.now + k * UNSENT_AGE)
    assert b.stats.recv_states >= 3  # (they were taken, not refused as late)
    assert b.deferred_len == 1 and b.stats.rx_unsent_dropped == 0
