"""``tipc nametable show``."""

from __future__ import annotations

from typing import Any

from .context import OpsContext
from .validate import Schema

SCOPES = {1: "zone", 2: "cluster", 3: "node"}


def nametable_show(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """Every publication in iproute2's order, node shown as its identity string."""
    return [{"type": p.type, "lower": p.lower, "upper": p.upper,
             "scope": SCOPES.get(p.scope, str(p.scope)), "port": p.port,
             "node": ctx.node_name(p.node)} for p in ctx.stack.name_table]


SCHEMAS: dict[str, Schema] = {"nametable.show": {}}
HANDLERS = {"nametable.show": nametable_show}
