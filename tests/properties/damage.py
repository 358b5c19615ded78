"""Damage done to a message's bytes by the lean-path tests, so that a lean reader meets what its
typed path refuses: a byte flipped, the bytes cut short, bytes appended."""

from __future__ import annotations

from typing import Protocol, TypeVar

from hypothesis import strategies as st

#: The kinds of damage :func:`damaged` does.
DAMAGE = ("flip", "cut", "extend")

T = TypeVar("T")


class Draw(Protocol):
    """What draws a value: a composite strategy's ``draw``, or ``st.data()``'s."""

    def __call__(self, strategy: st.SearchStrategy[T], /) -> T: ...


def damaged(draw: Draw, data: bytes, change: str) -> bytes:
    """``data`` with the damage ``change`` names (one of :data:`DAMAGE`; anything else: none)."""
    if change == "flip" and data:
        index = draw(st.integers(0, len(data) - 1))
        return data[:index] + bytes([data[index] ^ draw(st.integers(1, 255))]) + data[index + 1 :]
    if change == "cut":
        return data[: draw(st.integers(0, len(data)))]
    if change == "extend":
        return data + draw(st.binary(min_size=1, max_size=12))
    return data
