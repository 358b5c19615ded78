"""The client side of TCP allocations (RFC 6062) in the sans-IO core, on a virtual clock: our
:class:`turn.TurnAllocation` and its :class:`turn.client.tcp.ConnectionBinding` wired back to back
with our :class:`turn.server.TurnServerCore` — Allocate for TCP, Connect and its answers,
ConnectionAttempt, ConnectionBind on a new connection with the control connection's credentials,
timeouts at their exact deadlines, and what the client refuses locally."""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

import pytest

from stun import (
    Address,
    DecodeError,
    ErrorResponse,
    Message,
    MessageClass,
    Method,
    TransactionTimeout,
    make_address,
)
from stun.client import ClientConfig, Credentials
from stun.datagram import Datagram
from stun.integrity import PasswordAlgorithmId
from stun.transaction import TransactionConfig
from turn import (
    AllocationCreated,
    ConnectionId,
    LocalProtocolError,
    TransportProtocol,
    TurnAllocation,
    TurnClientConfig,
    TurnClientEvent,
    XorPeerAddress,
)
from turn.client.tcp import BindingState, ConnectionBinding, message_length
from turn.events import (
    ConnectFailed,
    ConnectionAttempted,
    ConnectionBindFailed,
    ConnectionBound,
    PeerConnected,
)
from turn.server import (
    ClientTransport,
    FiveTuple,
    OpenPeerConnection,
    Outcome,
    SpliceConnection,
    TurnServerCore,
)

from .harness import PASSWORDS, PEER, RELAY, SERVER
from .test_tcp_relay import tcp_server

TCP = ClientTransport.TCP
CONTROL = make_address("198.51.100.7", 40000)
DATA = make_address("198.51.100.7", 40001)
OTHER_DATA = make_address("198.51.100.7", 40002)
TCP_RELAYS = TurnClientConfig(relay_transport=TransportProtocol.TCP, transport=TCP)
#: A UDP allocation over a TCP connection.
UDP_RELAYS = TurnClientConfig(transport=TCP)


class Machine(Protocol):
    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None: ...

    def datagrams_to_send(self, now: float) -> list[Datagram]: ...


class Wire:
    """Client machines, each on a TCP connection of its own to ``server``, and what crossed."""

    def __init__(self, server: TurnServerCore) -> None:
        self.server = server
        self.machines: dict[Address, Machine] = {}
        self.to_server: list[Message] = []

    def attach(self, address: Address, machine: Machine) -> None:
        self.machines[address] = machine

    def pump(self, now: float) -> None:
        """Carry messages both ways until nothing moves."""
        moved = True
        while moved:
            moved = False
            for address, machine in self.machines.items():
                for datagram in machine.datagrams_to_send(now):
                    assert datagram.remote == SERVER
                    self.to_server.append(Message.decode(datagram.data))
                    self.server.receive_datagram(datagram.data, SERVER, address, now, transport=TCP)
                    moved = True
            for datagram in self.server.datagrams_to_send(now):
                assert datagram.local == SERVER
                self.machines[datagram.remote].receive_datagram(datagram.data, None, SERVER, now)
                moved = True


def drain(machine: TurnAllocation | ConnectionBinding) -> list[TurnClientEvent]:
    events = []
    while (event := machine.next_event()) is not None:
        events.append(event)
    return events


def tcp_allocation(
    config: TurnClientConfig = TCP_RELAYS, **overrides: Any
) -> tuple[Wire, TurnAllocation]:
    """An allocation made over a TCP connection to a fresh server core (a TCP one unless
    ``config`` says otherwise)."""
    server, _ = tcp_server(**overrides)
    wire = Wire(server)
    allocation = TurnAllocation(
        SERVER, Credentials(username="alice", password=PASSWORDS["alice"]), config
    )
    wire.attach(CONTROL, allocation)
    allocation.allocate(0.0)
    wire.pump(0.0)
    events = drain(allocation)
    assert len(events) == 1 and isinstance(events[0], AllocationCreated)
    return wire, allocation


def permitted(peer: Address = PEER) -> tuple[Wire, TurnAllocation]:
    """A TCP allocation holding a permission for ``peer``, its events drained."""
    wire, allocation = tcp_allocation()
    allocation.create_permission(peer, 0.0)
    wire.pump(0.0)
    drain(allocation)
    return wire, allocation


def start_connect(
    wire: Wire, allocation: TurnAllocation, peer: Address = PEER, now: float = 0.0
) -> OpenPeerConnection:
    """A Connect sent and taken by the server: the command it gives its driver."""
    allocation.connect(peer, now)
    wire.pump(now)
    (command,) = wire.server.tcp_commands()
    assert isinstance(command, OpenPeerConnection) and command.peer == peer
    return command


def connect(wire: Wire, allocation: TurnAllocation, peer: Address = PEER) -> int:
    """A Connect whose peer connection comes up: the CONNECTION-ID."""
    command = start_connect(wire, allocation, peer)
    wire.server.peer_connected(command.connection_id, 0.0)
    wire.pump(0.0)
    assert PeerConnected(peer, command.connection_id) in drain(allocation)
    return command.connection_id


