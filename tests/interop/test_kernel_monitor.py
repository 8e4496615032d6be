"""Interop: the overlapping ring monitor against a real Linux 6.1 kernel.

With the threshold lowered to 1 on both sides a two-node cluster is above it, so the
kernel appends its domain record to every link STATE and reads ours.  The judge is
the kernel itself: its `tipc link monitor summary/list` must show the
overlapping-ring algorithm and our node with a domain record (generation >= 1) whose
one member (the kernel) is up and applied, while the link stays up with no reset and
no retransmission or NACK; and our own `tipc link monitor list` must show the
kernel's record applied the same way.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.interop.conftest import NsNode
from tests.interop.kpeer import GUEST_IP, HOST_IP, KernelPeer
from tests.interop.test_kernel_link import _kernel_link_up, _link_stat_block, _stat

pytestmark = pytest.mark.interop

OUR_ID = "tipcpymon"
HOLD_S = 60.0


def _our_zcn() -> str:
    from tipcpy.addr import hash128to32, node_id_from_str

    a = hash128to32(node_id_from_str(OUR_ID))
    return f"{a >> 24}.{(a >> 12) & 0xFFF}.{a & 0xFFF}"


def _kernel_sees_our_record(out: str) -> bool:
    # node  status monitored generation applied_node_status [non_applied]
    return bool(re.search(rf"^{re.escape(_our_zcn())}\s+up\s+direct\s+[1-9]\d*\s+U \[\]\s*$",
                          out, re.M))


@pytest.fixture
def fresh_guest(_kernels: Any) -> KernelPeer:
    """A guest of its own: the unicast guest the other files share still holds their
    nodes (down, kept 5 min by the kernel), which sit in its monitor ring and change
    both cluster_size and our record's view.  A different env boots a new one."""
    kp: KernelPeer = _kernels.get({"KP_REMOTE": "10.77.0.1", "KP_ID": "kpeer1"})
    return kp


def test_domain_records_both_ways(fresh_guest: KernelPeer) -> None:
    kp = fresh_guest
    rc, out = kp.exec("tipc link monitor set threshold 1")
    assert rc == 0, out
    node = NsNode(OUR_ID, f"media udp name b1 localip {HOST_IP} remoteip {GUEST_IP}")
    try:
        r = node.tipc("link", "monitor", "set", "threshold", "1")
        assert r.returncode == 0, r.stderr
        try:
            kp.wait_for("tipc link list", _kernel_link_up, timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- our tipcd log:\n{node.log()}") from None
        # the kernel applied our record and uses the ring
        klist = kp.wait_for("tipc link monitor list", _kernel_sees_our_record, timeout=15)
        _, ksum = kp.exec("tipc link monitor summary")
        assert re.search(r"cluster_size 2\s+algorithm overlapping-ring", ksum), ksum

        # we applied the kernel's record
        def ours() -> list[dict[str, object]]:
            rows = json.loads(node.tipc("-j", "link", "monitor", "list").stdout)[0]
            return list(rows[rows["bearer"]])

        end = time.monotonic() + 10
        while not (len(p := ours()) == 2 and p[1].get("applied_node_status") == ["U"]):
            assert time.monotonic() < end, (p, node.log())
            time.sleep(0.3)
        assert p[1]["status"] == "up" and p[1]["monitored"] == "direct", p
        assert int(str(p[1]["generation"])) >= 1, p
        osum = json.loads(node.tipc("-j", "link", "monitor", "summary").stdout)[0]
        assert osum["algorithm"] == "overlapping-ring" and osum["cluster_size"] == 2, osum

        # the link stays up with records in every STATE: no reset, no loss
        _, s0 = kp.exec("tipc link stat show")
        b0 = _link_stat_block(s0, OUR_ID)
        time.sleep(HOLD_S)
        _, links = kp.exec("tipc link list")
        assert _kernel_link_up(links), links
        _, s1 = kp.exec("tipc link stat show")
        b1 = _link_stat_block(s1, OUR_ID)
        assert _stat(b1, "RX states", "states") > _stat(b0, "RX states", "states"), (b0, b1)
        for prefix, key in (("TX states", "retrans"), ("TX states", "naks"),
                            ("RX states", "naks")):
            assert _stat(b1, prefix, key) == 0, b1
        _, klist2 = kp.exec("tipc link monitor list")
        assert _kernel_sees_our_record(klist2), klist2
        link = [ln for ln in node.tipc("link", "list").stdout.splitlines()
                if ln.startswith(f"{OUR_ID}:")]
        assert link and link[0].endswith(": up"), link
        stat = json.loads(node.tipc("-j", "link", "stat", "show", "link",
                                    link[0].rsplit(":", 1)[0], "-s").stdout)[0]
        assert stat["up count"] == 1 and stat["down count"] == 0, stat
        print(f"kernel view:\n{klist}\n{klist2}")
    finally:
        node.stop()
        kp.exec("tipc link monitor set threshold 32")
