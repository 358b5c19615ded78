"""The exceptions of the :mod:`ice` package.

Everything raised on purpose by this package derives from :class:`IceError`. As in :mod:`stun`, the
tree is split in two: :class:`LocalProtocolError` means the caller used the API wrongly,
:class:`RemoteProtocolError` means the peer (through signalling) gave us something we cannot accept.
"""

from __future__ import annotations

import enum
from typing import TypeVar


class IceError(Exception):
    """Root of every exception this package raises on purpose."""


class LocalProtocolError(IceError):
    """The API was misused: a bad argument, a value out of range, a call out of order."""


class RemoteProtocolError(IceError):
    """The peer sent input that cannot be accepted."""


class DecodeError(RemoteProtocolError):
    """Signalling text that is not well-formed: a ``candidate:`` line or an ICE SDP attribute
    (RFC 8839 §5).

    This is the only exception the parsers of this package raise on malformed input. The message
    says what is wrong, e.g. ``"candidate: port '70000' out of range"``.
    """


class UnsupportedCandidateError(DecodeError):
    """A well-formed candidate that this agent cannot use: a transport other than UDP or TCP, a
    candidate type other than host/srflx/prflx/relay, or an FQDN other than an mDNS ``.local``
    name.

    RFC 8839 §5.1 tells the agent to ignore such a line and keep the rest of the description;
    catching this class (rather than :class:`DecodeError`) does exactly that.
    """


class IceConnectionError(IceError, ConnectionError):
    """The connection cannot do what was asked: ICE failed (the message says why, from the
    agent's failure summary), it is not connected yet, consent was lost, or it was closed.

    A :class:`ConnectionError`, as aioice raises, so code written for aioice keeps catching it.
    """


_E = TypeVar("_E", bound=enum.Enum)


def enum_member(kind: type[_E], value: object, name: str) -> _E:
    """The member of ``kind`` that ``value`` is or names by its value (``"host"`` for
    ``CandidateType.HOST``), so that a public field typed with an enum also takes the enum's
    strings; anything else raises :class:`LocalProtocolError` naming the field and the choices."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (ValueError, TypeError):
        choices = ", ".join(repr(member.value) for member in kind)
        raise LocalProtocolError(f"{name} {value!r} is not one of {choices}") from None