def bind(wire: Wire, allocation: TurnAllocation, connection_id: int, now: float = 0.0,
         address: Address = DATA) -> tuple[ConnectionBinding, list[TurnClientEvent]]:  # fmt: skip
    binding = allocation.bind_connection(connection_id, now)
    wire.attach(address, binding)
    wire.pump(now)
    return binding, drain(binding)


# --------------------------------------------------------------------------- Allocate


def test_a_tcp_allocation_asks_for_requested_transport_tcp() -> None:
    wire, allocation = tcp_allocation()
    allocation_on_server = wire.server.allocation(FiveTuple(CONTROL, SERVER, TCP))
    assert allocation_on_server is not None
    assert allocation_on_server.relay_transport is TransportProtocol.TCP
    assert allocation.relayed == (RELAY,)


def test_authentication_says_what_the_challenge_settled() -> None:
    _, allocation = tcp_allocation()
    authentication = allocation.authentication
    assert authentication is not None
    assert authentication.realm == "icestack.test"
    # our server offers PASSWORD-ALGORITHMS (RFC 8489 §9.2.4): the client takes SHA-256
    assert authentication.algorithm is PasswordAlgorithmId.SHA256
    assert set(authentication.offered) == {PasswordAlgorithmId.MD5, PasswordAlgorithmId.SHA256}
    assert not authentication.userhash


def test_a_tcp_allocation_needs_a_stream_to_the_server() -> None:
    with pytest.raises(LocalProtocolError, match="TCP or TLS connection"):
        TurnAllocation(SERVER, None, dataclasses.replace(TCP_RELAYS, transport=ClientTransport.UDP))


@pytest.mark.parametrize(
    "setting",
    [{"dont_fragment": True}, {"even_port": True}, {"reserve_next_port": True},
     {"reservation_token": bytes(8)}, {"dual_allocation": True}],
    ids=lambda setting: next(iter(setting)),
)  # fmt: skip
def test_a_tcp_allocation_refuses_udp_only_settings(setting: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError, match="RFC 6062"):
        TurnClientConfig(relay_transport=TransportProtocol.TCP, **setting)


def test_udp_data_calls_are_refused_on_a_tcp_allocation() -> None:
    _, allocation = tcp_allocation()
    with pytest.raises(LocalProtocolError, match="TCP allocation"):
        allocation.send(b"x", PEER, 0.0)
    with pytest.raises(LocalProtocolError, match="TCP allocation"):
        allocation.bind_channel(PEER, 0.0)


def test_connect_is_refused_on_a_udp_allocation() -> None:
    _, allocation = tcp_allocation(UDP_RELAYS)
    with pytest.raises(LocalProtocolError, match="TCP allocations"):
        allocation.connect(PEER, 0.0)
    with pytest.raises(LocalProtocolError, match="TCP allocations"):
        allocation.bind_connection(1, 0.0)


# --------------------------------------------------------------------------- Connect (§4.3)


def test_connect_answers_with_the_connection_id_once_the_peer_is_connected() -> None:
    wire, allocation = permitted()
    command = start_connect(wire, allocation, now=1.0)
    connect_request = wire.to_server[-1]
    assert connect_request.method == Method.CONNECT
    peer = connect_request.get(XorPeerAddress)
    assert peer is not None and peer.address == PEER
    assert drain(allocation) == []  # nothing until the server's connection is up
    with pytest.raises(LocalProtocolError, match="under way"):
        allocation.connect(PEER, 1.5)
    wire.server.peer_connected(command.connection_id, 2.0)
    wire.pump(2.0)
    assert drain(allocation) == [PeerConnected(PEER, command.connection_id)]


def test_a_peer_the_server_cannot_connect_to_fails_with_447() -> None:
    wire, allocation = permitted()
    command = start_connect(wire, allocation)
    wire.server.peer_connect_failed(command.connection_id, 0.0)
    wire.pump(0.0)
    (failed,) = drain(allocation)
    assert isinstance(failed, ConnectFailed) and failed.peer == PEER and failed.code == 447
    allocation.connect(PEER, 0.0)  # no longer under way: may be tried again


def test_connect_without_a_permission_fails_with_403() -> None:
    wire, allocation = tcp_allocation()
    allocation.connect(PEER, 0.0)
    wire.pump(0.0)
    (failed,) = drain(allocation)
    assert isinstance(failed, ConnectFailed) and failed.code == 403
    assert isinstance(failed.error, ErrorResponse)


def test_a_second_connection_to_the_same_peer_fails_with_446() -> None:
    wire, allocation = permitted()
    connect(wire, allocation)
    allocation.connect(PEER, 0.0)
    wire.pump(0.0)
    (failed,) = drain(allocation)
    assert isinstance(failed, ConnectFailed) and failed.code == 446


# --------------------------------------------------------------------------- ConnectionBind (§4.4)


