"""TCP allocations, the client's side (RFC 6062): Connect, ConnectionAttempt and ConnectionBind.

Theory of operation. A TCP allocation is an Allocate with REQUESTED-TRANSPORT TCP on a TCP or TLS
*control connection* (``TurnClientConfig(relay_transport=TransportProtocol.TCP)``, §4.1). Its
relayed address is a TCP address; peers are reached over TCP connections the server makes or
accepts there, each named by a CONNECTION-ID:

* **Connect** (§4.3): :meth:`TurnAllocation.connect <turn.client.TurnAllocation.connect>` asks the
  server to connect from the relayed address to a peer that has a permission; the answer comes
  once the connection is up: :class:`~turn.events.PeerConnected` with the CONNECTION-ID, or
  :class:`~turn.events.ConnectFailed` (403, 446, 447, ...). :class:`PeerConnects` keeps them,
  one at a time per peer.
* **ConnectionAttempt** (§4.4): a peer connected to the relayed address; the indication on the
  control connection becomes :class:`~turn.events.ConnectionAttempted` (:func:`connection_attempt`
  reads it).
* **ConnectionBind** (§4.4): either way, the client opens a new TCP or TLS *data connection* to
  the server and sends a ConnectionBind with the CONNECTION-ID and the control connection's
  credentials; :class:`ConnectionBinding` is that exchange. From the end of the success response
  on, the data connection carries the peer's bytes as they are, both ways: there is nothing more
  for a machine to decide, so the driver hands the connection to the application.

:class:`ConnectionBinding` moves by :data:`_TRANSITIONS`: BINDING ─success─▶ BOUND, BINDING
─error response, timeout, connection closed─▶ FAILED. Its request runs in a
:class:`stun.client.ClientSession` of its own that starts from what the control connection's
session learned from the server's challenge (realm, nonce, key): a server that wants a fresh
nonce on the new connection answers 401 or 438, and the session asks again as it always does.
Over a stream the request is not retransmitted; it times out after Ti (39.5 s, RFC 8489 §6.2.2).
"""

from __future__ import annotations

import enum
import struct
from collections import deque
from collections.abc import Callable, Collection

from stun import Address, AddressFamily, DecodeError, Message, Method
from stun.address import family_of, is_destination
from stun.attributes import MAGIC_COOKIE
from stun.client import ClientSession
from stun.datagram import Datagram
from stun.events import RequestFailed, RequestSucceeded
from stun.message import HEADER_SIZE

from .. import errors
from ..attributes import ConnectionId, XorPeerAddress
from ..events import (
    ConnectFailed,
    ConnectionAttempted,
    ConnectionBindFailed,
    ConnectionBound,
    Failure,
    PeerConnected,
    TurnClientEvent,
)
from .leases import SendRequest

_LENGTH_AND_COOKIE = struct.Struct("!2xHI")


def message_length(header: bytes) -> int:
    """The length of the STUN message that the 20-byte ``header`` starts on a data connection
    before it is bound (RFC 8489 §5), header included. Raises :class:`stun.DecodeError` for
    bytes that cannot start a STUN message on a stream."""
    if len(header) < HEADER_SIZE or header[0] > 3:
        raise DecodeError("data connection: the server's answer is not a STUN message")
    length: int
    length, cookie = _LENGTH_AND_COOKIE.unpack_from(header)
    if length & 3 or cookie != MAGIC_COOKIE:
        raise DecodeError("data connection: a STUN header without the magic cookie")
    return HEADER_SIZE + length


def connection_attempt(
    message: Message, families: Collection[AddressFamily]
) -> ConnectionAttempted | None:
    """What a ConnectionAttempt indication announces (RFC 6062 §4.4), or ``None`` if it lacks
    the peer or the CONNECTION-ID, or names a peer no connection can come from or none of the
    relayed addresses' ``families``."""
    peer = message.get(XorPeerAddress)
    connection_id = message.get(ConnectionId)
    if peer is None or connection_id is None or not is_destination(peer.address):
        return None
    if family_of(peer.address) not in families:
        return None
    return ConnectionAttempted(peer.address, connection_id.value)


