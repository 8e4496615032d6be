"""Resource limits must never break the node's own bookkeeping."""

from __future__ import annotations

import errno

import pytest

from tipcpy.core.socket import SOCK_RDM, TIPC_ADDR_NAMESEQ
from tipcpy.sim import SimCluster
from tipcpy.wire.consts import TIPC_MAX_PUBL


def test_full_binding_table_still_reports_links_and_nodes() -> None:
    """A node whose applications hold all 65535 publications still publishes the
    link-state binding of a new link; the 65536th user bind fails with EINVAL."""
    c = SimCluster(2, seed=5, start=False)
    a = c.nodes[0].stack
    c.enable_bearer(0, "lan0")
    c.run_for(1.2)  # address trial over: {0,addr,addr} is published
    port = a.sockets.open(SOCK_RDM, c.now)
    room = TIPC_MAX_PUBL - a.name_table.local_count
    for i in range(room):
        a.sockets.bind(port, (TIPC_ADDR_NAMESEQ, 1000, i, i), c.now)
    with pytest.raises(OSError) as e:
        a.sockets.bind(port, (TIPC_ADDR_NAMESEQ, 1000, room, room), c.now)
    assert e.value.errno == errno.EINVAL
    c.enable_bearer(1, "lan0")
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    b_addr = c.nodes[1].stack.own_addr
    assert a.name_table.lookup_anycast(2, b_addr, a.own_addr) is not None
    assert a.counters["listener_errors"] == 0
