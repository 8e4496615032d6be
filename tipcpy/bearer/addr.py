"""Native bearer addresses <-> the wire codec's media address objects.

Kept as the stable import point for the runtime; the conversions themselves live with
the media table in :mod:`tipcpy.bearer.media`.
"""

from __future__ import annotations

from tipcpy.wire.items import MediaAddrError

from .media import from_media_addr, to_media_addr

__all__ = ["MediaAddrError", "from_media_addr", "to_media_addr"]
