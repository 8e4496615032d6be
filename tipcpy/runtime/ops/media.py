"""``tipc media``: the defaults bearers of each media take when they are enabled."""

from __future__ import annotations

from typing import Any

from .context import OpsContext
from .validate import MEDIA_NAME, RANGES, Schema, bad, parse_prop, props


def media_list(ctx: OpsContext, args: dict[str, Any]) -> list[str]:
    return sorted(ctx.media)


def media_get(ctx: OpsContext, args: dict[str, Any]) -> dict[str, int]:
    return dict(ctx.media_of(args))


def media_set(ctx: OpsContext, args: dict[str, Any]) -> None:
    """New defaults for bearers enabled later (existing bearers keep theirs)."""
    m = ctx.media_of(args)
    prop_vals = {k: parse_prop(k, args[k]) for k in RANGES if k in args}
    if not prop_vals:
        raise bad("nothing to set: give priority, tolerance, window or mtu")
    if "mtu" in prop_vals and "mtu" not in m:
        raise bad("MTU property is unsupported for this media type")
    m.update(prop_vals)


# any name of the kernel's length: an unknown one is "Media not found", as the kernel says
SCHEMAS: dict[str, Schema] = {
    "media.list": {},
    "media.get": {"media": MEDIA_NAME},
    "media.set": {"media": MEDIA_NAME, **props(text=True)},
}

HANDLERS = {"media.list": media_list, "media.get": media_get, "media.set": media_set}