class PeerConnects:
    """The Connect requests of a TCP allocation (RFC 6062 §4.3): at most one under way per peer,
    each answered with :class:`~turn.events.PeerConnected` (its CONNECTION-ID) or
    :class:`~turn.events.ConnectFailed`. ``request`` sends a request on the control connection;
    ``gone`` says whether a failure means the allocation is gone (437), which then ends it."""

    def __init__(
        self,
        *,
        request: SendRequest,
        gone: Callable[[str, Failure], bool],
        emit: Callable[[TurnClientEvent], None],
    ) -> None:
        self._request = request
        self._gone = gone
        self._emit = emit
        self._under_way: set[Address] = set()

    def connect(self, peer: Address, now: float) -> None:
        """Send a Connect to ``peer`` (normalised); raises while one to it is under way."""
        if peer in self._under_way:
            raise errors.LocalProtocolError(f"a Connect to {peer} is under way")
        self._under_way.add(peer)

        def connected(response: Message, now: float) -> None:
            self._under_way.discard(peer)
            connection_id = response.get(ConnectionId)
            if connection_id is None:
                failure = errors.RemoteProtocolError("Connect success without CONNECTION-ID")
                self._emit(ConnectFailed(peer, failure))
            else:
                self._emit(PeerConnected(peer, connection_id.value))

        def failed(error: Failure, now: float) -> None:
            self._under_way.discard(peer)
            if not self._gone("Connect", error):
                self._emit(ConnectFailed(peer, error))

        self._request(Method.CONNECT, [XorPeerAddress(peer)], now, connected, failed)


class BindingState(enum.Enum):
    """Where a :class:`ConnectionBinding` stands (see the module docstring)."""

    BINDING = "binding"
    BOUND = "bound"
    FAILED = "failed"


_TRANSITIONS: dict[BindingState, frozenset[BindingState]] = {
    BindingState.BINDING: frozenset((BindingState.BOUND, BindingState.FAILED)),
    BindingState.BOUND: frozenset(),
    BindingState.FAILED: frozenset(),
}


class ConnectionBinding:
    """The ConnectionBind of one data connection (RFC 6062 §4.4), sans-IO (architecture.md §2).

    Made by :meth:`TurnAllocation.bind_connection <turn.client.TurnAllocation.bind_connection>`,
    with the request queued. The driver writes :meth:`datagrams_to_send` to the new connection
    and feeds each STUN message read from it to :meth:`receive_datagram`, whole (the 20-byte
    header says its length), until the state is no longer BINDING; what follows the success
    response on the connection is the peer's. It ends in :class:`~turn.events.ConnectionBound`
    or :class:`~turn.events.ConnectionBindFailed`.
    """

    def __init__(self, connection_id: int, session: ClientSession, now: float) -> None:
        self.connection_id = connection_id
        self._session = session
        self._state = BindingState.BINDING
        self._events: deque[TurnClientEvent] = deque()
        self._handle = session.request(
            Method.CONNECTION_BIND, [ConnectionId(connection_id)], now=now, follow_alternate=False
        )

    @property
    def state(self) -> BindingState:
        return self._state

    @property
    def server(self) -> Address:
        """The server the data connection goes to: the control connection's."""
        return self._session.server

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed one STUN message read from the data connection; anything else is dropped."""
        if self._state is BindingState.BINDING:
            self._session.receive_datagram(data, local, remote, now)
            self._absorb()

    def connection_lost(self, now: float) -> None:
        """The data connection closed (or could not be read) before the answer."""
        self._session.connection_lost(now)
        self._absorb()

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """What to write to the data connection now."""
        return self._session.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        """When the request times out, while binding."""
        return self._session.get_timer() if self._state is BindingState.BINDING else None

    def handle_timer(self, now: float) -> None:
        self._session.handle_timer(now)
        self._absorb()

    def next_event(self) -> TurnClientEvent | None:
        return self._events.popleft() if self._events else None

    def _absorb(self) -> None:
        while (event := self._session.next_event()) is not None:
            if not isinstance(event, RequestSucceeded | RequestFailed):
                continue
            if event.handle != self._handle or self._state is not BindingState.BINDING:
                continue
            if isinstance(event, RequestSucceeded):
                self._move(BindingState.BOUND)
                self._events.append(ConnectionBound(self.connection_id))
            else:
                self._move(BindingState.FAILED)
                self._events.append(ConnectionBindFailed(self.connection_id, event.error))

    def _move(self, state: BindingState) -> None:
        if state not in _TRANSITIONS[self._state]:
            raise errors.LocalProtocolError(f"no transition {self._state.value} → {state.value}")
        self._state = state
