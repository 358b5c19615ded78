"""Where the sans-IO core gets randomness: from a source the caller passes, never on its own.

Transaction IDs, nonces, ICE credentials, tie-breakers and jitter all come from a
:class:`RandomSource`. The default draws from the operating system (:mod:`secrets`); tests pass a
seeded ``random.Random`` so that runs are repeatable.

Transaction IDs from the default source are drawn from the operating system in batches
(:func:`new_transaction_id`): one system call for many requests. They stay cryptographically
random (RFC 8489 §5, §6): each is 96 bits of the OS's random stream, handed out once; a forked
child forgets the batch it inherited, so parent and child never send the same ID.
"""

from __future__ import annotations

import os
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


#: How many transaction IDs one read of the operating system's random source yields.
TRANSACTION_ID_BATCH = 64
#: Transaction IDs drawn from the OS and not handed out yet (shared by every default source).
_SYSTEM_IDS: list[bytes] = []
if hasattr(os, "register_at_fork"):  # POSIX: where there is no fork, nothing to forget
    os.register_at_fork(after_in_child=_SYSTEM_IDS.clear)


def new_transaction_id(source: RandomSource | None = None) -> bytes:
    """A fresh 96-bit transaction ID (RFC 8489 §5), from ``source`` or the OS.

    From the OS (the default source) it comes out of a batch drawn at once; ``list.pop`` hands
    each one out once, even to threads that draw at the same time."""
    if source is None or source is _SYSTEM_RANDOM:
        try:
            return _SYSTEM_IDS.pop()
        except IndexError:
            batch = os.urandom(12 * TRANSACTION_ID_BATCH)
            _SYSTEM_IDS.extend([batch[at : at + 12] for at in range(0, len(batch), 12)])
            return _SYSTEM_IDS.pop()
    return random_bytes(source, 12)


#: 2**-53: 53 random bits scaled to a float in [0, 1), as ``random.random`` makes one.
_FLOAT_STEP = 1.0 / (1 << 53)


def uniform(source: RandomSource | None = None) -> float:
    """A float in [0, 1) from ``source`` or the OS, for jitter (RFC 7675 §5.1's randomized
    consent interval). From the OS (the default source) it is 53 bits of one transaction ID of
    the batch :func:`new_transaction_id` hands out — no system call of its own per draw."""
    if source is None or source is _SYSTEM_RANDOM:
        return (int.from_bytes(new_transaction_id()[:7], "big") >> 3) * _FLOAT_STEP
    return source.random()
