"""Control ops of tipcd: what each ``tipc`` command asks the daemon to do.

One module per command family (node, bearer, media, link, nametable, socket, peer,
events); each declares its ops' handlers and argument schemas, and :data:`OPS` below is
the one registry. :meth:`NodeOps.dispatch` checks the arguments against the op's schema
(validate.py) *before* the handler runs, and the handlers check what needs the node's
state before they touch the node, so a failed op leaves the node exactly as it was.
Results are plain JSON values; the CLI formats them exactly as iproute2 does.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..control import ControlError
from . import bearer, events, link, media, nametable, node, peer, socket
from .context import OpsContext
from .validate import Schema, check_args

__all__ = ["OPS", "NodeOps", "Op"]


@dataclass(frozen=True)
class Op:
    handler: Callable[[OpsContext, dict[str, Any]], Any]
    schema: Schema


def _registry() -> dict[str, Op]:
    ops: dict[str, Op] = {}
    for fam in (node, bearer, media, link, nametable, socket, peer, events):
        assert set(fam.HANDLERS) == set(fam.SCHEMAS), fam.__name__
        for name, fn in fam.HANDLERS.items():
            ops[name] = Op(fn, fam.SCHEMAS[name])
    return ops


#: op name -> handler + argument schema
OPS: dict[str, Op] = _registry()


class NodeOps(OpsContext):
    """The control ops of one daemon, on its Stack and Runtime."""

    def dispatch(self, op: str, args: dict[str, Any]) -> Any:
        entry = OPS.get(op)
        if entry is None:
            raise ControlError(errno.EOPNOTSUPP, f"unknown op '{op[:40]}' (this tipcd "
                               f"knows: {', '.join(sorted(OPS))})")
        check_args(op, entry.schema, args)
        return entry.handler(self, args)

    def apply_startup_config(self) -> None:
        """Enable the bearers given by flags/TOML; a failure aborts the start, loudly.
        Keys first: with a key file, not one packet leaves in clear."""
        node.apply_crypto_config(self, self.config.refuse_clear, self.config.key_file)
        for b in self.config.bearers:
            self.dispatch("bearer.enable", dict(b))