def test_connection_bind_carries_the_control_connections_credentials_at_once() -> None:
    wire, allocation = permitted()
    connection_id = connect(wire, allocation)
    sent = len(wire.to_server)
    binding, events = bind(wire, allocation, connection_id)
    assert events == [ConnectionBound(connection_id)]
    assert binding.state is BindingState.BOUND
    assert binding.get_timer() is None
    (request,) = wire.to_server[sent:]  # no 401 round trip on the new connection
    assert request.method == Method.CONNECTION_BIND
    assert request.get(ConnectionId) == ConnectionId(connection_id)
    assert request.has_integrity
    (splice,) = wire.server.tcp_commands()
    assert splice == SpliceConnection(connection_id, FiveTuple(DATA, SERVER, TCP))
    assert wire.server.stats[Outcome.CONNECTION_BOUND] == 1


def test_a_peer_that_connects_is_announced_and_bound() -> None:
    wire, allocation = permitted()
    connection_id = wire.server.peer_connection_arrived(RELAY, PEER, 1.0)
    assert connection_id is not None
    wire.pump(1.0)
    assert drain(allocation) == [ConnectionAttempted(PEER, connection_id)]
    _, events = bind(wire, allocation, connection_id, 1.0)
    assert events == [ConnectionBound(connection_id)]


def test_binding_a_connection_the_server_no_longer_holds_fails() -> None:
    wire, allocation = tcp_allocation()
    _, events = bind(wire, allocation, 0x12345678)
    (failed,) = events
    assert isinstance(failed, ConnectionBindFailed)
    assert failed.connection_id == 0x12345678 and failed.code == 400


def test_a_connection_bind_unanswered_fails_after_ti() -> None:
    _, allocation = tcp_allocation()
    binding = allocation.bind_connection(7, 10.0)
    assert len(binding.datagrams_to_send(10.0)) == 1
    assert binding.get_timer() == 10.0 + TransactionConfig().reliable_timeout  # Ti, 39.5 s
    binding.handle_timer(49.0)
    assert drain(binding) == []
    binding.handle_timer(49.5)
    (failed,) = drain(binding)
    assert isinstance(failed, ConnectionBindFailed) and isinstance(failed.error, TransactionTimeout)
    assert binding.state is BindingState.FAILED and binding.get_timer() is None


def test_a_data_connection_that_closes_before_the_answer_fails_the_bind() -> None:
    _, allocation = tcp_allocation()
    binding = allocation.bind_connection(7, 0.0)
    binding.connection_lost(1.0)
    (failed,) = drain(binding)
    assert isinstance(failed, ConnectionBindFailed) and "closed" in str(failed.error)


def test_ti_is_the_configured_one() -> None:
    config = dataclasses.replace(
        TCP_RELAYS, stun=ClientConfig(transaction=TransactionConfig(reliable_timeout=2.0))
    )
    _, allocation = tcp_allocation(config)
    assert allocation.bind_connection(7, 1.0).get_timer() == 3.0


# --------------------------------------------------------------------------- peer input


def attempt(*attributes: Any) -> bytes:
    message = Message(
        Method.CONNECTION_ATTEMPT, MessageClass.INDICATION, bytes(12), list(attributes)
    )
    return message.encode()


@pytest.mark.parametrize(
    "indication",
    [attempt(XorPeerAddress(PEER)), attempt(ConnectionId(5)),
     attempt(XorPeerAddress(Address("203.0.113.9", 0)), ConnectionId(5)),
     attempt(XorPeerAddress(Address("2001:db8::9", 5000)), ConnectionId(5))],
    ids=["no-connection-id", "no-peer", "port-0", "family-without-relay"],
)  # fmt: skip
def test_an_unusable_connection_attempt_is_dropped_and_counted(indication: bytes) -> None:
    _, allocation = tcp_allocation()
    allocation.receive_datagram(indication, None, SERVER, 0.0)
    assert drain(allocation) == []
    assert allocation.dropped == {"unusable ConnectionAttempt": 1}


def test_a_connection_attempt_to_a_udp_allocation_is_dropped() -> None:
    _, allocation = tcp_allocation(UDP_RELAYS)
    allocation.receive_datagram(attempt(XorPeerAddress(PEER), ConnectionId(5)), None, SERVER, 0.0)
    assert drain(allocation) == []
    assert allocation.dropped == {"unusable ConnectionAttempt": 1}


def test_message_length_reads_a_stun_header_and_refuses_anything_else() -> None:
    header = Message(Method.CONNECTION_BIND, MessageClass.SUCCESS_RESPONSE, bytes(12)).encode()
    assert message_length(header) == 20
    with pytest.raises(DecodeError):
        message_length(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(DecodeError):
        message_length(header[:4] + b"\x00\x00\x00\x00" + header[8:])  # no magic cookie
    with pytest.raises(DecodeError):
        message_length(header[:2] + b"\x00\x02" + header[4:])  # length not a multiple of 4
