"""Where the sans-IO core gets randomness: from a source the caller passes, never on its own.

Transaction IDs, nonces, ICE credentials, tie-breakers and jitter all come from a
:class:`RandomSource`. The default draws from the operating system (:mod:`secrets`); tests pass a
seeded ``random.Random`` so that runs are repeatable.
"""

from __future__ import annotations

import secrets
from typing import Protocol


class RandomSource(Protocol):
    """What the core needs from a random number generator; ``random.Random`` satisfies it."""

    def getrandbits(self, k: int, /) -> int: ...

    def random(self) -> float: ...


#: The one operating-system source every default shares: it keeps no state of its own (each draw
#: reads the OS), while each ``SystemRandom`` object carries ~2.5 KiB of unused generator state.
_SYSTEM_RANDOM = secrets.SystemRandom()


def default_random() -> RandomSource:
    """A cryptographically strong source backed by the operating system (one shared object)."""
    return _SYSTEM_RANDOM


def random_bytes(source: RandomSource, size: int) -> bytes:
    """``size`` random bytes from ``source``."""
    return source.getrandbits(size * 8).to_bytes(size, "big")
