"""TopSrv: subscriptions and events exactly as the kernel's topology server."""

from __future__ import annotations

import struct

import pytest

from tipcpy.core.name_distr import NameDistributor
from tipcpy.core.name_table import NameTable, Publication
from tipcpy.core.topsrv import CloseConn, TopSrv
from tipcpy.wire.items import DistrItem, Event, Subscr

OWN, B, C = 0x1001, 0x1002, 0x1003
PORTS, SERVICE, CANCEL = 1, 2, 4
FOREVER = 0xFFFFFFFF
PUBLISHED, WITHDRAWN, TIMEOUT = 1, 2, 3


def sub(type: int, lower: int, upper: int, filt: int = PORTS, timeout: int = FOREVER,
        handle: bytes = b"handle!!", order: str = "<") -> bytes:  # fmt: skip
    return struct.pack(order + "5I", type, lower, upper, timeout, filt) + handle


def events(srv: TopSrv, conn: object = "c") -> list[tuple[int, int, int, int, int]]:
    out = []
    for c, data in srv.take_outgoing():
        assert len(data) == 48
        if c != conn:
            continue
        order = "<" if struct.unpack_from("<I", data, 36)[0] & 7 else ">"
        out.append(struct.unpack_from(order + "5I", data, 0))
    return out


def P(type: int, lower: int, upper: int, node: int, port: int, scope: int = 2) -> Publication:
    return Publication(type, lower, upper, scope, node, port, port + 1)


def mk() -> tuple[NameTable, TopSrv]:
    t = NameTable(OWN)
    srv = TopSrv(t, OWN)
    srv.open("c")
    return t, srv


@pytest.mark.parametrize("order", ["<", ">"])
def test_both_byte_orders_answered_in_the_subscribers_order(order: str) -> None:
    t, srv = mk()
    t.insert(P(1000, 5, 5, B, 77))
    raw = sub(1000, 0, 10, PORTS, order=order, handle=b"\x01\x02\x03\x04\x05\x06\x07\x08")
    assert srv.receive("c", raw, 0.0) is None
    ((c, data),) = srv.take_outgoing()
    assert c == "c" and data[20:] == raw  # the subscription echoed verbatim
    ev, be = Event.unpack(data)
    assert be == (order == ">")
    assert (ev.event, ev.found_lower, ev.found_upper, ev.port, ev.node) == (PUBLISHED, 5, 5, 77, B)
    assert ev.subscr == Subscr(1000, 0, 10, FOREVER, PORTS, b"\x01\x02\x03\x04\x05\x06\x07\x08")


def test_ports_reports_every_binding_service_only_first_and_last_per_exact_range() -> None:
    t, srv = mk()
    srv.open("s")
    srv.receive("c", sub(1000, 0, 100, PORTS), 0.0)
    srv.receive("s", sub(1000, 0, 100, SERVICE), 0.0)
    a, b, c = P(1000, 1, 5, B, 1), P(1000, 1, 5, C, 2), P(1000, 3, 7, C, 3)
    for p in (a, b, c):
        t.insert(p)
    t.remove_publication(a)
    t.remove_publication(b)
    t.remove_publication(c)
    out = srv.take_outgoing()
    ports = [struct.unpack_from("<5I", d)[:5] for cid, d in out if cid == "c"]
    service = [struct.unpack_from("<5I", d)[:5] for cid, d in out if cid == "s"]
    assert ports == [(PUBLISHED, 1, 5, 1, B), (PUBLISHED, 1, 5, 2, C), (PUBLISHED, 3, 7, 3, C),
                     (WITHDRAWN, 1, 5, 1, B), (WITHDRAWN, 1, 5, 2, C), (WITHDRAWN, 3, 7, 3, C)]  # fmt: skip
    # SERVICE: {1,5}'s first publication, {3,7}'s first, {1,5}'s last withdrawal, {3,7}'s
    assert service == [(PUBLISHED, 1, 5, 1, B), (PUBLISHED, 3, 7, 3, C),
                       (WITHDRAWN, 1, 5, 2, C), (WITHDRAWN, 3, 7, 3, C)]  # fmt: skip


def test_found_range_is_the_bindings_own_range_not_clipped_and_non_overlap_ignored() -> None:
    t, srv = mk()
    srv.receive("c", sub(1000, 10, 20), 0.0)
    t.insert(P(1000, 0, 100, B, 1))
    t.insert(P(1000, 21, 30, B, 2))
    t.insert(P(1001, 15, 15, B, 3))
    assert events(srv) == [(PUBLISHED, 0, 100, 1, B)]


def test_existing_bindings_reported_oldest_first_at_subscribe_time() -> None:
    t, srv = mk()
    t.insert(P(1000, 50, 50, B, 1))
    t.insert(P(1000, 10, 10, C, 2))
    t.insert(P(1000, 50, 50, C, 3))
    t.insert(P(1000, 200, 200, C, 4))
    srv.receive("c", sub(1000, 0, 100, PORTS), 0.0)
    assert events(srv) == [(PUBLISHED, 50, 50, 1, B), (PUBLISHED, 10, 10, 2, C),
                           (PUBLISHED, 50, 50, 3, C)]  # fmt: skip
    srv.open("s")
    srv.receive("s", sub(1000, 0, 100, SERVICE), 0.0)
    assert events(srv, "s") == [(PUBLISHED, 50, 50, 1, B), (PUBLISHED, 10, 10, 2, C)]
    srv.open("n")
    srv.receive("n", sub(1000, 0, 100, PORTS | 0x80), 0.0)  # TIPC_SUB_NO_STATUS
    assert events(srv, "n") == []


