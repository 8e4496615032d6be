"""10 real tipcd, each in its own namespace on one bridge, multicast discovery, started
together (the CI version of bench/cluster64.py; needs root and pyroute2).

The mesh must close, every node list must show every peer up, a binding made on one
node must reach all, and a killed daemon must be seen down by all.  Times are
reported, not asserted (the machine is shared); only the protocol's own bounds are.
"""

from __future__ import annotations

import pytest

from bench.cluster64 import run, why_not

pytestmark = pytest.mark.netns

_skip = why_not()
if _skip:
    pytest.skip(_skip, allow_module_level=True)

N = 10


def test_ten_daemons_on_a_bridge() -> None:
    res = run(N, tolerance=1500, mesh_timeout=60.0, idle=2.0)
    print(res)
    assert res["full_mesh"], res
    assert res["node_list_ok"], res
    assert res["binding_seen_by"] == N - 1, res
    assert res["kill_seen_by"] == N - 1 and res["kill_node_lists_agree"], res
    assert isinstance(res["rx_drops_total"], int)
