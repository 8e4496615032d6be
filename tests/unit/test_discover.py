"""Discoverer: address trial, REQ back-off, RESP rules, net id, duplicates, our message."""

from __future__ import annotations

import random

import pytest

from tipcpy.core.discover import (
    OWN_CAPS,
    Discoverer,
    DuplicateAddress,
    PeerDiscovered,
    TrialEnded,
    TrialFailed,
    mem_media_addr,
)
from tipcpy.wire import DiscMsg, decode
from tipcpy.wire.consts import Cap, DscType

ID_A = b"node-a".ljust(16, b"\0")
ID_B = b"node-b".ljust(16, b"\0")
ADDR_A = 0x0A0A0A0A
ADDR_B = 0x0B0B0B0B


def make(node_id: bytes = ID_A, addr: int = ADDR_A, own: bool = True, media: int = 1,
         net_id: int = 4711, now: float = 0.0, seed: int = 1) -> Discoverer:
    return Discoverer(bearer_id=0, media_addr=mem_media_addr(media), node_id=node_id,
                      net_id=net_id, own_addr=addr if own else 0, trial_addr=addr,
                      rng=random.Random(seed), now=now)


def msgs(d: Discoverer) -> list[tuple[object, DiscMsg]]:
    out = []
    for dest, data in d.take_outgoing():
        m = decode(data)
        assert isinstance(m, DiscMsg)
        out.append((dest, m))
    return out


def run(d: Discoverer, until: float) -> list[tuple[float, object, DiscMsg]]:
    """Tick at every deadline up to ``until``; (time, dest, msg) of what was sent."""
    sent = []
    while True:
        t = d.next_deadline()
        if t is None or t > until:
            return sent
        d.tick(t)
        for dest, m in msgs(d):
            sent.append((t, dest, m))


def peer_msg(mtype: int, *, node_id: bytes = ID_B, addr: int = ADDR_B, media: int = 2,
             net_id: int = 4711, dest_domain: int = 0, sugg: int = 0) -> DiscMsg:
    p = make(node_id, addr, media=media, net_id=net_id, seed=7)
    p.take_outgoing()
    m = decode(p._build(mtype, dest_domain=dest_domain, sugg_addr=sugg))
    assert isinstance(m, DiscMsg)
    return m


# ---------------------------------------------------------------- timing
def test_trial_then_req_backoff_without_neighbour() -> None:
    d = make(own=False)
    first = msgs(d)
    assert [m.mtype for _, m in first] == [DscType.TRIAL]
    sent = run(d, 0.99)
    # 7 more TRIALs at a fixed 125 ms during the 1 s trial: 8 in all, like Linux 6.1
    assert [m.mtype for _, _, m in sent] == [DscType.TRIAL] * 7
    assert [round(t, 3) for t, _, _ in sent] == [0.125 * i for i in range(1, 8)]
    assert all(dest is None for _, dest, _ in sent)
    assert all(m.prevnode == ADDR_A for _, _, m in sent)
    # at 1.0 the trial ends: an event, nothing sent, re-armed 125 ms later
    d.tick(1.0)
    assert msgs(d) == []
    assert d.take_events() == [TrialEnded(0, ADDR_A)]
    d.set_own_addr(ADDR_A, 1.0)
    sent = run(d, 8.0)
    times = [round(t, 3) for t, _, _ in sent]
    assert all(m.mtype == DscType.REQ for _, _, m in sent)
    assert times[:4] == [1.125, 1.375, 1.875, 2.875]  # 250, 500, 1000 ...
    gaps = [round(b - a, 3) for a, b in zip(times[3:], times[4:], strict=False)]
    assert gaps and all(g == 1.0 for g in gaps)  # capped at 1 s with no neighbour