def test_cancel_removes_only_the_identical_subscription() -> None:
    t, srv = mk()
    srv.receive("c", sub(1000, 0, 10, PORTS, handle=b"AAAAAAAA"), 0.0)
    srv.receive("c", sub(1000, 0, 10, PORTS, handle=b"BBBBBBBB"), 0.0)
    assert srv.subscription_count == 2
    # differs in the handle: no match, connection stays
    assert srv.receive("c", sub(1000, 0, 10, PORTS | CANCEL, handle=b"CCCCCCCC"), 0.0) is None
    assert srv.subscription_count == 2 and srv.stats.cancel_unmatched == 1
    assert srv.receive("c", sub(1000, 0, 10, PORTS | CANCEL, handle=b"AAAAAAAA"), 0.0) is None
    assert srv.subscription_count == 1
    t.insert(P(1000, 1, 1, B, 9))
    out = srv.take_outgoing()
    assert len(out) == 1 and out[0][1][40:] == b"BBBBBBBB"


def test_cancel_in_network_byte_order() -> None:
    t, srv = mk()
    srv.receive("c", sub(1000, 0, 10, SERVICE, timeout=5000, order=">"), 0.0)
    srv.receive("c", sub(1000, 0, 10, SERVICE | CANCEL, timeout=5000, order=">"), 0.0)
    assert srv.subscription_count == 0
    assert srv.next_deadline() is None


def test_timeout_event_carries_the_subscribed_range_and_port_zero_then_sub_is_gone() -> None:
    t, srv = mk()
    srv.receive("c", sub(1000, 3, 9, PORTS, timeout=1500), 10.0)
    srv.receive("c", sub(1001, 0, 0, PORTS, timeout=FOREVER), 10.0)
    assert srv.next_deadline() == pytest.approx(11.5)
    srv.tick(11.4)
    assert events(srv) == []
    srv.tick(11.5)
    assert events(srv) == [(TIMEOUT, 3, 9, 0, 0)]
    assert srv.subscription_count == 1 and srv.next_deadline() is None
    t.insert(P(1000, 5, 5, B, 1))
    assert events(srv) == []


def test_illegal_subscriptions_close_the_connection() -> None:
    for bad in (sub(1000, 0, 10, PORTS | SERVICE), sub(1000, 11, 10, PORTS),
                sub(1000, 0, 10)[:27], sub(1000, 0, 10) + b"x", b""):  # fmt: skip
        t, srv = mk()
        srv.receive("c", sub(2000, 0, 10), 0.0)
        t.insert(P(2000, 1, 1, B, 1))  # an event queued for the connection
        act = srv.receive("c", bad, 0.0)
        assert isinstance(act, CloseConn) and act.conn_id == "c" and act.reason
        assert srv.subscription_count == 0 and srv.stats.closed_by_server == 1
        assert srv.take_outgoing() == []  # queued events die with the connection
        t.insert(P(2000, 2, 2, B, 2))
        assert srv.take_outgoing() == []


def test_subscription_limit_closes_connection_and_counts() -> None:
    t = NameTable(OWN)
    srv = TopSrv(t, OWN, limit=3)
    srv.open("a")
    srv.open("b")
    for i in range(3):
        assert srv.receive("a" if i < 2 else "b", sub(1000 + i, 0, 1), 0.0) is None
    act = srv.receive("b", sub(1005, 0, 1), 0.0)
    assert isinstance(act, CloseConn) and "limit" in act.reason
    assert srv.stats.rejected_limit == 1 and srv.subscription_count == 2
    # a cancel is still accepted at the limit (checked before the limit, as the kernel)
    assert srv.receive("a", sub(1000, 0, 1, PORTS | CANCEL), 0.0) is None
    assert srv.receive("a", sub(1007, 0, 1), 0.0) is None
    assert TopSrv(NameTable(OWN), OWN).limit == 65535


def test_close_drops_subscriptions() -> None:
    t, srv = mk()
    srv.receive("c", sub(1000, 0, 10, timeout=100), 0.0)
    srv.close("c")
    assert srv.subscription_count == 0
    t.insert(P(1000, 1, 1, B, 1))
    srv.tick(1.0)
    assert srv.take_outgoing() == []


def test_node_up_down_via_type_0_and_link_state_via_type_2() -> None:
    t = NameTable(OWN)
    d = NameDistributor(OWN, t)
    srv = TopSrv(t, OWN)
    srv.open("c")
    d.publish(Publication(0, OWN, OWN, 2, OWN, 0, OWN))
    srv.receive("c", sub(0, 0, 0xFFFFFFFF, SERVICE), 0.0)
    srv.receive("c", sub(2, 0, 0xFFFFFFFF, PORTS), 0.0)
    assert events(srv) == [(PUBLISHED, OWN, OWN, 0, OWN)]
    # peer B's bulk brings its node-state item; a link to B comes up locally
    d.node_up(B)
    d.apply_items(0, [DistrItem(0, B, B, 0, B)], B)
    d.publish(Publication(2, B, B, 3, OWN, (1 << 16) | 0, 1))
    assert events(srv) == [(PUBLISHED, B, B, 0, B), (PUBLISHED, B, B, 1 << 16, OWN)]
    d.withdraw(t.find(2, B, B)[0])
    d.node_down(B)
    assert events(srv) == [(WITHDRAWN, B, B, 1 << 16, OWN), (WITHDRAWN, B, B, 0, B)]


def test_scope_filter_bits() -> None:
    t, srv = mk()
    srv.receive("c", sub(1000, 0, 10, PORTS | 0x20), 0.0)  # TIPC_SUB_CLUSTER_SCOPE
    t.insert(P(1000, 1, 1, OWN, 1, scope=3))
    t.insert(P(1000, 1, 1, OWN, 2, scope=2))
    assert events(srv) == [(PUBLISHED, 1, 1, 2, OWN)]
