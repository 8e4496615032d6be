"""``tipc socket list``."""

from __future__ import annotations

from typing import Any

from .context import OpsContext
from .validate import Schema


def socket_list(ctx: OpsContext, args: dict[str, Any]) -> list[dict[str, Any]]:
    """The socket layer's ports as ``{port, connected: [node, port] | None, via: [type,
    instance] | None, bound: [[type, lower, upper], ...]}`` (what ``cli/socket.py``
    prints)."""
    out = []
    for s in ctx.stack.sockets.sock_list():
        con = s["connected"]
        name = con.get("name") if con else None
        out.append({"port": int(s["port"]),
                    "connected": [int(con["node"]), int(con["port"])] if con else None,
                    "via": [int(name[0]), int(name[1])] if name else None,
                    "bound": [[int(b["type"]), int(b["lower"]), int(b["upper"])]
                              for b in s["bound"]],
                    "group": _group(s.get("group"))})
    return out


def _group(g: dict[str, Any] | None) -> dict[str, Any] | None:
    """A member socket's group (tipcpy; the kernel's netlink has no such attribute)."""
    if not g:
        return None
    return {"type": int(g["type"]), "instance": int(g["instance"]),
            "scope": "node" if int(g["scope"]) == 3 else "cluster",
            "members": len(g["members"])}


SCHEMAS: dict[str, Schema] = {"socket.list": {}}
HANDLERS = {"socket.list": socket_list}
