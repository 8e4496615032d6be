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


def test_two_real_stacks_link_up_over_mem_hub() -> None:
    """The asyncio Runtime driving two real Stacks in one process, in real time."""
    import random

    from tipcpy.core.stack import Stack
    from tipcpy.runtime.runtime import Runtime

    async def main() -> None:
        loop = asyncio.get_running_loop()
        hub = MemHub()
        rts = []
        for ident in ("m1", "m2"):
            rt = Runtime(Stack(ident, 4711, random.Random(ident)), loop)
            rt.enable_bearer(MemBearer(hub, "hub0", loop))
            rts.append(rt)
        for _ in range(100):
            await asyncio.sleep(0.05)
            if all(any(ln["up"] for ln in rt.stack.link_list()[1:]) for rt in rts):
                break
        names = [[ln["name"] for ln in rt.stack.link_list() if ln["up"]] for rt in rts]
        assert names == [["broadcast-link", "m1:hub0-m2:hub0"],
                         ["broadcast-link", "m2:hub0-m1:hub0"]]
        rts[0].close()                     # polite: the peer sees the link go at once
        await asyncio.sleep(0.05)
        assert not any(ln["up"] for ln in rts[1].stack.link_list()[1:])
        rts[1].close()

    asyncio.run(main())
