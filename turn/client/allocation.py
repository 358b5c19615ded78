"""The sans-IO TURN client's machine: one allocation on one TURN server (RFC 8656).

Theory of operation. A :class:`TurnAllocation` runs every request through a
:class:`stun.client.ClientSession`, which owns retransmission, the long-term credential dance
(401, 438 Stale Nonce, SHA-256 when the server offers it), 300 Try Alternate (once per request)
and 5xx retries. This module decides what to ask and what the answers mean. The machine moves
through :class:`AllocationState` by one table, ``_TRANSITIONS``::

    IDLE ─allocate()─▶ ALLOCATING ─success─▶ ALLOCATED ─close()─▶ CLOSING ─answer─▶ CLOSED
                           │                     │
                           └─failure─▶ FAILED    └─lifetime over, 437, connection lost─▶ EXPIRED

``close()`` from IDLE, FAILED or EXPIRED goes straight to CLOSED; from ALLOCATING it waits in
CLOSING for the Allocate's answer and deletes what was created (Refresh with LIFETIME 0, §8).

Three kinds of lease are kept alive, each refreshed ``refresh_margin`` seconds before it ends (at
most a fifth of its lifetime): the allocation (Refresh, §8), a permission per peer IP address
(CreatePermission, 300 s, §9) and a channel per peer transport address (ChannelBind, 600 s, §12,
which installs the peer's permission too). The machine refreshes the allocation itself and hands
permissions and channels (their requests, answers and tables) to a
:class:`~turn.client.leases.PeerLeases`. While a refresh is in flight, the lease's expiry is the
deadline instead. :meth:`TurnAllocation.get_timer` is the earliest of these and the session's
own. A failed permission or channel refresh ends that lease at once; a failed allocation Refresh
lets the allocation run to its expiry. A 437 answer to any of them means the server holds no
such allocation (it restarted, say): the allocation ends at once
(:class:`~turn.events.AllocationExpired`). :meth:`TurnAllocation.refresh` asks early, to find out.
With ``allocate_timeout`` an Allocate left unanswered that long fails, retransmissions and all.

Data. :meth:`TurnAllocation.send` sends ChannelData once a channel is bound to the peer (padded
to four bytes on TCP/TLS, §12.5), else a Send indication (§10.1). With ``auto_permission`` the
peer's IP address gets a permission on first use and data waits for it, a bounded number of
datagrams per peer; with ``use_channels`` a channel is bound on first use as well. From the
server, ChannelData on a channel this client bound (or is binding: the server may relay before
its answer arrives, §12.7) and Data indications from a peer with a permission (§10.4) become
:class:`~turn.events.DataReceived`, tagged with the relayed address they reached; a Data
indication is delivered whether or not a channel exists yet. Anything else from the server that
is not a response is dropped and counted in :attr:`TurnAllocation.dropped`, never raised. Send
and Data indications are made and read by :mod:`turn.client.data`.

TCP allocations (RFC 6062, ``relay_transport=TCP``) carry no data on this machine:
:meth:`TurnAllocation.connect` asks the server to connect to a peer, a ConnectionAttempt
indication says a peer connected, and :meth:`TurnAllocation.bind_connection` makes the
ConnectionBind of each new data connection; :mod:`turn.client.tcp` says how.

Values from the server are judged, not trusted (:mod:`turn.client.allocate`): a LIFETIME beyond
an hour is taken as an hour (:data:`~turn.client.allocate.LONGEST_LIFETIME`); an Allocate success
whose relayed address no datagram can reach (port 0, the unspecified or a multicast address)
fails the allocation, such a XOR-MAPPED-ADDRESS is left out, a Data indication from such a peer
is dropped, and a 300 Try Alternate is followed for the Allocate only (after it, the allocation
lives where it is).

Cost. Every table is bounded (``max_permissions`` peers, the 4096 channel numbers, the session's
``max_outstanding`` transactions), and the per-datagram path is O(1): ChannelData and Data
indications are looked up by number and address, and the earliest permission or channel deadline
is cached, so :meth:`~TurnAllocation.get_timer` and an early :meth:`~TurnAllocation.handle_timer`
do not walk the tables.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque

from stun import (
    Address,
    AddressFamily,
    Attribute,
    DecodeError,
    Message,
    MessageClass,
    Method,
    StunError,
    TransactionTimeout,
    XorMappedAddress,
)
from stun.address import family_of, is_destination, is_unicast
from stun.arguments import check_address, check_bytes
from stun.client import Authentication, ClientConfig, ClientSession, Credentials
from stun.datagram import Datagram
from stun.events import RequestFailed, RequestSucceeded
from stun.transaction import RtoCache

from .. import errors
from ..attributes import (
    AddressErrorCode,
    Lifetime,
    ReservationToken,
    TransportProtocol,
    XorRelayedAddress,
)
from ..channel import decode_channel_data, encode_channel_data
from ..events import (
    AllocationCreated,
    AllocationDeleted,
    AllocationExpired,
    AllocationFailed,
    AllocationRefreshed,
    DataReceived,
    Failure,
    TurnClientEvent,
    error_code,
)
from .allocate import (
    allocate_attributes,
    granted_lifetime,
    refuses_dont_fragment,
    relayed_problem,
)
from .config import TurnClientConfig
from .data import (
    MAX_SEND_SIZE,
    send_indication,
    unwrap_data_indication,
)
from .leases import Grant, Lease, OnFailure, OnSuccess, PeerLeases
from .tcp import ConnectionBinding, PeerConnects, connection_attempt


class AllocationState(enum.Enum):
    """Where a :class:`TurnAllocation` stands (see the module docstring)."""

    IDLE = "idle"
    ALLOCATING = "allocating"
    ALLOCATED = "allocated"
    CLOSING = "closing"
    FAILED = "failed"
    EXPIRED = "expired"
    CLOSED = "closed"


_S = AllocationState
_TRANSITIONS: dict[AllocationState, frozenset[AllocationState]] = {
    _S.IDLE: frozenset((_S.ALLOCATING, _S.CLOSED)),
    _S.ALLOCATING: frozenset((_S.ALLOCATED, _S.FAILED, _S.CLOSING)),
    _S.ALLOCATED: frozenset((_S.EXPIRED, _S.CLOSING)),
    _S.CLOSING: frozenset((_S.CLOSED,)),
    _S.FAILED: frozenset((_S.CLOSED,)),
    _S.EXPIRED: frozenset((_S.CLOSED,)),
    _S.CLOSED: frozenset(),
}


class TurnAllocation:
    """One allocation on one TURN server, sans-IO (architecture.md §2; see the module docstring).

    ``server`` is the server's transport address; ``credentials`` the long-term credentials it
    challenges for. Every datagram this machine emits goes to the server (ALTERNATE-SERVER may
    move it, :attr:`server`) from ``local``, a label for the driver's socket.
    """

    def __init__(
        self,
        server: Address,
        credentials: Credentials | None = None,
        config: TurnClientConfig | None = None,
        *,
        local: Address | None = None,
        rto_cache: RtoCache | None = None,
    ) -> None:
        self.config = config = config or TurnClientConfig()
        self.local = local
        self._tcp = config.relay_transport is TransportProtocol.TCP
        if self._tcp and not config.transport.is_stream:
            raise errors.LocalProtocolError(
                "a TCP allocation (RFC 6062) needs a TCP or TLS connection to the server"
            )
        session_config: ClientConfig = dataclasses.replace(
            config.stun,
            credentials=credentials or config.stun.credentials,
            reliable=config.transport.is_stream,
        )
        self._session = ClientSession(server, config=session_config, rto_cache=rto_cache)
        self._state = AllocationState.IDLE
        self._callbacks: dict[int, tuple[OnSuccess, OnFailure]] = {}
        self._outgoing: list[Datagram] = []
        self._events: deque[TurnClientEvent] = deque()
        self._dont_fragment = config.dont_fragment
        self._lease = Lease()
        #: When :meth:`allocate` was called, for ``allocate_timeout``.
        self._allocate_started = math.inf
        self._refresh_error: Failure | None = None
        self._relayed: dict[AddressFamily, Address] = {}
        self._mapped: Address | None = None
        #: Datagrams (or data) dropped, by reason; for diagnostics and tests.
        self.dropped: dict[str, int] = {}
        self._peers = PeerLeases(
            config,
            request=self._request,
            cancel=self._cancel,
            gone=self._gone,
            transmit=self._transmit,
            emit=self._events.append,
            drop=self._drop,
        )
        #: The Connects of a TCP allocation (RFC 6062 §4.3).
        self._connects = PeerConnects(
            request=self._request, gone=self._gone, emit=self._events.append
        )

    # ------------------------------------------------------------------ what it holds

    @property
    def state(self) -> AllocationState:
        return self._state

    @property
    def server(self) -> Address:
        """Where requests and data go now (ALTERNATE-SERVER can move it before the allocation)."""
        return self._session.server

    @property
    def relayed(self) -> tuple[Address, ...]:
        """The relayed transport addresses, IPv4 first; empty unless allocated."""
        return tuple(self._relayed[family] for family in sorted(self._relayed))

    def relayed_for(self, peer: Address) -> Address | None:
        """The relayed address that talks to ``peer`` (the one of the peer's family), if any."""
        return self._relayed.get(family_of(peer))

    @property
    def mapped_address(self) -> Address | None:
        """The client's address as the server saw it (XOR-MAPPED-ADDRESS of the Allocate)."""
        return self._mapped

    @property
    def expires_at(self) -> float | None:
        """When the allocation ends unless refreshed; ``None`` unless allocated."""
        return self._lease.expires_at if self._state is AllocationState.ALLOCATED else None

    @property
    def authentication(self) -> Authentication | None:
        """What the server's challenge settled: realm, password algorithm, USERHASH."""
        return self._session.authentication

    @property
    def dont_fragment(self) -> bool:
        """Whether Send indications carry DONT-FRAGMENT (asked for, and not refused with 420)."""
        return self._dont_fragment

    def has_permission(self, host: str) -> bool:
        """Whether the server has granted a permission for peer IP address ``host``."""
        permission = self._peers.permissions.get(host)
        return permission is not None and permission.grant is Grant.ACTIVE

    @property
    def permission_count(self) -> int:
        """Peer IP addresses with a permission held, asked for or failed (at most
        ``config.max_permissions``)."""
        return len(self._peers.permissions)

    @property
    def channel_count(self) -> int:
        """Channels bound, being bound or failed (at most one per number, 0x4000-0x4FFF)."""
        return len(self._peers.channels)

    @property
    def requests_in_flight(self) -> int:
        """Requests sent and not yet answered (at most ``config.stun.max_outstanding``)."""
        return self._session.in_flight

    @property
    def requests_waiting(self) -> int:
        """Requests queued behind those in flight."""
        return self._session.waiting

    def channel(self, peer: Address) -> int | None:
        """The channel number bound to ``peer``, once the server has confirmed it."""
        channel = self._peers.channels.get(peer)
        return channel.number if channel is not None and channel.grant is Grant.ACTIVE else None

    # ------------------------------------------------------------------ commands

    def allocate(self, now: float) -> None:
        """Send the Allocate (RFC 8656 §7.1); the outcome is an event."""
        self._require((AllocationState.IDLE,), "allocate")
        self._move(AllocationState.ALLOCATING)
        self._allocate_started = now
        self._send_allocate(now)
        self._absorb(now)

    def create_permission(self, peer: Address | str, now: float) -> None:
        """Ask for a permission for a peer's IP address (RFC 8656 §11.1), kept until the
        allocation ends; nothing is sent if one is held or requested already."""
        self._require((AllocationState.ALLOCATED,), "create_permission")
        address = self._permission_peer(peer)
        peers = self._peers
        permission = peers.permissions.get(address.host)
        if permission is None:
            peers.check_room(address)
            permission = peers.permission(address)
        elif permission.grant is not Grant.FAILED:
            return
        peers.request_permission(permission, now)
        self._absorb(now)

    def bind_channel(self, peer: Address, now: float) -> int:
        """Bind a channel to ``peer`` (RFC 8656 §12.1), kept until the allocation ends; return
        its number. A peer keeps its number for the life of the allocation."""
        self._require((AllocationState.ALLOCATED,), "bind_channel")
        self._require_udp("bind_channel")
        peer = self._peer(peer)
        peers = self._peers
        channel = peers.channels.get(peer)
        if channel is not None and channel.grant is not Grant.FAILED:
            return channel.number
        if channel is None and not peers.has_free_number:
            raise errors.LocalProtocolError("every channel number 0x4000-0x4FFF is in use")
        peers.check_room(peer)
        number = peers.bind(peer, now).number
        self._absorb(now)
        return number

    def send(self, data: bytes, peer: Address, now: float) -> None:
        """Send ``data`` to ``peer`` through the relay (see the module docstring).

        Raises :class:`turn.LocalProtocolError` before :meth:`allocate` or after :meth:`close`,
        for a peer that no datagram can reach (port 0, the unspecified or a multicast address) or
        of a family that has no relayed address, and for more than :data:`MAX_SEND_SIZE` bytes.
        While the allocation is being made or after it ended the data is dropped (and counted),
        and so is data to a new peer when ``max_permissions`` peers have one.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            check_bytes(data, error=errors.LocalProtocolError)  # says what is wrong
        peers = self._peers
        channel = peers.channels.get(peer)
        if channel is not None and channel.grant is Grant.ACTIVE and len(data) <= MAX_SEND_SIZE:
            self._transmit(data, peer)  # the common case, first
            return
        state = self._state
        if state in (AllocationState.IDLE, AllocationState.CLOSED):
            raise errors.LocalProtocolError(f"send() on an allocation that is {state.value}")
        self._require_udp("send")
        if len(data) > MAX_SEND_SIZE:
            raise errors.LocalProtocolError(f"{len(data)} bytes, at most {MAX_SEND_SIZE}")
        if state is not AllocationState.ALLOCATED:
            self._drop("no allocation")
            return
        peer = self._peer(peer)
        config = self.config
        if not peers.has_room(peer.host):
            self._drop("too many permissions")
            return
        channel = peers.channels.get(peer)
        if channel is None and config.use_channels and peers.has_free_number:
            channel = peers.bind(peer, now)
        permission = None
        if config.auto_permission and (channel is None or channel.grant is not Grant.ACTIVE):
            permission = peers.permissions.get(peer.host)
            if permission is None:
                permission = peers.permission(peer)
                peers.request_permission(permission, now)
        self._absorb(now)  # the requests go out before the data
        if permission is None or permission.grant is Grant.ACTIVE:
            self._transmit(data, peer)
        elif permission.grant is Grant.FAILED:
            self._drop("permission failed")
        elif len(permission.queued) < config.max_queued_per_peer:
            permission.queued.append((data, peer))
        else:
            self._drop("queue full")

    def connect(self, peer: Address, now: float) -> None:
        """Ask the server of a TCP allocation to connect to ``peer`` from the relayed address
        (RFC 6062 §4.3); the answer is :class:`~turn.events.PeerConnected` or
        :class:`~turn.events.ConnectFailed`. The peer's IP address needs a permission
        (:meth:`create_permission`), or the server answers 403. Raises
        :class:`turn.LocalProtocolError` on a UDP allocation, and while a Connect to the same
        peer is under way."""
        self._require((AllocationState.ALLOCATED,), "connect")
        if not self._tcp:
            raise errors.LocalProtocolError(
                "connect() is for TCP allocations (TurnClientConfig(relay_transport=TCP))"
            )
        self._connects.connect(self._peer(peer), now)
        self._absorb(now)

    def bind_connection(self, connection_id: int, now: float) -> ConnectionBinding:
        """The ConnectionBind for a new data connection to the server (RFC 6062 §4.4), with
        the credentials this allocation's requests carry, queued: see
        :class:`~turn.client.tcp.ConnectionBinding`."""
        self._require((AllocationState.ALLOCATED,), "bind_connection")
        if not self._tcp:
            raise errors.LocalProtocolError("bind_connection() is for TCP allocations")
        session = ClientSession(self.server, config=self._session.config)
        session.authenticate_like(self._session)
        return ConnectionBinding(connection_id, session, now)

    def refresh(self, now: float) -> None:
        """Refresh the allocation now (RFC 8656 §8), ahead of its schedule: to learn whether the
        server still holds it. A 437 answer ends it at once
        (:class:`~turn.events.AllocationExpired`); a timeout leaves the regular schedule as it
        was. Nothing is sent while a Refresh is in flight already."""
        self._require((AllocationState.ALLOCATED,), "refresh")
        if self._lease.handle is None:
            self._refresh(now)
            self._absorb(now)

    def close(self, now: float) -> None:
        """Delete the allocation (Refresh with LIFETIME 0, RFC 8656 §8) and stop every refresh.

        Ends in :data:`AllocationState.CLOSED` with :class:`~turn.events.AllocationDeleted` once
        the server answered (or the request failed); at once if nothing was allocated.
        """
        state = self._state
        if state in (AllocationState.IDLE, AllocationState.FAILED, AllocationState.EXPIRED):
            self._move(AllocationState.CLOSED)
        elif state is AllocationState.ALLOCATING:
            self._move(AllocationState.CLOSING)
        elif state is AllocationState.ALLOCATED:
            self._end_leases()
            self._move(AllocationState.CLOSING)
            self._deallocate(now)
            self._absorb(now)

    def connection_lost(self, now: float) -> None:
        """The TCP/TLS connection to the server closed: the server deletes the allocation with it
        (RFC 8656 §3.1), and every request in flight fails."""
        if self._state is AllocationState.ALLOCATED:
            self._expire("the connection to the server closed")
        self._session.connection_lost(now)
        self._absorb(now)

    def fail_all(self, error: StunError, now: float) -> None:
        """End every request in progress with ``error`` (:meth:`stun.client.ClientSession.
        fail_all`): a request could not leave this host. Each ends as if it had timed out — an
        Allocate with :class:`~turn.events.AllocationFailed`, a permission or channel with its
        failure event — only at once."""
        self._session.fail_all(error, now)
        self._absorb(now)

    # ------------------------------------------------------------------ sans-IO verbs

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        """Feed one datagram (or one frame of a TCP/TLS stream) from the server."""
        if not self.config.transport.is_stream and remote != self.server:
            self._drop("not from the server")
            return
        first = data[0] if data else -1
        if 0x40 <= first <= 0x4F:
            self._channel_data(data)
            return
        if not 0 <= first <= 3:
            self._drop("neither STUN nor ChannelData")
            return
        try:
            message = Message.decode(data)
        except DecodeError:
            self._drop("malformed")
            return
        if message.message_class is MessageClass.INDICATION:
            if message.method == Method.CONNECTION_ATTEMPT:
                self._connection_attempt(message)
                return
            unwrapped = unwrap_data_indication(message, self._peers.permissions, self._drop)
            if unwrapped is not None:
                peer, payload = unwrapped
                self._deliver(peer, payload)
            return
        self._session.receive_datagram(data, local, remote, now)
        self._absorb(now)

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        """Drain what must be sent to the server now."""
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        """The earliest retransmission, refresh or expiry."""
        deadline = self._session.get_timer()
        earliest = math.inf if deadline is None else deadline
        if self._state in (AllocationState.ALLOCATING, AllocationState.CLOSING):
            earliest = min(earliest, self._allocate_deadline)
        if self._state is AllocationState.ALLOCATED:
            earliest = min(earliest, self._lease.deadline, self._peers.earliest())
        return None if earliest == math.inf else earliest

    def handle_timer(self, now: float) -> None:
        """Retransmit, refresh and expire what is due; called early it does nothing."""
        self._session.handle_timer(now)
        self._absorb(now)
        if now >= self._allocate_deadline and self._lease.handle is not None:
            self._abandon_allocate(now)
        if self._state is not AllocationState.ALLOCATED:
            return
        lease = self._lease
        if now >= lease.expires_at:
            why = f": {self._refresh_error}" if self._refresh_error is not None else ""
            self._expire(f"the lifetime ran out without a successful Refresh{why}")
            return
        if lease.handle is None and now >= lease.refresh_at:
            self._refresh(now)
        self._peers.tend(now)
        self._absorb(now)

    def next_event(self) -> TurnClientEvent | None:
        """The oldest event not yet drained."""
        return self._events.popleft() if self._events else None

    # ------------------------------------------------------------------ plumbing

    def _require(self, states: tuple[AllocationState, ...], what: str) -> None:
        if self._state not in states:
            raise errors.LocalProtocolError(
                f"{what}() on an allocation that is {self._state.value}"
            )

    def _require_udp(self, what: str) -> None:
        if self._tcp:
            raise errors.LocalProtocolError(
                f"{what}() on a TCP allocation, whose peers are reached over connections "
                "(connect(), RFC 6062)"
            )

    def _move(self, state: AllocationState) -> None:
        if state not in _TRANSITIONS[self._state]:
            raise errors.LocalProtocolError(f"no transition {self._state.value} → {state.value}")
        self._state = state

    def _drop(self, reason: str, count: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + count

    def permission_host(self, peer: Address | str) -> str:
        """The IP address (normalised) a permission for ``peer`` — an :class:`Address`, or an IP
        literal — is held under; raises as :meth:`create_permission` does for a bad one."""
        return self._permission_peer(peer).host

    def _permission_peer(self, peer: Address | str) -> Address:
        return self._peer(Address(peer, 0) if isinstance(peer, str) else peer, port=False)

    def _peer(self, peer: Address, *, port: bool = True) -> Address:
        """``peer`` normalised; raises if it is no ``(host, port)`` pair of an IP literal and a
        port, no datagram can reach it (its port is 0, unless ``port`` is off as for a
        permission, or its IP is not unicast), or no relayed address can reach it."""
        address = check_address(peer, error=errors.LocalProtocolError)
        if not (is_destination(address) if port else is_unicast(address.host)):
            raise errors.LocalProtocolError(f"no datagram can be relayed to {address}")
        if family_of(address) not in self._relayed:
            raise errors.LocalProtocolError(f"no relayed address of the family of {address}")
        return address

    def _request(
        self,
        method: Method,
        attributes: list[Attribute],
        now: float,
        on_success: OnSuccess,
        on_failure: OnFailure,
    ) -> int:
        handle = self._session.request(
            method, attributes, now=now, follow_alternate=method == Method.ALLOCATE
        )
        self._callbacks[handle] = (on_success, on_failure)
        self._peers.changed()
        return handle

    def _cancel(self, lease: Lease) -> None:
        if lease.handle is not None:
            self._session.cancel(lease.handle)
            self._callbacks.pop(lease.handle, None)
            lease.handle = None
            self._peers.changed()

    def _absorb(self, now: float) -> None:
        """Move the session's datagrams out and act on its outcomes, until it is quiet."""
        session = self._session
        while True:
            self._outgoing.extend(
                Datagram(datagram.data, self.local, datagram.remote)
                for datagram in session.datagrams_to_send(now)
            )
            event = session.next_event()
            if event is None:
                return
            if not isinstance(event, RequestSucceeded | RequestFailed):
                continue
            callbacks = self._callbacks.pop(event.handle, None)
            if callbacks is None:
                continue
            self._peers.changed()
            if isinstance(event, RequestSucceeded):
                callbacks[0](event.response, now)
            else:
                callbacks[1](event.error, now)

    # ------------------------------------------------------------------ Allocate (§7)

    def _send_allocate(self, now: float) -> None:
        attributes = allocate_attributes(self.config, dont_fragment=self._dont_fragment)
        self._lease.handle = self._request(
            Method.ALLOCATE, attributes, now, self._allocated, self._allocate_failed
        )

    def _allocated(self, response: Message, now: float) -> None:
        self._lease.handle = None
        self._allocate_started = math.inf  # answered: allocate_timeout no longer applies
        if self._state is AllocationState.CLOSING:
            self._deallocate(now)
            return
        relayed = [attribute.address for attribute in response.get_all(XorRelayedAddress)]
        problem = relayed_problem(self.config, relayed)
        granted = granted_lifetime(response)
        if problem is None and granted is None:
            problem = "no LIFETIME"
        if problem is not None or granted is None:
            self._move(AllocationState.FAILED)
            failure = errors.RemoteProtocolError(f"Allocate success response: {problem}")
            self._events.append(AllocationFailed(failure))
            return
        self._relayed = {family_of(address): address for address in relayed}
        mapped = response.get(XorMappedAddress)
        self._mapped = mapped.address if mapped is not None else None
        if self._mapped is not None and not is_destination(self._mapped):
            self._drop("unusable XOR-MAPPED-ADDRESS")
            self._mapped = None
        self._lease.granted(now, granted, self.config.refresh_margin)
        self._move(AllocationState.ALLOCATED)
        token = response.get(ReservationToken)
        self._events.append(
            AllocationCreated(
                relayed=self.relayed,
                mapped=self._mapped,
                lifetime=granted,
                reservation_token=token.token if token is not None else None,
                address_errors=tuple(response.get_all(AddressErrorCode)),
            )
        )

    def _allocate_failed(self, error: Failure, now: float) -> None:
        self._lease.handle = None
        if self._state is AllocationState.CLOSING:
            self._closed(confirmed=True)
            return
        if self._dont_fragment and refuses_dont_fragment(error):
            self._dont_fragment = False  # §7.4: the server does not know it; ask without
            self._send_allocate(now)
            return
        if isinstance(error, TransactionTimeout):  # name the request, as allocate_timeout does
            error = TransactionTimeout(f"no answer to Allocate: {error}")
        self._move(AllocationState.FAILED)
        self._events.append(AllocationFailed(error))

    @property
    def _allocate_deadline(self) -> float:
        """When an unanswered Allocate is given up (``allocate_timeout``); inf if never."""
        timeout = self.config.allocate_timeout
        if timeout is None or self._state not in (_S.ALLOCATING, _S.CLOSING):
            return math.inf
        return self._allocate_started + timeout

    def _abandon_allocate(self, now: float) -> None:
        """``allocate_timeout`` passed with the Allocate unanswered: stop retransmitting it."""
        self._cancel(self._lease)
        if self._state is AllocationState.CLOSING:
            self._closed(confirmed=False)
            return
        seconds = self.config.allocate_timeout
        self._move(AllocationState.FAILED)
        self._events.append(
            AllocationFailed(
                TransactionTimeout(f"no answer to Allocate from {self.server} within {seconds:g} s")
            )
        )

    # ------------------------------------------------------------------ Refresh (§8)

    def _refresh_attributes(self) -> list[Attribute]:
        lifetime = self.config.lifetime
        return [Lifetime(lifetime)] if lifetime is not None else []

    def _refresh(self, now: float) -> None:
        self._lease.handle = self._request(
            Method.REFRESH, self._refresh_attributes(), now, self._refreshed, self._refresh_failed
        )

    def _refreshed(self, response: Message, now: float) -> None:
        lease = self._lease
        lease.handle = None
        granted = granted_lifetime(response)
        if granted is None:
            self._refresh_failed(
                errors.RemoteProtocolError("Refresh success without LIFETIME"), now
            )
            return
        self._refresh_error = None
        lease.granted(now, granted, self.config.refresh_margin)
        self._events.append(AllocationRefreshed(granted))

    def _refresh_failed(self, error: Failure, now: float) -> None:
        lease = self._lease
        lease.handle = None
        if self._gone("Refresh", error):
            return
        self._refresh_error = error
        if now >= lease.refresh_at:
            # The scheduled Refresh failed: let the allocation run out, carrying data until then.
            lease.refresh_at = lease.expires_at
        # An early one (refresh()) leaves the schedule as it was.

    def _gone(self, request: str, error: Failure) -> bool:
        """A request on the allocation was answered 437: the server holds no allocation for us
        (RFC 8656 §5; after a server restart, say). The allocation ends at once."""
        if error_code(error) != 437 or self._state is not AllocationState.ALLOCATED:
            return False
        self._expire(f"{request} answered {error}: the server holds no such allocation")
        return True

    def _deallocate(self, now: float) -> None:
        self._lease.handle = self._request(
            Method.REFRESH,
            [Lifetime(0)],
            now,
            lambda response, now: self._closed(confirmed=True),
            lambda error, now: self._closed(confirmed=error_code(error) == 437),
        )

    def _closed(self, *, confirmed: bool) -> None:
        self._lease.handle = None
        self._move(AllocationState.CLOSED)
        self._events.append(AllocationDeleted(confirmed))

    def _end_leases(self) -> None:
        """Stop every refresh and forget every permission, channel and queued datagram."""
        self._cancel(self._lease)
        self._peers.end()

    def _expire(self, reason: str) -> None:
        self._end_leases()
        self._move(AllocationState.EXPIRED)
        self._events.append(AllocationExpired(reason))

    # ------------------------------------------------------------------ data (§10, §12)

    def _transmit(self, data: bytes, peer: Address) -> None:
        """``data`` to ``peer`` as ChannelData if a channel is bound, else a Send indication."""
        channel = self._peers.channels.get(peer)
        if channel is not None and channel.grant is Grant.ACTIVE:
            message = encode_channel_data(channel.number, data, pad=self.config.transport.is_stream)
        else:
            message = send_indication(
                data, peer, dont_fragment=self._dont_fragment, stun=self._session.config
            )
        self._outgoing.append(Datagram(message, self.local, self.server))

    def _channel_data(self, data: bytes) -> None:
        """ChannelData from the server: delivered on a channel this client bound or is binding
        (the server may relay before its answer arrives, §12.7)."""
        try:
            number, payload = decode_channel_data(data)
        except errors.DecodeError:
            self._drop("malformed ChannelData")
            return
        channel = self._peers.by_number.get(number)
        if channel is None or channel.grant is Grant.FAILED:
            self._drop("unknown channel")
            return
        self._deliver(channel.peer, payload)

    def _connection_attempt(self, message: Message) -> None:
        """A ConnectionAttempt indication (RFC 6062 §4.4): a peer connected to the relayed
        address of this TCP allocation."""
        attempt = connection_attempt(message, self._relayed)
        if attempt is None or not self._tcp or self._state is not AllocationState.ALLOCATED:
            self._drop("unusable ConnectionAttempt")
        else:
            self._events.append(attempt)

    def _deliver(self, peer: Address, data: bytes) -> None:
        relayed = self._relayed.get(family_of(peer))
        if relayed is None or self._state is not AllocationState.ALLOCATED:
            self._drop("no allocation")
            return
        self._events.append(DataReceived(peer, data, relayed))
