"""In-process mem bearer: broadcast, unicast by MAC, no self-delivery, hub cut."""

from __future__ import annotations

import asyncio

from tipcpy.bearer.mem import MemBearer, MemHub


def test_mem_hub_delivery() -> None:
    async def main() -> None:
        hub = MemHub()
        a, b, c = (MemBearer(hub, n) for n in ("a", "b", "c"))
        got: dict[str, list] = {"a": [], "b": [], "c": []}
        for x, k in ((a, "a"), (b, "b"), (c, "c")):
            x.open()
            x.on_batch = lambda _x, batch, k=k: got[k].extend(batch)
        a.send(None, b"all")
        a.send(None, b"all2")
        b.send(c.media_addr(), b"to-c")
        assert not any(got.values())          # never delivered re-entrantly
        await asyncio.sleep(0)
        assert got["a"] == []
        assert got["b"] == [(b"all", a.mac), (b"all2", a.mac)]
        assert got["c"] == [(b"all", a.mac), (b"all2", a.mac), (b"to-c", b.mac)]
        hub.drop = True
        a.send(None, b"lost")
        c.close()
        hub.drop = False
        a.send(None, b"after-close")
        await asyncio.sleep(0)
        assert got["b"][-1] == (b"after-close", a.mac)
        assert got["c"][-1] == (b"to-c", b.mac)

    asyncio.run(main())
