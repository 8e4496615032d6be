"""Base of the small event objects emitted on the per-message path.

Why not frozen dataclasses: a frozen dataclass sets every field through
``object.__setattr__`` and costs several times a plain ``__slots__`` class to create
(~5 us vs ~1 us for a 7-field event on the project's 2-core box), and the receive path
makes three events per message (``Delivered`` -> ``NodeReceived`` -> ``Deliver``).
Subclasses list their fields in ``__slots__`` (in constructor order) and write a
plain ``__init__``; this base gives them what the dataclasses gave: value equality,
hashing, a dataclass-style repr and ``__match_args__``.  They are not frozen: treat
them as read-only.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = ["SlotEvent"]


class SlotEvent:
    __slots__: tuple[str, ...] = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        cls.__match_args__ = tuple(cls.__slots__)  # type: ignore[misc]  # mypy: dunder

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((self.__class__.__name__, *self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{s}={getattr(self, s)!r}" for s in self.__slots__)
        return f"{type(self).__qualname__}({args})"
