"""The exceptions of the :mod:`stun` package.

Everything raised on purpose by this package derives from :class:`StunError`. The tree is split in
two: :class:`LocalProtocolError` means the caller used the API wrongly (a bug on our side of the
wire), :class:`RemoteProtocolError` means the peer sent something we cannot accept.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Message


class StunError(Exception):
    """Root of every exception this package raises on purpose."""


class LocalProtocolError(StunError):
    """The API was misused: a bad argument, an attribute too long to encode, a call out of order."""


class RemoteProtocolError(StunError):
    """The peer sent input that cannot be accepted."""


class DecodeError(RemoteProtocolError):
    """Bytes that are not a well-formed STUN message (RFC 8489 §5, §14).

    This is the only exception any parser in this package raises on malformed input. The message
    says where the problem is, e.g. ``"attribute XOR-MAPPED-ADDRESS: bad family 3"``.
    """


class ClassicStunError(DecodeError):
    """An RFC 3489 ("classic STUN") message: no magic cookie where RFC 8489 §5 requires it.

    Raised unless the caller asked for classic compatibility (``allow_classic=True``).
    """


class IntegrityError(RemoteProtocolError):
    """MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT is missing or does not match."""


class TransactionTimeout(StunError):
    """A client transaction got no response in time (RFC 8489 §6.2.1: Rc sends, then Rm RTOs)."""


class ConnectStep(enum.Enum):
    """The step of connecting to a server that a :class:`ConnectTimeout` ran out in."""

    RESOLVING = "resolving"
    TCP = "tcp"
    TLS = "tls"


class ConnectTimeout(TransactionTimeout, TimeoutError):
    """Connecting to a server took longer than the caller allowed: the name did not resolve,
    the TCP connection was not accepted, or the TLS handshake did not finish in time — ``step``
    says which, and so does the message. It is also a :class:`TimeoutError` (an
    :class:`OSError`), which a connection attempt raises when the kernel gives up on its own."""

    def __init__(self, message: str, step: ConnectStep) -> None:
        super().__init__(message)
        self.step = step


class ServerUnreachable(StunError):
    """A request could not leave this host: sending to the server failed at once, with no route
    to it (the network or host is unreachable, the network is down) or refused by this host's
    firewall. Every request in progress ends with it, at once, rather than being retransmitted
    into the same refusal until it times out. ``error`` is what the socket said."""

    def __init__(self, server: object, error: OSError) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"network unreachable from this host: cannot send to {server} ({reason})")
        self.server = server
        self.error = error


class ErrorResponse(RemoteProtocolError):
    """The server answered a request with an error response (RFC 8489 §6.3.4).

    ``code`` and ``reason`` come from the ERROR-CODE attribute; ``response`` is the decoded message,
    so callers can read ALTERNATE-SERVER, UNKNOWN-ATTRIBUTES and the like.
    """

    def __init__(self, code: int, reason: str, response: Message | None = None) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason
        self.response = response
