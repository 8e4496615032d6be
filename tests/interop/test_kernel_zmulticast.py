"""Interop: multicast discovery (228.0.18.103) with a real Linux 6.1 kernel node.

Named to run last: the guest is rebooted in multicast mode, and the other interop
files share one unicast-mode guest.
"""

from __future__ import annotations

import pytest

from tests.interop.conftest import NsNode
from tests.interop.kpeer import HOST_IP, KernelPeer
from tests.interop.test_kernel_link import OUR_ID, _check_link

pytestmark = pytest.mark.interop


def test_multicast_discovery_link(kernel_multicast: KernelPeer) -> None:
    kp = kernel_multicast
    node = NsNode(OUR_ID, f"media udp name b1 localip {HOST_IP}")
    try:
        _check_link(kp, node)
    finally:
        node.stop()


def _kernel_bc_stats(kp: KernelPeer) -> str:
    _, out = kp.exec("tipc link stat show link broadcast-link")
    return out


def test_our_multicast_reaches_the_kernel_on_the_broadcast_link(
        kernel_multicast: KernelPeer) -> None:
    """Method BROADCAST over a UDP multicast bearer: our multicast to the kernel's
    echo service {1000,1} goes as one broadcast-link packet each (non_seq, our
    broadcast seqnos); the kernel's socket echoes every one back by unicast, and its
    acks release our broadcast queue.  Our name updates travel the same way (we
    advertise TIPC_NAMED_BCAST): the kernel sees a binding published after link up."""
    import re
    import time

    from tipcpy import socket as tsock

    kp = kernel_multicast
    node = NsNode(OUR_ID, f"media udp name b1 localip {HOST_IP}")
    try:
        _check_link(kp, node)
        end = time.monotonic() + 15
        while time.monotonic() < end and "1000 " not in node.tipc("nametable", "show").stdout:
            time.sleep(0.2)
        r = node.tipc("link", "set", "broadcast", "BROADCAST")
        assert r.returncode == 0, r.stderr
        assert node.tipc("link", "get", "broadcast").stdout == "BROADCAST\n"
        k0 = _kernel_bc_stats(kp)
        rd = str(node.run_dir)
        n = 40
        with tsock.socket(tsock.AF_TIPC, tsock.SOCK_RDM, run_dir=rd) as s:
            s.settimeout(10)
            # a binding published now goes to the kernel as a broadcast name update
            s.bind((tsock.TIPC_ADDR_NAMESEQ, 4711, 7, 7))
            for k in range(n):
                s.sendto(b"bc-%03d" % k, (tsock.TIPC_ADDR_NAMESEQ, 1000, 1, 1))
            got = sorted(s.recvfrom(100)[0] for _ in range(n))
        assert got == [b"bc-%03d" % k for k in range(n)]
        ktable = kp.wait_for("tipc nametable show",
                             lambda out: re.search(r"^4711\s+7\s+7\s", out, re.M) is not None,
                             timeout=15)
        assert OUR_ID in ktable
        st = node.tipc("-j", "link", "stat", "show", "link", "broadcast-link")
        assert st.returncode == 0, st.stderr
        import json

        ours = json.loads(st.stdout)
        print("ours:", ours, "\nkernel before:", k0, "\nkernel after:", _kernel_bc_stats(kp))
        bl = [x for x in ours if x.get("link") == "broadcast-link" or
              "broadcast-link" in json.dumps(x)]
        assert bl, ours
        # every multicast went on our broadcast link (bundles may merge some)
        tx = re.search(r'"tx packets":\s*(\d+)', json.dumps(bl[0]))
        assert tx is not None and int(tx.group(1)) >= n, bl
    finally:
        node.stop()
