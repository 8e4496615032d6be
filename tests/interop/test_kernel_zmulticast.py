"""Interop: multicast discovery (228.0.18.103) with a real Linux 6.1 kernel node.

Named to run last: the guest is rebooted in multicast mode, and the other interop
files share one unicast-mode guest.
"""

from __future__ import annotations

import pytest

from tests.interop.conftest import NsNode
from tests.interop.kpeer import HOST_IP, KernelPeer
from tests.interop.test_kernel_link import OUR_ID, _check_link, _link_stat_block, _stat

pytestmark = pytest.mark.interop


def test_multicast_discovery_link(kernel_multicast: KernelPeer) -> None:
    kp = kernel_multicast
    node = NsNode(OUR_ID, f"media udp name b1 localip {HOST_IP}")
    try:
        _check_link(kp, node)
    finally:
        node.stop()


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
        rd = str(node.run_dir)
        n = 40

        def kernel_has_ours(out: str) -> bool:
            return re.search(rf"^4711\s+7\s+7\s+cluster\s+\d+\s+{OUR_ID}", out, re.M) is not None

        with tsock.socket(tsock.AF_TIPC, tsock.SOCK_RDM, run_dir=rd) as s:
            s.settimeout(10)
            # a binding published now goes to the kernel as a broadcast name update
            s.bind((tsock.TIPC_ADDR_NAMESEQ, 4711, 7, 7))
            for k in range(n):
                s.sendto(b"bc-%03d" % k, (tsock.TIPC_ADDR_NAMESEQ, 1000, 1, 1))
            got = sorted(s.recvfrom(100)[0] for _ in range(n))
            assert got == [b"bc-%03d" % k for k in range(n)]
            try:
                kp.wait_for("tipc nametable show", kernel_has_ours, timeout=15)
            except AssertionError as e:
                raise AssertionError(
                    f"{e}\n--- ours: {node.tipc('nametable', 'show').stdout}"
                    f"\n{node.tipc('-j', 'link', 'stat', 'show').stdout}"
                    f"\n--- tipcd log:\n{node.log(4000)}") from None
        # closing the socket withdraws the binding: again on the broadcast link
        kp.wait_for("tipc nametable show", lambda out: not kernel_has_ours(out), timeout=15)
        st = node.tipc("-j", "link", "stat", "show")
        assert st.returncode == 0, st.stderr
        import json

        ours = {x["link"]: x for x in json.loads(st.stdout)}
        bc = ours.pop("broadcast-link")
        (uc,) = ours.values()
        # the 40 multicasts plus the publication and the withdrawal, one packet each
        # (below the window nothing waits to be bundled) on our broadcast link ...
        assert bc["tx packets"]["tx packets"] >= n + 2, bc
        # ... and not on the unicast link: only our init and name bulk went there
        assert uc["tx packets"]["tx packets"] < n, uc
        # the kernel's view agrees: its unicast link from us carried almost nothing
        # (its `broadcast-link` block counts only its own send link, so it stays 0)
        _, kst = kp.exec("tipc link stat show")
        assert _stat(_link_stat_block(kst), "RX packets", "packets") < n, kst
    finally:
        node.stop()