def test_req_backoff_with_neighbour_caps_at_60s_and_falls_back() -> None:
    d = make()
    assert [m.mtype for _, m in msgs(d)] == [DscType.REQ]
    d.add_dest(ADDR_B)
    sent = run(d, 400.0)
    times = [t for t, _, _ in sent]
    gaps = [round(b - a, 3) for a, b in zip([0.0] + times, times, strict=False)]
    assert gaps[:7] == [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
    assert max(gaps) == 60.0 and gaps[-1] == 60.0
    # the last neighbour is lost: back to 125 ms at once
    now = times[-1] + 1.0
    d.remove_dest(ADDR_B, now)
    assert d.next_deadline() == pytest.approx(now + 0.125)
    sent = run(d, now + 2.0)
    assert [round(t - now, 3) for t, _, _ in sent][:3] == [0.125, 0.375, 0.875]


# ---------------------------------------------------------------- responses
def test_resp_only_to_req_from_peer_without_link() -> None:
    d = make()
    msgs(d)
    d.receive(peer_msg(DscType.REQ), 0.01)
    out = msgs(d)
    assert len(out) == 1
    dest, resp = out[0]
    assert dest == mem_media_addr(2)  # unicast to the media address inside the REQ
    assert resp.mtype == DscType.RESP and resp.dest_domain == ADDR_B
    ev = d.take_events()
    assert ev == [PeerDiscovered(0, ADDR_B, ID_B, OWN_CAPS, mem_media_addr(2),
                                 ev[0].signature, DscType.REQ)]
    # a RESP is never answered
    d.receive(peer_msg(DscType.RESP, dest_domain=ADDR_A), 0.02)
    assert msgs(d) == []
    assert isinstance(d.take_events()[0], PeerDiscovered)
    # once the link is up, REQs are not answered any more
    d.add_dest(ADDR_B)
    d.receive(peer_msg(DscType.REQ), 0.03)
    assert msgs(d) == []
    assert isinstance(d.take_events()[0], PeerDiscovered)


def test_resp_for_another_node_is_ignored() -> None:
    d = make()
    msgs(d)
    d.receive(peer_msg(DscType.RESP, dest_domain=0x12345678), 0.0)
    assert d.take_events() == [] and d.stats.rx_out_of_scope == 1


def test_wrong_net_id_counted_and_dropped() -> None:
    d = make()
    msgs(d)
    d.receive(peer_msg(DscType.REQ, net_id=1234), 0.0)
    assert msgs(d) == [] and d.take_events() == []
    assert d.stats.rx_wrong_netid == 1


def test_own_echo_ignored() -> None:
    d = make()
    (_, own), = msgs(d)
    d.receive(own, 0.0)
    assert msgs(d) == [] and d.take_events() == [] and d.stats.rx_own == 1


def test_req_during_trial_dropped() -> None:
    d = make(own=False)
    msgs(d)
    d.receive(peer_msg(DscType.REQ), 0.1)
    assert msgs(d) == [] and d.take_events() == [] and d.stats.rx_during_trial == 1


# ---------------------------------------------------------------- duplicates
def test_req_with_our_address_is_duplicate() -> None:
    d = make()
    msgs(d)
    d.receive(peer_msg(DscType.REQ, addr=ADDR_A), 0.0)
    assert msgs(d) == []
    (ev,) = d.take_events()
    assert isinstance(ev, DuplicateAddress) and ev.ours and ev.node_id == ID_B
    assert d.stats.rx_duplicate_addr == 1


def test_req_claiming_known_peer_address_with_other_id_is_duplicate() -> None:
    d = Discoverer(bearer_id=0, media_addr=mem_media_addr(1), node_id=ID_A, net_id=4711,
                   own_addr=ADDR_A, trial_addr=ADDR_A, rng=random.Random(1), now=0.0,
                   node_id_by_addr=lambda a: b"someone-else".ljust(16, b"\0")
                   if a == ADDR_B else None)
    msgs(d)
    d.receive(peer_msg(DscType.REQ), 0.0)
    (ev,) = d.take_events()
    assert isinstance(ev, DuplicateAddress) and not ev.ours
    assert msgs(d) == []


def test_trial_with_our_address_gets_trial_fail_with_suggestion() -> None:
    d = make()
    msgs(d)
    d.receive(peer_msg(DscType.TRIAL, addr=ADDR_A), 0.0)
    ((dest, m),) = msgs(d)
    assert dest == mem_media_addr(2)
    assert m.mtype == DscType.TRIAL_FAIL and m.dest_domain == ADDR_A
    assert m.suggested_addr not in (0, ADDR_A)
    # a TRIAL without conflict is never answered nor reported
    d.receive(peer_msg(DscType.TRIAL), 0.0)
    assert msgs(d) == [] and d.take_events() == []


def test_trial_fail_restarts_trial_with_suggested_address() -> None:
    d = make(own=False)
    msgs(d)
    run(d, 0.5)
    d.receive(peer_msg(DscType.TRIAL_FAIL, dest_domain=ADDR_A, sugg=0x0C0C0C0C), 0.55)
    assert d.take_events() == [TrialFailed(0, ADDR_A, 0x0C0C0C0C)]
    sent = run(d, 1.5)  # the trial restarted: still trialling at 1.5
    assert sent and all(m.mtype == DscType.TRIAL and m.prevnode == 0x0C0C0C0C
                        for _, _, m in sent)
    assert d.take_events() == []
    run(d, 1.7)
    assert d.take_events() == [TrialEnded(0, 0x0C0C0C0C)]
    # a TRIAL_FAIL for somebody else is ignored
    d2 = make(own=False)
    d2.receive(peer_msg(DscType.TRIAL_FAIL, dest_domain=0x999, sugg=0x0C0C0C0C), 0.1)
    assert d2.take_events() == [] and d2.trial_addr == ADDR_A


# ---------------------------------------------------------------- our message
def test_our_message_fields() -> None:
    d = make()
    (dest, m), = msgs(d)
    assert dest is None
    raw = m.encode()
    assert len(raw) == 76 and raw[:4] == bytes.fromhex("5bf0004c")
    assert m.caps == OWN_CAPS
    assert OWN_CAPS & Cap.NODE_ID128 and OWN_CAPS & Cap.LINK_PROTO_SEQNO
    assert OWN_CAPS & Cap.GAP_ACK_BLOCK and OWN_CAPS & Cap.BCAST_RCAST
    assert not OWN_CAPS & Cap.NAMED_BCAST  # kernels send name updates over the unicast link
    assert m.media_addr == mem_media_addr(1)
    assert m.node_id == ID_A and m.net_id == 4711 and m.prevnode == ADDR_A
    assert m.signature == d.signature
    assert m.peer_net_hash & 0x7FFF == d.signature & 0x7FFF
    assert m.dest_domain == 0 and m.non_seq == 1
