"""Events the TURN client machine (:class:`turn.TurnAllocation`) reports to its driver.

Past-tense frozen dataclasses (architecture.md §4), drained with ``next_event()``. The server core
has its own, :mod:`turn.server.events`: the two are read by different drivers and share nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from stun import Address, ErrorResponse, StunError

from .attributes import AddressErrorCode
from .errors import TurnError

#: Why a request ended without success: the STUN transaction's error (an error response, a
#: timeout, an integrity failure) or a success response TURN cannot use.
Failure = StunError | TurnError


def error_code(error: Failure) -> int | None:
    """The STUN error code of a failure that was an error response, else ``None``."""
    return error.code if isinstance(error, ErrorResponse) else None


@dataclass(frozen=True, slots=True)
class TurnClientEvent:
    """Base class of every event of :class:`turn.TurnAllocation`."""


@dataclass(frozen=True, slots=True)
class AllocationCreated(TurnClientEvent):
    """The Allocate succeeded (RFC 8656 §7.3).

    ``relayed`` holds one relayed transport address, or two of different families after a dual
    allocation; ``mapped`` is the client's address as the server saw it (XOR-MAPPED-ADDRESS);
    ``lifetime`` is what the server granted, in seconds. ``reservation_token`` is set when
    EVEN-PORT asked for the next port to be held (§7.2); ``address_errors`` says why a family of a
    dual allocation was not granted (ADDRESS-ERROR-CODE, §18.12).
    """

    relayed: tuple[Address, ...]
    mapped: Address | None
    lifetime: float
    reservation_token: bytes | None = None
    address_errors: tuple[AddressErrorCode, ...] = ()


@dataclass(frozen=True, slots=True)
class AllocationFailed(TurnClientEvent):
    """The Allocate ended without an allocation (RFC 8656 §7.4); ``error`` says how."""

    error: Failure

    @property
    def reason(self) -> str:
        return str(self.error)

    @property
    def code(self) -> int | None:
        """The error code, for an error response: 437, 441, 486, 508 and the like."""
        return error_code(self.error)


@dataclass(frozen=True, slots=True)
class AllocationRefreshed(TurnClientEvent):
    """A Refresh succeeded (RFC 8656 §8.3): the allocation lives ``lifetime`` more seconds."""

    lifetime: float


@dataclass(frozen=True, slots=True)
class AllocationExpired(TurnClientEvent):
    """The allocation is gone without the client deleting it: its lifetime ran out, a Refresh
    was answered 437 (the server no longer has it), or the TCP/TLS connection closed."""

    reason: str


@dataclass(frozen=True, slots=True)
class AllocationDeleted(TurnClientEvent):
    """``close()`` ended the allocation: ``confirmed`` when the server answered the Refresh with
    LIFETIME 0 (success, or 437 because it was already gone, RFC 8656 §8.3)."""

    confirmed: bool


@dataclass(frozen=True, slots=True)
class PermissionCreated(TurnClientEvent):
    """The server holds a permission for peers at ``host`` (RFC 8656 §9), by a CreatePermission
    or a ChannelBind; it is refreshed from now on until the allocation ends."""

    host: str


@dataclass(frozen=True, slots=True)
class PermissionFailed(TurnClientEvent):
    """A CreatePermission for ``host`` failed, or its refresh did (RFC 8656 §11.3); it is not
    refreshed any more, and data queued for the peer is dropped."""

    host: str
    error: Failure

    @property
    def code(self) -> int | None:
        return error_code(self.error)


@dataclass(frozen=True, slots=True)
class ChannelBound(TurnClientEvent):
    """``channel`` stands for ``peer`` now (RFC 8656 §12.3): data to it goes as ChannelData."""

    peer: Address
    channel: int


@dataclass(frozen=True, slots=True)
class ChannelFailed(TurnClientEvent):
    """A ChannelBind for ``peer`` on ``channel`` failed, or its refresh did; data to the peer
    goes in Send indications."""

    peer: Address
    channel: int
    error: Failure

    @property
    def code(self) -> int | None:
        return error_code(self.error)


@dataclass(frozen=True, slots=True)
class DataReceived(TurnClientEvent):
    """``peer`` sent ``data`` to the relayed address ``relayed`` (a Data indication, §10.4, or
    ChannelData, §12.7)."""

    peer: Address
    data: bytes
    relayed: Address


@dataclass(frozen=True, slots=True)
class PeerConnected(TurnClientEvent):
    """A Connect succeeded (RFC 6062 §4.3): the server holds a TCP connection from the relayed
    address to ``peer``, named ``connection_id``, until a data connection binds it (§4.4) or
    the server's wait for that ends (30 s by RFC 6062 §5.2)."""

    peer: Address
    connection_id: int


@dataclass(frozen=True, slots=True)
class ConnectFailed(TurnClientEvent):
    """A Connect to ``peer`` failed (RFC 6062 §4.3): 403 no permission or the peer policy, 446 a
    connection to the peer exists, 447 the server could not connect, or a timeout."""

    peer: Address
    error: Failure

    @property
    def code(self) -> int | None:
        return error_code(self.error)


@dataclass(frozen=True, slots=True)
class ConnectionAttempted(TurnClientEvent):
    """A peer connected to the relayed address of a TCP allocation (a ConnectionAttempt
    indication, RFC 6062 §4.4): a data connection that binds ``connection_id`` carries it."""

    peer: Address
    connection_id: int


@dataclass(frozen=True, slots=True)
class ConnectionBound(TurnClientEvent):
    """The ConnectionBind of a data connection succeeded (RFC 6062 §4.4): from the end of its
    success response on, the connection carries the peer's bytes as they are, both ways."""

    connection_id: int


@dataclass(frozen=True, slots=True)
class ConnectionBindFailed(TurnClientEvent):
    """The ConnectionBind of a data connection failed: an error response (400 when the server
    holds no such peer connection any more), a timeout, or the connection closed."""

    connection_id: int
    error: Failure

    @property
    def code(self) -> int | None:
        return error_code(self.error)
