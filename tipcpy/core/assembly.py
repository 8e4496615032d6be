"""Where one node's layers are built and joined: the only place that does.

Why a module of its own: each layer knows only the one below it (the socket layer
knows the node through :class:`~tipcpy.core.socket.NodeServices`, never the Stack
class), so something above both must build them in order - the way aioquic leaves
``QuicConnection`` ignorant of who drives it.  The daemon (tipcpy/runtime) and the
simulator (tipcpy/sim/cluster.py) both call :func:`build_node`.
"""

from __future__ import annotations

import random

import tipcpy.core.stack as _stack_mod
from tipcpy.core.socket import SocketLayer
from tipcpy.core.stack import Stack
from tipcpy.wire.consts import TIPC_DEF_NET_ID

__all__ = ["build_node"]


def build_node(node_id: bytes | str | None = None, net_id: int = TIPC_DEF_NET_ID,
               rng: random.Random | None = None) -> Stack:
    """A Stack with its socket layer on top (``stack.sockets``).

    The Stack class is looked up at call time so that a benchmark may substitute a
    subclass (bench/peerd.py does)."""
    stack = _stack_mod.Stack(node_id, net_id, rng)
    stack.sockets = SocketLayer(stack)
    return stack
