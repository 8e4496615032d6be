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
