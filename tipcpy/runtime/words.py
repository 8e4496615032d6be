"""iproute2-style word parsing shared by the ``tipc`` CLI and ``tipcd --bearer``.

``tipc bearer enable [domain D] [priority P] media udp name NAME localip IP [localport P]
[remoteip IP] [remoteport P]`` is a list of keyword/value words, not options. Parsing it in
one place means ``tipcd --bearer "media udp name b0 localip 10.0.0.1"`` accepts exactly
what ``tipc bearer enable`` accepts, and both produce the same control-op args.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tipcpy.bearer.media import COMMON_KEYS, MEDIA, bearer_name_of


class WordError(ValueError):
    """A usage error: the message is what iproute2 would print (e.g. ``error, missing value``)."""


INT_KEYS = ("priority", "tolerance", "window", "mtu", "localport", "remoteport", "domain")


def pairs(words: Sequence[str], allowed: Sequence[str]) -> dict[str, Any]:
    """Parse ``key value key value ...``; unknown key or missing value -> WordError."""
    out: dict[str, Any] = {}
    it = iter(range(len(words)))
    for i in it:
        key = words[i]
        if key not in allowed:
            raise WordError(f"error, invalid option \"{key}\"")
        if i + 1 >= len(words):
            raise WordError(f"error, missing value for \"{key}\"")
        val: Any = words[i + 1]
        next(it)
        if key in INT_KEYS:
            try:
                val = int(val, 0)
            except ValueError:
                raise WordError(f"error, invalid {key} \"{val}\"") from None
        out[key] = val
    return out


def parse_media(words: Sequence[str], extra_keys: Sequence[str] = COMMON_KEYS,
                need_local: bool = True) -> dict[str, Any]:
    """``[opts] media MEDIA ARGS...`` -> control args (``media``, ``name``/``device`` ...).

    For ``udp`` the full bearer name is ``udp:NAME``; for ``eth``/``ib`` it is
    ``MEDIA:DEVICE`` (kernel naming), returned as ``bearer``.
    """
    words = list(words)
    try:
        mi = words.index("media")
    except ValueError:
        raise WordError("error, missing media") from None
    opts = pairs(words[:mi], extra_keys)
    if mi + 1 >= len(words):
        raise WordError("error, missing media")
    media = words[mi + 1]
    m = MEDIA.get(media)
    if m is None:
        raise WordError(f"error, invalid media type \"{media}\"")
    args = pairs(words[mi + 2:], m.keys + tuple(extra_keys))
    name = bearer_name_of(media, args)
    if name is None:
        raise WordError("error, missing bearer name" if m.name_key == "name"
                        else "error, missing device")
    if need_local and m.name_key == "name" and "localip" not in args and "device" not in args:
        raise WordError(f"error, {media} bearer localip/device missing")
    args["bearer"] = name
    args.update(opts)
    args["media"] = media
    return args


def udp_tail(words: Sequence[str], opts: Sequence[str]) -> tuple[list[str], str | None]:
    """Split a trailing single-word option (``... name b0 localip``) off key/value words."""
    w = list(words)
    if len(w) % 2 == 1 and w and w[-1] in opts:
        return w[:-1], w[-1]
    return w, None
