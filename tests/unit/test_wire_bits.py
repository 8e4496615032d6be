"""The named header-bit constants in tipcpy.wire.msg read the same field as the
properties (hot paths in core/ use the constants, everything else the properties)."""

from __future__ import annotations

import random

from tipcpy.wire import msg as M


def _rand_msg(rng: random.Random) -> M.Msg:
    return M.LinkProtoMsg([rng.getrandbits(32) for _ in range(10)], b"")


def test_constants_equal_properties() -> None:
    rng = random.Random(10)
    for _ in range(500):
        m = _rand_msg(rng)
        w = m.w
        assert (w[0] >> M.VERSION_SHIFT) & M.VERSION_MASK == m.version
        assert (w[0] >> M.USER_SHIFT) & M.USER_MASK == m.user == M.w0_user(w[0])
        assert bool(w[0] & M.NON_SEQ_BIT) == bool(m.non_seq)
        assert bool(w[0] & M.DEST_DROPPABLE_BIT) == bool(m.dest_droppable)
        assert bool(w[0] & M.SRC_DROPPABLE_BIT) == bool(m.src_droppable)
        assert bool(w[0] & M.SYN_BIT) == bool(m.syn)
        assert (w[0] >> M.KEEPALIVE_SHIFT) & 1 == m.is_keepalive
        assert ((w[0] >> M.HSIZE_SHIFT) & M.HSIZE_MASK) * 4 == (
            (w[0] >> M._HSIZE_BYTES_SHIFT) & M._HSIZE_BYTES_MASK)
        assert (w[1] >> M.MTYPE_SHIFT) & M.MTYPE_MASK == m.mtype
        assert (w[1] >> M.ERRCODE_SHIFT) & M.ERRCODE_MASK == m.errcode == M.w1_errcode(w[1])
        assert (w[1] >> M.REROUTE_SHIFT) & M.REROUTE_MASK == m.reroute_cnt
        assert (w[1] >> M.SCOPE_SHIFT) & M.SCOPE_MASK == m.lookup_scope
        assert w[1] & M.BCAST_ACK_MASK == m.bcast_ack
        assert (w[1] >> M.SEQ_GAP_SHIFT) & M.SEQ_GAP_MASK == m.seq_gap
        assert (w[2] >> M.ACK_SHIFT) & M.ACK_MASK == m.ack
        assert w[2] & M.SEQNO_MASK == m.seqno
        assert (w[5] >> M.LINKPRIO_SHIFT) & M.LINKPRIO_MASK == m.linkprio
        assert ((w[9] >> M.MAX_PKT_SHIFT) & M.MAX_PKT_MASK) * 4 == m.max_pkt
        assert w[9] & M.TOLERANCE_MASK == m.tolerance
        b = M.BundleMsg(list(w), b"")
        assert (w[9] >> M.MSGCNT_SHIFT) & M.MSGCNT_MASK == b.msgcnt


def test_w0_keep_clears_exactly_hsize_and_size() -> None:
    assert M.W0_KEEP == 0xFE1E0000
    m = M.Msg.build(0, 0, data=b"x" * 7)
    m.w[0] |= M.SYN_BIT
    raw = m.encode()
    assert M.decode(raw).syn == 1
    assert M.decode(raw).size == len(raw)
