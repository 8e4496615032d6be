"""The broadcast link's seams in the unicast link and the Stack: STATE messages
carry bc_gap and broadcast Gap-ACK blocks (before the unicast ones, as the kernel's
record), and broadcast-link input that makes no sense is counted and dropped."""

from __future__ import annotations

import random

from tipcpy.core.assembly import build_node
from tipcpy.core.bcast import BcMode, parse_gap_ack_record
from tipcpy.core.discover import mem_media_addr
from tipcpy.core.link import Link
from tipcpy.core.stack_bcast import mode_from_name
from tipcpy.wire import Msg, decode
from tipcpy.wire.consts import Cap

A, B = 0x195D0765, 0x195D0465


def up_link() -> tuple[Link, Link]:
    a = Link(own_addr=A, peer_addr=B, own_name="a", peer_name="b", bearer_id=0,
             if_name="b0", rng=random.Random(1), peer_caps=int(Cap.ALL),
             own_caps=int(Cap.ALL), mtu=1500)
    b = Link(own_addr=B, peer_addr=A, own_name="b", peer_name="a", bearer_id=0,
             if_name="b0", rng=random.Random(2), peer_caps=int(Cap.ALL),
             own_caps=int(Cap.ALL), mtu=1500)
    a.start(0.0)
    b.start(0.0)
    t = 0.0
    for _ in range(200):
        for src, dst in ((a, b), (b, a)):
            for raw in src.take_outgoing():
                dst.receive(decode(raw), t)
        if a.is_up and b.is_up:
            break
        t += 0.05
        a.tick(t)
        b.tick(t)
    assert a.is_up and b.is_up
    a.take_outgoing()
    a.take_events()
    return a, b


def test_state_carries_broadcast_gap_and_blocks_before_unicast_ones() -> None:
    a, _ = up_link()
    a.bc_gap = 3
    a.bc_gap_blocks = [(20, 2), (30, 0)]
    a.send_state()
    (raw,) = a.take_outgoing()
    m = decode(raw)
    assert m.w[8] & 0x3FF == 3
    rec = parse_gap_ack_record(m.data)
    assert rec == ([(20, 2), (30, 0)], [])
    assert m.data[2] == 0 and m.data[3] == 2  # ugack_cnt 0, bgack_cnt 2
    # without broadcast blocks the record is the plain unicast one (the twin)
    a.bc_gap_blocks = []
    a.send_state()
    (raw2,) = a.take_outgoing()
    assert parse_gap_ack_record(decode(raw2).data) == ([], [])
    assert decode(raw2).data[:4] == b"\x00\x04\x00\x00"


def test_broadcast_protocol_from_unknown_or_unsynced_peer_is_counted_and_dropped() -> None:
    st = build_node(b"bc-unit".ljust(16, b"\0"), rng=random.Random(3))
    st.enable_bearer("eth:t", "mem", mem_media_addr(1), 1500, 0.0)
    t = 0.0
    while not st.own_addr:
        t = st.next_deadline() or t + 0.1
        st.tick(t)
        st.take_transmits()
    # a legacy NACK on the broadcast link from a node we do not know
    nack = Msg.build(5, 0, prevnode=0x1234, orignode=0x1234, destnode=st.own_addr,
                     bcast_ack=3, bcgap_after=3, bcgap_to=9, non_seq=1)
    nack.w[5] = st.net_id
    st.receive(0, nack.encode(), t)
    assert st.stats()["bearers"]["eth:t"]["rx_no_peer"] == 1
    # the same sent straight to the send link: counted as an unknown peer
    st.bcast.link.nack_rcv(0x1234, nack, t)
    assert st.bcast.link.stats.rx_unknown_peer == 1
    assert st.bcast.link.snd_nxt == 1 and not st.take_transmits()


def test_mode_names() -> None:
    assert mode_from_name("broadcast") == BcMode.BCAST
    assert mode_from_name("REPLICAST") == BcMode.RCAST
    assert mode_from_name("AUTOSELECT") == BcMode.SEL
    try:
        mode_from_name("SOMETIMES")
    except ValueError as e:
        assert "SOMETIMES" in str(e)
    else:
        raise AssertionError("unknown method accepted")
