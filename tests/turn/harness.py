"""A TURN client made of the codec, and a server on a virtual clock, for the turn.server tests."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stun import (
    Address,
    AddressFamily,
    Attribute,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    Username,
    long_term_key,
    make_address,
)
from stun.datagram import Datagram
from stun.server import LongTermCredentials
from turn import (
    ChannelNumber,
    Data,
    RequestedTransport,
    XorPeerAddress,
    XorRelayedAddress,
)
from turn.server import (
    ClientTransport,
    FiveTuple,
    PeerPolicy,
    PortRangeAllocator,
    TurnServerConfig,
    TurnServerCore,
    TurnServerEvent,
)

IPV4 = AddressFamily.IPV4
IPV6 = AddressFamily.IPV6
REALM = "icestack.test"
PASSWORDS = {"alice": "wonderland", "bob": "the-builder"}
SERVER = make_address("192.0.2.1", 3478)
CLIENT = make_address("198.51.100.7", 40000)
OTHER_CLIENT = make_address("198.51.100.8", 40000)
PEER = make_address("203.0.113.9", 5000)
PEER_V6 = make_address("2001:db8:beef::9", 5000)
RELAY_HOSTS = {IPV4: "192.0.2.1", IPV6: "2001:db8::1"}
PORTS = range(50000, 50010)
RELAY = Address("192.0.2.1", 50000)
NONCE_SECRET = b"n" * 16
REST_SECRET = b"shared between every server of the deployment"
#: Unix time at the virtual clock's 0, for REST API expiry times.
EPOCH = 1_700_000_000.0


def config(**overrides: Any) -> TurnServerConfig:
    settings: dict[str, Any] = {
        "credentials": LongTermCredentials.from_passwords(REALM, PASSWORDS),
        "nonce_secret": NONCE_SECRET,
        "rng": random.Random(5),
        # The documentation addresses stand for the public Internet here (peers, clients).
        "peer_policy": PeerPolicy(allow_documentation_peers=True),
    }
    settings.update(overrides)
    return TurnServerConfig(**settings)


def make_server(
    *, hosts: dict[AddressFamily, str] | None = None, ports: range = PORTS, **overrides: Any
) -> tuple[TurnServerCore, PortRangeAllocator]:
    relays = PortRangeAllocator(RELAY_HOSTS if hosts is None else hosts, ports)
    return TurnServerCore(config(**overrides), relays, wall_clock_offset=EPOCH), relays


class Listeners:
    """:class:`turn.server.TcpListeners` in memory: which relayed addresses are listened on."""

    def __init__(self, refuse: tuple[Address, ...] = ()) -> None:
        self.listening: set[Address] = set()
        self.refuse = set(refuse)

    def listen(self, relay: Address) -> bool:
        if relay in self.refuse:
            return False
        assert relay not in self.listening
        self.listening.add(relay)
        return True

    def stop_listening(self, relay: Address) -> None:
        self.listening.remove(relay)


@dataclass
class Client:
    """A TURN client made of our codec: the 401 dance, then requests under MD5 long-term keys."""

    server: TurnServerCore
    address: Address = CLIENT
    username: str = "alice"
    password: str = PASSWORDS["alice"]
    transport: ClientTransport = ClientTransport.UDP
    listener: Address = SERVER
    nonce: str | None = None
    sent: int = 0

    @property
    def key(self) -> bytes:
        return long_term_key(self.username, REALM, self.password)

    @property
    def five_tuple(self) -> FiveTuple:
        return FiveTuple(self.address, self.listener, self.transport)

    def send(self, data: bytes, now: float) -> Datagram | None:
        """One datagram to the server; the at most one it sends back."""
        self.server.receive_datagram(
            data, self.listener, self.address, now, transport=self.transport
        )
        out = self.server.datagrams_to_send(now)
        assert len(out) <= 1
        return out[0] if out else None

    def ask(self, message: Message, now: float, *, key: bytes | None = None) -> Message | None:
        """Send an encoded request; decode the answer, which must go to us from the listener."""
        out = self.send(message.encode(key=key), now)
        if out is None:
            return None
        assert (out.local, out.remote) == (self.listener, self.address)
        return Message.decode(out.data)

    def request(
        self,
        method: Method,
        attributes: Sequence[Attribute] = (),
        now: float = 0.0,
        *,
        transaction_id: bytes | None = None,
        retry_stale: bool = True,
    ) -> Message:
        """An authenticated request (fetching a nonce first if we have none, and once more after
        438 Stale Nonce unless told not to); the response, whose integrity is checked."""
        self.sent += 1
        tid = transaction_id or self.sent.to_bytes(12, "big")
        credentials = self.credentials(now)
        request = Message(method, MessageClass.REQUEST, tid, [*attributes, *credentials])
        response = self.ask(request, now, key=self.key)
        assert response is not None
        assert response.transaction_id == tid
        if code(response) != 401:
            assert response.check_integrity(self.key)
        fresh = response.get(Nonce)
        if code(response) == 438 and retry_stale and fresh is not None:
            self.nonce = fresh.value
            return self.request(method, attributes, now, retry_stale=False)
        return response

    def credentials(self, now: float = 0.0) -> list[Attribute]:
        """USERNAME, REALM and NONCE, after a challenge if we hold no nonce yet."""
        if self.nonce is None:
            self.challenge(now)
        assert self.nonce is not None
        return [Username(self.username), Realm(REALM), Nonce(self.nonce)]

    def challenge(self, now: float) -> Message:
        """An unauthenticated Allocate, answered 401 with a nonce we keep."""
        request = Message(
            Method.ALLOCATE, MessageClass.REQUEST, bytes(11) + b"\x01", [RequestedTransport()]
        )
        response = self.ask(request, now)
        assert response is not None and response.error_code is not None
        assert response.error_code.code == 401
        nonce = response.get(Nonce)
        assert nonce is not None
        self.nonce = nonce.value
        return response

    def allocate(self, *attributes: Attribute, now: float = 0.0) -> Message:
        return self.request(Method.ALLOCATE, [RequestedTransport(), *attributes], now)

    def permit(self, *peers: Address, now: float = 0.0) -> Message:
        return self.request(
            Method.CREATE_PERMISSION, [XorPeerAddress(peer) for peer in peers], now
        )

    def bind(self, number: int, peer: Address, now: float = 0.0) -> Message:
        return self.request(
            Method.CHANNEL_BIND, [ChannelNumber(number), XorPeerAddress(peer)], now
        )

    def refresh(self, *attributes: Attribute, now: float = 0.0) -> Message:
        return self.request(Method.REFRESH, list(attributes), now)

    def send_indication(self, peer: Address, data: bytes, now: float) -> Datagram | None:
        return self.send(send_indication(XorPeerAddress(peer), Data(data)), now)


def bare(method: int, *attributes: Attribute) -> bytes:
    """An unauthenticated request."""
    return Message(method, MessageClass.REQUEST, bytes(12), list(attributes)).encode()


def send_indication(*attributes: Attribute) -> bytes:
    return Message(Method.SEND, MessageClass.INDICATION, bytes(12), list(attributes)).encode()


def code(response: Message) -> int | None:
    error = response.error_code
    return None if error is None else error.code


def relayed(response: Message) -> list[Address]:
    return [attribute.address for attribute in response.get_all(XorRelayedAddress)]


def from_peer(
    server: TurnServerCore, data: bytes, now: float, peer: Address = PEER, relay: Address = RELAY
) -> Datagram | None:
    server.receive_datagram(data, relay, peer, now)
    out = server.datagrams_to_send(now)
    assert len(out) <= 1
    return out[0] if out else None


def events(server: TurnServerCore) -> list[TurnServerEvent]:
    drained = []
    while (event := server.next_event()) is not None:
        drained.append(event)
    return drained


