"""The node and link FSMs follow the kernel's transition sequences (node.c, link.c)."""

from __future__ import annotations

from typing import Any

import pytest

from tipcpy.core.link import Link, LinkEvent, LinkState
from tipcpy.core.node import NodeEvt, NodeState, PeerNode
from tipcpy.sim.cluster import SimCluster


def _record(obj: Any, log: list[tuple[Any, Any, Any]]) -> None:
    """Wrap obj.fsm_evt so every (state before, event, state after) is logged."""
    orig = obj.fsm_evt

    def rec(evt: Any) -> Any:
        before = obj.state
        r = orig(evt)
        log.append((before, evt, obj.state))
        return r

    obj.fsm_evt = rec


def test_peer_reset_takes_node_through_peer_down_as_the_kernel(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A RESET (not stopping) from a peer whose link restarted: the link goes
    ESTABLISHED -> PEER_RESET -> ESTABLISHING, and the node sees the peer reset
    (tipc_link_peer_is_down) first: SELF_UP_PEER_UP -> SELF_LEAVING_PEER_DOWN ->
    SELF_DOWN_PEER_DOWN.  It used to end in SELF_DOWN_PEER_LEAVING."""
    c = SimCluster(2, seed=3)
    assert c.run_until(c.all_links_up, timeout=5.0)
    c.run_for(1.0)
    a, b = c.stacks
    peer: PeerNode = a.peers[b.own_addr]
    assert peer.state is NodeState.SELF_UP_PEER_UP
    (le,) = peer.links.values()
    blink: Link = b.peers[a.own_addr].links[le.bearer_id].link
    node_log: list[tuple[Any, Any, Any]] = []
    link_log: list[tuple[Any, Any, Any]] = []
    _record(peer, node_log)
    _record(le.link, link_log)
    # the peer's link restarted: a fresh endpoint with the next session sends RESET
    fresh = Link(own_addr=blink.own_addr, peer_addr=blink.peer_addr,
                 own_name=blink.own_name, peer_name=blink.peer_name,
                 bearer_id=blink.bearer_id, if_name=blink.if_name, mtu=blink.mtu,
                 peer_caps=blink.peer_caps, rng=__import__("random").Random(0))
    fresh.session = (blink.session + 1) & 0xFFFF
    fresh.start(c.now)
    (reset,) = fresh.take_outgoing()
    c.inject(0, le.bearer_id, reset)
    c.run_for(0.0005)
    S, E = NodeState, NodeEvt
    assert node_log[:2] == [
        (S.SELF_UP_PEER_UP, E.PEER_LOST_CONTACT_EVT, S.SELF_LEAVING_PEER_DOWN),
        (S.SELF_LEAVING_PEER_DOWN, E.SELF_LOST_CONTACT_EVT, S.SELF_DOWN_PEER_DOWN),
    ]
    L, LE = LinkState, LinkEvent
    assert link_log[:2] == [
        (L.ESTABLISHED, LE.PEER_RESET, L.PEER_RESET),
        (L.PEER_RESET, LE.RESET, L.ESTABLISHING),
    ]
    assert peer.illegal_evts == 0 and le.link.illegal_evts == 0


def test_bugs_reports_illegal_events_and_swallowed_errors() -> None:
    """What the autouse teardown check (conftest.py) looks at really shows up."""
    c = SimCluster(2, seed=1)
    assert c.run_until(c.all_links_up, timeout=5.0)
    assert c.bugs() == {}
    a, b = c.stacks
    peer = a.peers[b.own_addr]
    (le,) = peer.links.values()
    le.link.fsm_evt(LinkEvent.FAILOVER_BEGIN)  # illegal in ESTABLISHED
    layer = b.sockets

    def boom(msg: Any, now: float) -> None:
        raise KeyError(msg)

    layer._dispatch = boom
    layer._stack_rcv(a.own_addr, None, c.now)
    bugs = c.bugs()
    assert bugs["node0 fsm_illegal"][le.link.name] == 1
    assert bugs["node1 swallowed"] == {"KeyError": 1}
    # leave the cluster clean for the teardown check
    le.link.illegal_evts = 0
    layer.swallowed.clear()
