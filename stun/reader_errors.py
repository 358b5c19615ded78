"""What an asyncio reader does when the sans-IO core it feeds raises anyway.

A core never raises on peer input (docs/architecture.md: ``receive_datagram`` absorbs anything a
peer sends). If one does, that is a bug of ours, and it must cost the one datagram that hit it, not
the rest of the reader's batch, nor reach the event loop's exception handler (which would also
close a stream). So every reader of the asyncio layer — :class:`stun.aio.UdpReader` and the stream
protocols of :mod:`stun.aio`, :mod:`turn.aio`, :mod:`turn.server.aio`, :mod:`turn.server.aio_tcp`,
:mod:`ice.base_sockets` and :mod:`ice.mdns_sockets` — calls the core per datagram inside
``try: ... except Exception as error: errors.contain(error, where)``, with one
:class:`ReaderErrors` per server or connection. The first exception of each kind in the process
is logged, with its traceback, at ERROR on the ``icestack.readers`` logger; every one is counted.

A driver's timer callback calls the core's ``handle_timer`` the same way (:data:`TIMER`): an
exception there must not leave the timer unarmed, which would stop the machine until the next
datagram, if any, comes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

_log = logging.getLogger("icestack.readers")
#: The kinds already logged: a bug that fires on every datagram, or in every connection, logs one
#: traceback per process (the count goes on in every :class:`ReaderErrors`).
_logged: set[str] = set()


@dataclass(frozen=True, slots=True)
class Guarded:
    """What a contained exception interrupted, in the words of its log line: what the driver was
    doing, the promise of the core it broke, and what happens next."""

    doing: str
    promise: str
    then: str


#: A reader handing a datagram to its core (the default of :meth:`ReaderErrors.contain`).
DATAGRAM = Guarded(
    "handling a datagram",
    "peer input must never raise",
    "The datagram is dropped and reading goes on",
)
#: A driver's timer calling the core's ``handle_timer``.
TIMER = Guarded("handling its timer", "handle_timer must never raise", "The timer is armed again")


def error_kind(error: BaseException) -> str:
    """The name an exception is counted under: its class, qualified by its module."""
    kind = type(error)
    return f"{kind.__module__}.{kind.__qualname__}"


class ReaderErrors:
    """Exceptions the readers (or the timer) of one server or connection contained, counted by
    kind (:attr:`counts`, :attr:`total`); see the module docstring for what is logged."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        #: Made at the first exception: most readers never meet one (a connection has two).
        self._counts: dict[str, int] | None = None

    @property
    def counts(self) -> dict[str, int]:
        """How many exceptions of each kind (``module.Class``) were contained."""
        return {} if self._counts is None else self._counts

    def __repr__(self) -> str:
        return f"ReaderErrors({self.counts})"

    @property
    def total(self) -> int:
        """How many exceptions were contained in all."""
        return sum(self.counts.values())

    def contain(self, error: Exception, where: object, guarded: Guarded = DATAGRAM) -> None:
        """Count ``error``, raised by the core while a reader handled a datagram on ``where`` (a
        socket's address or a connection) — or while the driver did what ``guarded`` says —
        and log it if it is the first of its kind."""
        kind = error_kind(error)
        if self._counts is None:
            self._counts = {}
        self._counts[kind] = self._counts.get(kind, 0) + 1
        if kind in _logged:
            return
        _logged.add(kind)
        _log.error(
            "%s: %s raised %s: %s (a bug: %s). %s; later %s errors are only counted.",
            where,
            guarded.doing,
            kind,
            error,
            guarded.promise,
            guarded.then,
            kind,
            exc_info=error,
        )
