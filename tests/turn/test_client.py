"""turn.client: our TurnAllocation against the sans-IO TurnServerCore, back to back on a virtual
clock (architecture.md §5, tier 1). Peers are simulated by feeding datagrams to the server core's
relayed addresses; exact datagram counts and deadlines are asserted."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import (
    Address,
    AddressFamily,
    AlternateServer,
    Attribute,
    ErrorResponse,
    Integrity,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    PasswordAlgorithmId,
    TransactionTimeout,
    XorMappedAddress,
    long_term_key,
    make_address,
)
from stun.client import ClientConfig, Credentials
from stun.datagram import Datagram, Machine
from stun.probe import scaled_schedule
from stun.server import LongTermCredentials
from turn import (
    MAX_SEND_SIZE,
    AddressErrorCode,
    AllocationCreated,
    AllocationDeleted,
    AllocationExpired,
    AllocationFailed,
    AllocationRefreshed,
    AllocationState,
    ChannelBound,
    ChannelFailed,
    ClientTransport,
    Data,
    DataReceived,
    DontFragment,
    Lifetime,
    LocalProtocolError,
    PermissionCreated,
    PermissionFailed,
    TurnAllocation,
    TurnClientConfig,
    TurnClientEvent,
    XorPeerAddress,
    XorRelayedAddress,
    decode_channel_data,
    encode_channel_data,
)
from turn.server import Outcome, TurnServerCore

from .harness import (
    CLIENT,
    OTHER_CLIENT,
    PASSWORDS,
    PEER,
    PEER_V6,
    REALM,
    RELAY,
    RELAY_HOSTS,
    SERVER,
    make_server,
)

IPV4, IPV6 = AddressFamily.IPV4, AddressFamily.IPV6
ALICE = Credentials(username="alice", password=PASSWORDS["alice"])
RELAY_V6 = Address(RELAY_HOSTS[IPV6], 50000)
OTHER_SERVER = make_address("192.0.2.2", 3478)
OTHER_PEER = make_address("203.0.113.10", 6000)


class Pair:
    """A TurnAllocation at ``client`` and TurnServerCores by address, wired back to back.

    What the servers relay to peers lands in :attr:`to_peers`; ``lose`` decides which datagrams
    (either way between client and server) vanish.
    """

    def __init__(
        self,
        *,
        transport: ClientTransport = ClientTransport.UDP,
        client: Address = CLIENT,
        credentials: Credentials = ALICE,
        servers: dict[Address, TurnServerCore] | None = None,
        server_settings: dict[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        self.servers = servers or {SERVER: make_server(**(server_settings or {}))[0]}
        self.transport = transport
        self.client = client
        config = TurnClientConfig(
            stun=ClientConfig(rng=random.Random(1)), transport=transport, **settings
        )
        self.alloc = TurnAllocation(SERVER, credentials, config)
        self.to_peers: list[Datagram] = []
        self.lose: Callable[[Datagram], bool] = lambda datagram: False
        #: Every datagram the client sent, lost or not.
        self.sent: list[Datagram] = []

    @property
    def server(self) -> TurnServerCore:
        return self.servers[SERVER]

    def pump(self, now: float) -> int:
        """Deliver until quiet; return how many datagrams the client sent."""
        count = 0
        while out := self.alloc.datagrams_to_send(now):
            for datagram in out:
                count += 1
                self.sent.append(datagram)
                if not self.lose(datagram):
                    self.to_server(datagram, now)
        return count

    def to_server(self, datagram: Datagram, now: float) -> None:
        server = self.servers[datagram.remote]
        server.receive_datagram(
            datagram.data, datagram.remote, self.client, now, transport=self.transport
        )
        self.deliver(server.datagrams_to_send(now), now)

    def deliver(self, datagrams: list[Datagram], now: float) -> None:
        for datagram in datagrams:
            if datagram.remote != self.client:
                self.to_peers.append(datagram)
            elif not self.lose(datagram):
                assert datagram.local is not None
                self.alloc.receive_datagram(datagram.data, None, datagram.local, now)

    def from_peer(
        self, data: bytes, now: float, peer: Address = PEER, relay: Address = RELAY
    ) -> None:
        self.server.receive_datagram(data, relay, peer, now)
        self.deliver(self.server.datagrams_to_send(now), now)

    def advance(self, until: float) -> None:
        """Run every machine's timers up to ``until``, delivering what they send."""
        while True:
            machines: list[Machine] = [self.alloc, *self.servers.values()]
            deadlines = [t for m in machines if (t := m.get_timer()) is not None]
            if not deadlines or min(deadlines) > until:
                return
            now = min(deadlines)
            for machine in machines:
                machine.handle_timer(now)
            self.pump(now)

    def events(self) -> list[TurnClientEvent]:
        drained = []
        while (event := self.alloc.next_event()) is not None:
            drained.append(event)
        return drained

    def allocated(self, now: float = 0.0) -> AllocationCreated:
        self.alloc.allocate(now)
        self.pump(now)
        [event] = self.events()
        assert isinstance(event, AllocationCreated), event
        return event

    def peer_data(self) -> list[tuple[bytes, Address, Address]]:
        """What reached peers: (data, from relayed address, to peer); then forget it."""
        reached = [(d.data, d.local or Address("", 0), d.remote) for d in self.to_peers]
        self.to_peers.clear()
        return reached


def allocated_pair(**settings: Any) -> Pair:
    pair = Pair(**settings)
    pair.allocated()
    return pair


def decoded(datagram: Datagram) -> Message:
    return Message.decode(datagram.data)


# --------------------------------------------------------------------------- Allocate


def test_allocate_with_the_long_term_credential_dance() -> None:
    pair = Pair()
    pair.alloc.allocate(0.0)
    assert pair.pump(0.0) == 2  # Allocate, 401, Allocate with credentials, success
    first, second = (decoded(d) for d in pair.sent)
    assert not first.has_integrity and second.has(MessageIntegritySha256)  # SHA-256 offered
    [event] = pair.events()
    assert event == AllocationCreated(relayed=(RELAY,), mapped=CLIENT, lifetime=600.0)
    assert pair.alloc.state is AllocationState.ALLOCATED
    assert pair.alloc.relayed == (RELAY,) and pair.alloc.mapped_address == CLIENT
    assert pair.server.allocation_count == 1
    assert pair.alloc.get_timer() == 540.0  # a minute before the 600 s run out


def test_allocate_with_md5_when_the_server_offers_no_algorithms() -> None:
    credentials = LongTermCredentials.from_passwords(REALM, PASSWORDS, password_algorithms=())
    pair = Pair(server_settings={"credentials": credentials})
    pair.allocated()
    assert decoded(pair.sent[1]).has(MessageIntegrity)
    assert not decoded(pair.sent[1]).has(MessageIntegritySha256)


def test_a_lost_response_is_retransmitted_and_answered_again() -> None:
    pair = Pair()
    lost: list[Datagram] = []

    def lose_first_success(datagram: Datagram) -> bool:
        if datagram.remote == CLIENT and not lost and decoded(datagram).error_code is None:
            lost.append(datagram)
            return True
        return False

    pair.lose = lose_first_success
    pair.alloc.allocate(0.0)
    assert pair.pump(0.0) == 2 and pair.events() == []
    assert pair.alloc.get_timer() == 0.5
    pair.advance(0.5)
    [event] = pair.events()
    assert isinstance(event, AllocationCreated)
    assert pair.sent[2].data == pair.sent[1].data  # the same transaction, sent again
    assert pair.server.stats[Outcome.ALLOCATE_REPEATED] == 1


def test_a_wrong_password_fails_with_401() -> None:
    pair = Pair(credentials=Credentials(username="alice", password="guess"))
    pair.alloc.allocate(0.0)
    assert pair.pump(0.0) == 2
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and event.code == 401
    assert pair.alloc.state is AllocationState.FAILED
    assert pair.alloc.get_timer() is None


def test_a_second_allocation_on_the_same_five_tuple_fails_with_437() -> None:
    pair = allocated_pair()
    again = TurnAllocation(SERVER, ALICE, TurnClientConfig(stun=ClientConfig(rng=random.Random(2))))
    pair.alloc = again
    again.allocate(1.0)
    pair.pump(1.0)
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and event.code == 437
    assert "437" in event.reason


BOB = Credentials(username="bob", password=PASSWORDS["bob"])


@pytest.mark.parametrize(
    ("quotas", "credentials", "code"),
    [({"user_quota": 1}, ALICE, 486), ({"total_quota": 1}, BOB, 508)],
)
def test_quotas_fail_with_486_and_508(
    quotas: dict[str, Any], credentials: Credentials, code: int
) -> None:
    servers = {SERVER: make_server(**quotas)[0]}
    allocated_pair(servers=servers)
    second = Pair(servers=servers, client=OTHER_CLIENT, credentials=credentials)
    second.alloc.allocate(0.0)
    second.pump(0.0)
    [event] = second.events()
    assert isinstance(event, AllocationFailed) and event.code == code
    assert second.alloc.state is AllocationState.FAILED


def test_no_free_relay_port_fails_with_508() -> None:
    servers = {SERVER: make_server(ports=range(50000, 50001))[0]}
    allocated_pair(servers=servers)
    second = Pair(servers=servers, client=OTHER_CLIENT)
    second.alloc.allocate(0.0)
    second.pump(0.0)
    [event] = second.events()
    assert isinstance(event, AllocationFailed) and event.code == 508


def test_dont_fragment_refused_with_420_is_dropped_and_the_allocate_retried() -> None:
    pair = Pair(dont_fragment=True)
    pair.alloc.allocate(0.0)
    assert pair.pump(0.0) == 3  # Allocate, 401, Allocate with DONT-FRAGMENT, 420, Allocate
    assert decoded(pair.sent[1]).has(DontFragment) and not decoded(pair.sent[2]).has(DontFragment)
    [event] = pair.events()
    assert isinstance(event, AllocationCreated)
    assert not pair.alloc.dont_fragment
    pair.alloc.send(b"x", PEER, 1.0)
    pair.pump(1.0)
    assert pair.peer_data() == [(b"x", RELAY, PEER)]


def test_dont_fragment_rides_on_send_indications_when_the_server_keeps_it() -> None:
    """Our server refuses DONT-FRAGMENT, so the Allocate success of a server that keeps it is
    made here, after the real server's 401; then the Send indication is read on the wire."""
    pair = Pair(dont_fragment=True, use_channels=False, auto_permission=False)
    pair.alloc.allocate(0.0)
    [unauthenticated] = pair.alloc.datagrams_to_send(0.0)
    pair.to_server(unauthenticated, 0.0)
    [request] = pair.alloc.datagrams_to_send(0.0)
    allocate = decoded(request)
    assert allocate.has(DontFragment)
    key = long_term_key("alice", REALM, PASSWORDS["alice"], PasswordAlgorithmId.SHA256)
    success = allocate.success_response(
        [XorRelayedAddress(RELAY), Lifetime(600), XorMappedAddress(CLIENT)]
    )
    pair.alloc.receive_datagram(
        success.encode(key=key, integrity=Integrity.SHA256), None, SERVER, 0.0
    )
    [event] = pair.events()
    assert isinstance(event, AllocationCreated) and pair.alloc.dont_fragment
    pair.alloc.send(b"df", PEER, 1.0)
    [indication] = pair.alloc.datagrams_to_send(1.0)
    assert decoded(indication).method == Method.SEND
    assert decoded(indication).has(DontFragment)


# --------------------------------------------------------------------------- Refresh and expiry


def test_the_allocation_is_refreshed_a_minute_before_it_expires() -> None:
    pair = allocated_pair()
    pair.advance(539.9)
    assert len(pair.sent) == 2 and pair.events() == []
    pair.advance(540.0)
    assert decoded(pair.sent[2]).method == Method.REFRESH
    assert not decoded(pair.sent[2]).has(Lifetime)  # the server's default
    assert pair.events() == [AllocationRefreshed(600.0)]
    assert pair.alloc.expires_at == 1140.0 and pair.alloc.get_timer() == 1080.0
    pair.advance(10_000.0)  # every 540 s; a nonce goes stale every 600 s, costing a 438
    assert pair.events() == [AllocationRefreshed(600.0)] * 17
    assert pair.server.allocation_count == 1


def test_the_requested_lifetime_is_asked_for_and_a_short_one_refreshed_at_four_fifths() -> None:
    pair = Pair(lifetime=100, server_settings={"default_lifetime": 50.0, "max_lifetime": 100.0})
    event = pair.allocated()
    assert event.lifetime == 100.0
    assert decoded(pair.sent[1]).get(Lifetime) == Lifetime(100)
    assert pair.alloc.get_timer() == 80.0
    pair.advance(80.0)
    assert decoded(pair.sent[2]).get(Lifetime) == Lifetime(100)
    assert pair.events() == [AllocationRefreshed(100.0)]


def test_a_stale_nonce_on_refresh_is_retried_with_the_fresh_one() -> None:
    pair = allocated_pair(server_settings={"nonce_lifetime": 300.0})
    pair.advance(540.0)
    assert len(pair.sent) == 4  # Refresh, 438 with a new nonce, Refresh again, success
    assert pair.events() == [AllocationRefreshed(600.0)]


def test_without_answers_the_allocation_expires_at_its_lifetime() -> None:
    pair = allocated_pair()
    pair.lose = lambda datagram: True
    pair.advance(599.9)
    assert pair.events() == [] and pair.alloc.expires_at == 600.0
    assert pair.alloc.get_timer() == 600.0  # the Refresh has given up; the expiry is next
    pair.advance(600.0)
    [event] = pair.events()
    assert isinstance(event, AllocationExpired) and "no response" in event.reason
    assert pair.alloc.state is AllocationState.EXPIRED and pair.alloc.get_timer() is None
    assert len(pair.sent) == 2 + 7  # the Refresh, sent Rc = 7 times


def test_a_refresh_answered_437_ends_the_allocation_at_once() -> None:
    pair = allocated_pair()
    pair.servers[SERVER] = make_server()[0]  # a restarted server: same secrets, no allocations
    pair.advance(540.0)
    [event] = pair.events()
    assert isinstance(event, AllocationExpired) and "437" in event.reason
    assert pair.alloc.state is AllocationState.EXPIRED
    with pytest.raises(LocalProtocolError):
        pair.alloc.create_permission(PEER.host, 541.0)
    pair.alloc.send(b"late", PEER, 541.0)
    assert pair.alloc.dropped == {"no allocation": 1}


def test_a_permission_answered_437_ends_the_allocation_at_once() -> None:
    pair = allocated_pair()
    pair.servers[SERVER] = make_server()[0]  # restarted: it knows nothing of us
    pair.alloc.create_permission(PEER.host, 1.0)
    pair.pump(1.0)
    [event] = pair.events()
    assert isinstance(event, AllocationExpired) and event.reason.startswith("CreatePermission")
    assert "437" in event.reason and pair.alloc.state is AllocationState.EXPIRED


def test_an_early_refresh_finds_a_forgotten_allocation_at_once() -> None:
    pair = allocated_pair()
    pair.servers[SERVER] = make_server()[0]
    pair.alloc.refresh(10.0)
    assert pair.pump(10.0) == 1
    [event] = pair.events()
    assert isinstance(event, AllocationExpired) and "437" in event.reason


def test_an_early_refresh_of_a_live_allocation_extends_it() -> None:
    pair = allocated_pair()
    pair.alloc.refresh(10.0)
    pair.alloc.refresh(10.0)  # one in flight already: nothing more is sent
    assert pair.pump(10.0) == 1
    assert pair.events() == [AllocationRefreshed(600.0)]
    assert pair.alloc.expires_at == 610.0


def test_an_unanswered_early_refresh_keeps_the_regular_schedule() -> None:
    pair = allocated_pair()
    pair.lose = lambda datagram: True
    pair.alloc.refresh(10.0)
    pair.pump(10.0)
    pair.advance(100.0)  # its transaction timed out long ago
    assert pair.events() == [] and pair.alloc.get_timer() == 540.0
    pair.lose = lambda datagram: False
    pair.advance(540.0)
    assert pair.events() == [AllocationRefreshed(600.0)]


def test_an_unanswered_allocate_is_given_up_after_allocate_timeout() -> None:
    pair = Pair(allocate_timeout=5.0)
    pair.lose = lambda datagram: True
    pair.alloc.allocate(0.0)
    pair.pump(0.0)
    pair.advance(4.99)
    assert pair.events() == [] and pair.alloc.get_timer() == 5.0
    pair.advance(5.0)
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TransactionTimeout)
    assert "within 5 s" in event.reason
    assert pair.alloc.state is AllocationState.FAILED and pair.alloc.get_timer() is None
    assert len(pair.sent) == 4  # at 0, 0.5, 1.5 and 3.5 s: the 7.5 s retransmission never goes


def test_an_allocate_whose_transaction_times_out_is_named() -> None:
    """Without allocate_timeout (or with a schedule that ends first, as ``icestack turn
    --timeout`` scales it) the transaction's timeout ends the allocation, and says it was the
    Allocate that went unanswered."""
    pair = Pair()
    schedule = ClientConfig(rng=random.Random(1), transaction=scaled_schedule(1.0))
    pair.alloc = TurnAllocation(SERVER, ALICE, TurnClientConfig(stun=schedule))
    pair.lose = lambda datagram: True
    pair.alloc.allocate(0.0)
    pair.pump(0.0)
    pair.advance(2.0)
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TransactionTimeout)
    assert event.reason.startswith("no answer to Allocate: no response from ")
    assert len(pair.sent) == 7


def test_allocate_timeout_does_not_touch_an_answered_allocate() -> None:
    pair = allocated_pair(allocate_timeout=5.0)
    pair.advance(300.0)
    assert pair.alloc.state is AllocationState.ALLOCATED and pair.events() == []


def test_close_while_allocating_gives_up_at_allocate_timeout() -> None:
    pair = Pair(allocate_timeout=2.0)
    pair.lose = lambda datagram: True
    pair.alloc.allocate(0.0)
    pair.alloc.close(0.5)
    pair.pump(0.5)
    pair.advance(2.0)
    assert pair.events() == [AllocationDeleted(confirmed=False)]
    assert pair.alloc.state is AllocationState.CLOSED


# --------------------------------------------------------------------------- close


def test_close_deletes_the_allocation() -> None:
    pair = allocated_pair()
    pair.alloc.create_permission(PEER.host, 1.0)
    pair.pump(1.0)
    pair.alloc.close(2.0)
    assert pair.pump(2.0) == 1
    assert decoded(pair.sent[-1]).get(Lifetime) == Lifetime(0)
    assert pair.events() == [PermissionCreated(PEER.host), AllocationDeleted(confirmed=True)]
    assert pair.server.allocation_count == 0
    assert pair.alloc.state is AllocationState.CLOSED and pair.alloc.get_timer() is None
    with pytest.raises(LocalProtocolError):
        pair.alloc.send(b"x", PEER, 3.0)
    pair.alloc.close(3.0)  # again: nothing
    assert pair.alloc.datagrams_to_send(3.0) == []


def test_a_lost_deletion_answer_is_confirmed_by_437() -> None:
    pair = allocated_pair()
    pair.lose = lambda datagram: datagram.remote == CLIENT
    pair.alloc.close(1.0)
    pair.pump(1.0)
    pair.lose = lambda datagram: False
    pair.advance(1.5)
    assert pair.events() == [AllocationDeleted(confirmed=True)]


def test_close_while_allocating_deletes_what_the_answer_created() -> None:
    pair = Pair()
    pair.alloc.allocate(0.0)
    pair.alloc.close(0.0)
    assert pair.alloc.state is AllocationState.CLOSING
    assert pair.pump(0.0) == 3  # Allocate, 401, Allocate, success, Refresh 0, success
    assert pair.events() == [AllocationDeleted(confirmed=True)]
    assert pair.server.allocation_count == 0


def test_close_before_allocating_or_after_failure_sends_nothing() -> None:
    idle = Pair()
    idle.alloc.close(0.0)
    assert idle.alloc.state is AllocationState.CLOSED and idle.pump(0.0) == 0
    with pytest.raises(LocalProtocolError):
        idle.alloc.allocate(0.0)
    failed = Pair(credentials=Credentials(username="alice", password="guess"))
    failed.alloc.allocate(0.0)
    failed.pump(0.0)
    failed.alloc.close(1.0)
    assert failed.pump(1.0) == 0 and failed.alloc.state is AllocationState.CLOSED


# --------------------------------------------------------------------------- permissions


def test_a_permission_is_created_and_refreshed_before_300_seconds() -> None:
    pair = allocated_pair()
    pair.alloc.create_permission(PEER.host, 10.0)
    assert pair.pump(10.0) == 1
    assert decoded(pair.sent[-1]).get(XorPeerAddress) == XorPeerAddress(Address(PEER.host, 0))
    assert pair.events() == [PermissionCreated(PEER.host)]
    assert pair.alloc.has_permission(PEER.host)
    pair.alloc.create_permission(PEER.host, 11.0)  # held already: nothing sent
    assert pair.pump(11.0) == 0
    assert pair.alloc.get_timer() == 250.0
    pair.advance(2000.0)
    assert pair.server.stats[Outcome.PERMITTED] == 1 + 8  # at 250, 490, ... 1930
    assert pair.server.stats[Outcome.REFRESHED] == 3
    allocation = next(pair.server.allocations())
    assert allocation.has_permission(PEER.host, 2000.0)
    assert pair.events() == [AllocationRefreshed(600.0)] * 3  # refreshing a permission is quiet


def test_a_refused_peer_fails_its_permission_with_403_and_its_data_is_dropped() -> None:
    pair = allocated_pair(use_channels=False)
    loopback = make_address("127.0.0.1", 9)
    pair.alloc.create_permission(loopback.host, 1.0)
    pair.pump(1.0)
    [event] = pair.events()
    assert isinstance(event, PermissionFailed) and event.code == 403
    assert event.host == "127.0.0.1"
    pair.alloc.send(b"x", loopback, 2.0)
    assert pair.pump(2.0) == 0 and pair.alloc.dropped == {"permission failed": 1}
    pair.alloc.create_permission(loopback.host, 3.0)  # asked for again by hand: sent again
    assert pair.pump(3.0) == 1


def test_a_permission_whose_refresh_goes_unanswered_fails_before_it_expires() -> None:
    pair = allocated_pair()
    pair.alloc.create_permission(PEER.host, 0.0)
    pair.pump(0.0)
    pair.events()
    pair.lose = lambda datagram: decoded(datagram).method == Method.CREATE_PERMISSION
    pair.advance(299.0)
    [event] = pair.events()
    assert isinstance(event, PermissionFailed) and isinstance(event.error, TransactionTimeout)
    assert not pair.alloc.has_permission(PEER.host)


def test_a_refresh_still_unanswered_at_expiry_ends_the_permission() -> None:
    pair = allocated_pair(refresh_margin=5.0)  # the RTO estimate is 0.1 s: 7.9 s to give up
    pair.alloc.create_permission(PEER.host, 0.0)
    pair.pump(0.0)
    pair.events()
    pair.lose = lambda datagram: decoded(datagram).method == Method.CREATE_PERMISSION
    pair.advance(299.9)
    assert pair.events() == [] and pair.alloc.get_timer() == 300.0
    pair.advance(300.0)
    [event] = pair.events()
    assert isinstance(event, PermissionFailed) and "expired before" in str(event.error)


# --------------------------------------------------------------------------- channels


def test_a_channel_is_bound_refreshed_before_600_seconds_and_carries_data() -> None:
    pair = allocated_pair()
    assert pair.alloc.bind_channel(PEER, 1.0) == 0x4000
    assert pair.alloc.bind_channel(PEER, 1.0) == 0x4000  # requested already: nothing more
    assert pair.pump(1.0) == 1
    assert pair.events() == [ChannelBound(PEER, 0x4000), PermissionCreated(PEER.host)]
    assert pair.alloc.channel(PEER) == 0x4000
    assert pair.alloc.bind_channel(OTHER_PEER, 1.0) == 0x4001
    pair.pump(1.0)
    pair.alloc.send(b"hello", PEER, 2.0)
    [datagram] = pair.alloc.datagrams_to_send(2.0)
    assert datagram.data == encode_channel_data(0x4000, b"hello")
    pair.to_server(datagram, 2.0)
    assert pair.peer_data() == [(b"hello", RELAY, PEER)]
    pair.advance(2000.0)
    assert pair.server.stats[Outcome.CHANNEL_BOUND] == 2 * (1 + 3)  # at 541, 1081, 1621
    pair.alloc.send(b"still", PEER, 2000.0)
    assert pair.pump(2000.0) == 1 and pair.peer_data() == [(b"still", RELAY, PEER)]
    assert pair.server.channel_count(2000.0) == 2


def test_a_refused_channel_fails_with_403() -> None:
    pair = allocated_pair()
    loopback = make_address("127.0.0.1", 9)
    pair.alloc.bind_channel(loopback, 1.0)
    pair.pump(1.0)
    events = pair.events()
    assert [type(e) for e in events] == [ChannelFailed, PermissionFailed]
    failed = events[0]
    assert isinstance(failed, ChannelFailed) and failed.code == 403
    assert failed.channel == 0x4000 and pair.alloc.channel(loopback) is None


def test_sending_binds_a_channel_and_holds_the_data_until_it_is_bound() -> None:
    pair = allocated_pair()
    pair.alloc.send(b"one", PEER, 1.0)
    pair.alloc.send(b"two", PEER, 1.0)
    [bind] = pair.alloc.datagrams_to_send(1.0)  # the data waits for the channel
    assert decoded(bind).method == Method.CHANNEL_BIND
    pair.to_server(bind, 1.0)
    assert pair.events() == [ChannelBound(PEER, 0x4000), PermissionCreated(PEER.host)]
    out = pair.alloc.datagrams_to_send(1.0)
    assert [decode_channel_data(d.data) for d in out] == [(0x4000, b"one"), (0x4000, b"two")]


def test_the_queue_per_peer_is_bounded() -> None:
    pair = allocated_pair(max_queued_per_peer=2)
    for n in range(5):
        pair.alloc.send(bytes([n]), PEER, 1.0)
    pair.pump(1.0)
    assert pair.peer_data() == [(b"\x00", RELAY, PEER), (b"\x01", RELAY, PEER)]
    assert pair.alloc.dropped == {"queue full": 3}


def test_without_channels_data_goes_in_send_indications_after_the_permission() -> None:
    pair = allocated_pair(use_channels=False)
    pair.alloc.send(b"hello", PEER, 1.0)
    [permission] = pair.alloc.datagrams_to_send(1.0)
    assert decoded(permission).method == Method.CREATE_PERMISSION
    pair.to_server(permission, 1.0)
    assert pair.events() == [PermissionCreated(PEER.host)]
    [indication] = pair.alloc.datagrams_to_send(1.0)
    message = decoded(indication)
    assert (message.method, message.message_class) == (Method.SEND, MessageClass.INDICATION)
    assert message.get(XorPeerAddress) == XorPeerAddress(PEER)
    assert message.get(Data) == Data(b"hello")
    pair.to_server(indication, 1.0)
    assert pair.peer_data() == [(b"hello", RELAY, PEER)]


def test_without_automatic_permissions_data_goes_out_at_once() -> None:
    pair = allocated_pair(use_channels=False, auto_permission=False)
    pair.alloc.send(b"early", PEER, 1.0)
    assert pair.pump(1.0) == 1 and pair.peer_data() == []  # no permission: the server drops
    assert pair.server.stats[Outcome.NO_PERMISSION] == 1


# --------------------------------------------------------------------------- data from peers


def test_data_from_a_peer_arrives_as_indications_then_on_the_channel() -> None:
    pair = allocated_pair()
    pair.alloc.create_permission(PEER.host, 1.0)
    pair.pump(1.0)
    pair.events()
    pair.from_peer(b"before the channel", 2.0)
    assert pair.events() == [DataReceived(PEER, b"before the channel", RELAY)]
    pair.alloc.bind_channel(PEER, 3.0)
    pair.pump(3.0)
    assert pair.events() == [ChannelBound(PEER, 0x4000)]
    pair.from_peer(b"on the channel", 4.0)
    assert pair.events() == [DataReceived(PEER, b"on the channel", RELAY)]
    assert pair.server.stats[Outcome.RELAYED_TO_CLIENT] == 2


def test_channel_data_before_the_bind_answer_is_delivered() -> None:
    pair = allocated_pair()
    pair.alloc.bind_channel(PEER, 1.0)
    [bind] = pair.alloc.datagrams_to_send(1.0)
    server = pair.server
    server.receive_datagram(bind.data, SERVER, CLIENT, 1.0)
    [answer] = server.datagrams_to_send(1.0)
    pair.from_peer(b"overtaking", 1.0)  # relayed on the channel, reaching us first
    assert pair.events() == [DataReceived(PEER, b"overtaking", RELAY)]
    pair.deliver([answer], 1.0)
    assert pair.events() == [ChannelBound(PEER, 0x4000), PermissionCreated(PEER.host)]


def test_a_data_indication_during_the_bind_is_delivered() -> None:
    """The bind installs the peer's permission: data relayed as an indication meanwhile (here,
    from another port of the same host, which has no channel) is the peer's, not dropped."""
    pair = allocated_pair()
    pair.alloc.bind_channel(PEER, 1.0)
    [bind] = pair.alloc.datagrams_to_send(1.0)
    pair.server.receive_datagram(bind.data, SERVER, CLIENT, 1.0)
    pair.server.datagrams_to_send(1.0)  # the answer is late
    same_host = Address(PEER.host, PEER.port + 1)
    pair.from_peer(b"meanwhile", 1.0, peer=same_host)
    assert pair.events() == [DataReceived(same_host, b"meanwhile", RELAY)]


def test_data_from_the_server_without_a_permission_or_channel_is_dropped() -> None:
    pair = allocated_pair()
    forged = Message(
        Method.DATA, MessageClass.INDICATION, bytes(12), [XorPeerAddress(PEER), Data(b"x")]
    ).encode()
    pair.alloc.receive_datagram(forged, None, SERVER, 1.0)
    pair.alloc.receive_datagram(encode_channel_data(0x4123, b"x"), None, SERVER, 1.0)
    pair.alloc.receive_datagram(forged, None, OTHER_SERVER, 1.0)
    assert pair.events() == []
    assert pair.alloc.dropped == {
        "no permission": 1, "unknown channel": 1, "not from the server": 1
    }


# --------------------------------------------------------------------------- TCP and TLS


def test_over_tcp_channel_data_is_padded_both_ways() -> None:
    pair = allocated_pair(transport=ClientTransport.TCP)
    pair.alloc.bind_channel(PEER, 1.0)
    pair.pump(1.0)
    pair.events()
    pair.alloc.send(b"five!", PEER, 2.0)
    [datagram] = pair.alloc.datagrams_to_send(2.0)
    assert datagram.data == encode_channel_data(0x4000, b"five!") + bytes(3)
    pair.to_server(datagram, 2.0)
    assert pair.peer_data() == [(b"five!", RELAY, PEER)]
    pair.from_peer(b"back", 3.0)
    assert pair.events() == [DataReceived(PEER, b"back", RELAY)]


def test_over_tcp_nothing_is_retransmitted_and_a_closed_connection_ends_the_allocation() -> None:
    pair = allocated_pair(transport=ClientTransport.TCP)
    assert len(pair.sent) == 2
    pair.lose = lambda datagram: True
    pair.advance(579.0)
    assert len(pair.sent) == 3  # the Refresh, once
    pair.alloc.connection_lost(580.0)
    [event] = pair.events()
    assert isinstance(event, AllocationExpired) and "connection" in event.reason
    assert pair.alloc.get_timer() is None


def test_a_closed_connection_fails_the_allocate_in_flight() -> None:
    pair = Pair(transport=ClientTransport.TLS)
    pair.alloc.allocate(0.0)
    pair.alloc.connection_lost(0.1)
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and isinstance(event.error, TransactionTimeout)


# --------------------------------------------------------------------------- families


def test_an_ipv6_relayed_address_on_request() -> None:
    pair = Pair(requested_family=IPV6)
    event = pair.allocated()
    assert event.relayed == (RELAY_V6,)
    pair.alloc.send(b"six", PEER_V6, 1.0)
    pair.pump(1.0)
    assert pair.peer_data() == [(b"six", RELAY_V6, PEER_V6)]
    with pytest.raises(LocalProtocolError, match="family"):
        pair.alloc.send(b"four", PEER, 1.0)
    pair.from_peer(b"back", 2.0, peer=PEER_V6, relay=RELAY_V6)
    assert pair.events()[-1] == DataReceived(PEER_V6, b"back", RELAY_V6)


def test_a_dual_allocation_relays_each_family_from_its_own_address() -> None:
    pair = Pair(dual_allocation=True)
    event = pair.allocated()
    relay_v6 = RELAY_V6
    assert event.relayed == (RELAY, relay_v6) and event.address_errors == ()
    assert pair.alloc.relayed_for(PEER_V6) == relay_v6
    pair.alloc.send(b"4", PEER, 1.0)
    pair.alloc.send(b"6", PEER_V6, 1.0)
    pair.pump(1.0)
    assert sorted(pair.peer_data()) == [(b"4", RELAY, PEER), (b"6", relay_v6, PEER_V6)]
    pair.from_peer(b"from six", 2.0, peer=PEER_V6, relay=relay_v6)
    assert pair.events()[-1] == DataReceived(PEER_V6, b"from six", relay_v6)


def test_a_dual_allocation_without_ipv6_says_why_and_keeps_ipv4() -> None:
    pair = Pair(dual_allocation=True, server_settings={"relay_families": frozenset({IPV4})})
    event = pair.allocated()
    assert event.relayed == (RELAY,)
    assert event.address_errors == (AddressErrorCode.of(IPV6, 440),)


def test_an_unsupported_family_fails_with_440() -> None:
    pair = Pair(requested_family=IPV6, server_settings={"relay_families": frozenset({IPV4})})
    pair.alloc.allocate(0.0)
    pair.pump(0.0)
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and event.code == 440


def test_even_port_with_a_reservation_then_the_reserved_port() -> None:
    servers = {SERVER: make_server()[0]}
    first = Pair(servers=servers, even_port=True, reserve_next_port=True)
    event = first.allocated()
    assert event.relayed[0].port % 2 == 0 and event.reservation_token is not None
    second = Pair(servers=servers, client=OTHER_CLIENT, reservation_token=event.reservation_token)
    reserved = second.allocated()
    assert reserved.relayed == (Address(RELAY.host, event.relayed[0].port + 1),)


# --------------------------------------------------------------------------- ALTERNATE-SERVER


def test_alternate_server_is_followed_and_everything_goes_there() -> None:
    redirecting = make_server(alternate_server=OTHER_SERVER)[0]
    other = make_server()[0]
    pair = Pair(servers={SERVER: redirecting, OTHER_SERVER: other})
    pair.allocated()
    assert pair.alloc.server == OTHER_SERVER
    assert other.allocation_count == 1 and redirecting.allocation_count == 0
    pair.alloc.send(b"via the other", PEER, 1.0)
    pair.pump(1.0)
    assert pair.peer_data() == [(b"via the other", RELAY, PEER)]
    assert all(d.remote == OTHER_SERVER for d in pair.sent[3:])


def test_alternate_server_is_followed_once() -> None:
    servers = {
        SERVER: make_server(alternate_server=OTHER_SERVER)[0],
        OTHER_SERVER: make_server(alternate_server=SERVER)[0],
    }
    pair = Pair(servers=servers)
    pair.alloc.allocate(0.0)
    pair.pump(0.0)
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and event.code == 300
    assert isinstance(event.error, ErrorResponse)


# --------------------------------------------------------------------------- misuse and garbage


def test_misuse_raises_at_once() -> None:
    pair = Pair()
    with pytest.raises(LocalProtocolError):
        pair.alloc.send(b"x", PEER, 0.0)
    with pytest.raises(LocalProtocolError):
        pair.alloc.bind_channel(PEER, 0.0)
    pair.allocated()
    with pytest.raises(LocalProtocolError):
        pair.alloc.allocate(1.0)
    with pytest.raises(LocalProtocolError, match="IP"):
        pair.alloc.create_permission("turn.example.net", 1.0)
    with pytest.raises(LocalProtocolError, match="at most"):
        pair.alloc.send(bytes(MAX_SEND_SIZE + 1), PEER, 1.0)



@pytest.mark.parametrize("use_channels", [True, False])
def test_the_largest_data_fits_channel_data_and_indications(use_channels: bool) -> None:
    pair = allocated_pair(use_channels=use_channels)
    pair.alloc.send(bytes(MAX_SEND_SIZE), PEER, 1.0)
    pair.pump(1.0)
    assert pair.peer_data() == [(bytes(MAX_SEND_SIZE), RELAY, PEER)]


@pytest.mark.parametrize(
    "settings",
    [
        {"lifetime": 0},
        {"refresh_margin": 0.0},
        {"max_queued_per_peer": -1},
        {"allocate_timeout": 0.0},
        {"dual_allocation": True, "requested_family": IPV6},
        {"reservation_token": b"short"},
        {"reservation_token": bytes(8), "even_port": True},
    ],
)
def test_config_is_validated(settings: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        TurnClientConfig(**settings)


_STUN_HEADERS = st.sampled_from([b"\x00\x17", b"\x01\x03", b"\x01\x13", b"\x01\x09", b"\x00\x01"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.binary(max_size=64),
        st.binary(max_size=40).map(lambda b: b"\x40\x00" + b),
        st.tuples(_STUN_HEADERS, st.binary(max_size=60)).map(
            lambda t: t[0] + len(t[1]).to_bytes(2, "big") + b"\x21\x12\xa4\x42" + t[1]
        ),
    )
)
def test_garbage_never_raises_out_of_receive_datagram(data: bytes) -> None:
    pair = allocated_pair()
    pair.alloc.bind_channel(PEER, 1.0)
    pair.pump(1.0)
    pair.alloc.receive_datagram(data, None, SERVER, 2.0)
    assert pair.alloc.state is AllocationState.ALLOCATED
    pair.alloc.send(b"still fine", PEER, 3.0)
    assert pair.pump(3.0) == 1


# --------------------------------------------------------------------------- values from the server

SHA256_KEY = long_term_key("alice", REALM, PASSWORDS["alice"], PasswordAlgorithmId.SHA256)


def first_allocate_answered(*attributes: Attribute) -> Pair:
    """A client whose first, unauthenticated Allocate is answered with success and
    ``attributes`` (no key yet, so no integrity to check): a server free to say anything."""
    pair = Pair()
    pair.alloc.allocate(0.0)
    [request] = pair.alloc.datagrams_to_send(0.0)
    answer = decoded(request).success_response(list(attributes)).encode()
    pair.alloc.receive_datagram(answer, None, SERVER, 0.0)
    return pair


@pytest.mark.parametrize(
    "relayed",
    [Address("192.0.2.1", 0), Address("0.0.0.0", 50000), Address("224.0.0.1", 50000)],
    ids=str,
)
def test_a_relayed_address_no_datagram_can_reach_fails_the_allocation(relayed: Address) -> None:
    pair = first_allocate_answered(XorRelayedAddress(relayed), Lifetime(600))
    [event] = pair.events()
    assert isinstance(event, AllocationFailed) and "no datagram can reach" in str(event.error)
    assert pair.alloc.state is AllocationState.FAILED and pair.alloc.relayed == ()


def test_a_mapped_address_no_datagram_can_reach_is_left_out() -> None:
    pair = first_allocate_answered(
        XorRelayedAddress(RELAY), Lifetime(600), XorMappedAddress(Address("0.0.0.0", 0))
    )
    [event] = pair.events()
    assert isinstance(event, AllocationCreated) and event.mapped is None
    assert pair.alloc.mapped_address is None
    assert pair.alloc.dropped == {"unusable XOR-MAPPED-ADDRESS": 1}


def test_data_from_a_peer_no_datagram_can_reach_is_dropped() -> None:
    pair = allocated_pair()
    pair.alloc.create_permission(PEER.host, 1.0)
    pair.pump(1.0)
    pair.events()
    for sender in (Address(PEER.host, 0), PEER):
        indication = Message(
            Method.DATA, MessageClass.INDICATION, bytes(12), [XorPeerAddress(sender), Data(b"x")]
        )
        pair.alloc.receive_datagram(indication.encode(), None, SERVER, 2.0)
    assert pair.events() == [DataReceived(PEER, b"x", RELAY)]
    assert pair.alloc.dropped == {"unusable peer address": 1}


def test_channel_data_on_a_channel_that_failed_is_dropped() -> None:
    pair = allocated_pair()
    pair.lose = lambda datagram: True  # the ChannelBind goes unanswered and times out
    number = pair.alloc.bind_channel(PEER, 1.0)
    pair.pump(1.0)
    pair.advance(100.0)
    assert isinstance(pair.events()[0], ChannelFailed)
    pair.alloc.receive_datagram(encode_channel_data(number, b"late"), None, SERVER, 101.0)
    assert pair.events() == []
    assert pair.alloc.dropped["unknown channel"] == 1


def test_a_300_after_the_allocate_moves_nothing() -> None:
    """ALTERNATE-SERVER is for the Allocate (RFC 8656 §7.4): the allocation lives where it is,
    so a 300 to a Refresh is a failed Refresh, not a move."""
    pair = allocated_pair()
    pair.lose = lambda datagram: True
    pair.advance(540.0)
    refresh = decoded(pair.sent[-1])
    assert refresh.method == Method.REFRESH
    redirect = refresh.error_response(300, attributes=[AlternateServer(OTHER_SERVER)])
    pair.alloc.receive_datagram(
        redirect.encode(key=SHA256_KEY, integrity=Integrity.SHA256), None, SERVER, 540.1
    )
    assert pair.alloc.server == SERVER and pair.alloc.datagrams_to_send(540.1) == []
    assert pair.alloc.state is AllocationState.ALLOCATED and pair.events() == []


@pytest.mark.parametrize(
    "peer", [Address("203.0.113.9", 0), Address("0.0.0.0", 5000), Address("ff02::1", 5000)],
    ids=str,
)
def test_peers_no_datagram_can_reach_are_refused(peer: Address) -> None:
    pair = Pair(dual_allocation=True)
    pair.allocated()
    with pytest.raises(LocalProtocolError, match="no datagram"):
        pair.alloc.send(b"x", peer, 1.0)
    with pytest.raises(LocalProtocolError, match="no datagram"):
        pair.alloc.bind_channel(peer, 1.0)
    if peer.port:
        with pytest.raises(LocalProtocolError, match="no datagram"):
            pair.alloc.create_permission(peer, 1.0)
    else:
        pair.alloc.create_permission(peer, 1.0)  # a permission has no port (RFC 8656 §9)
    assert pair.alloc.channel_count == 0


def test_permissions_are_bounded() -> None:
    pair = allocated_pair(max_permissions=3, use_channels=False)
    peers = [make_address(f"203.0.113.{n}", 5000) for n in range(1, 6)]
    for peer in peers[:3]:
        pair.alloc.send(b"x", peer, 1.0)
    pair.alloc.send(b"x", peers[3], 1.0)
    assert pair.alloc.permission_count == 3
    assert pair.alloc.dropped == {"too many permissions": 1}
    with pytest.raises(LocalProtocolError, match="3 peers"):
        pair.alloc.create_permission(peers[4], 1.0)
    with pytest.raises(LocalProtocolError, match="3 peers"):
        pair.alloc.bind_channel(peers[4], 1.0)
    pair.alloc.send(b"y", peers[0], 1.0)  # one that has a permission is still served
    pair.pump(1.0)
    assert sorted((data, peer) for data, _, peer in pair.peer_data()) == sorted(
        [(b"x", peer) for peer in peers[:3]] + [(b"y", peers[0])]
    )


def test_staggered_permissions_are_each_refreshed_on_time() -> None:
    """The earliest lease deadline is cached (get_timer is on the per-datagram path); each
    refresh moves it to the next lease's."""
    pair = allocated_pair(use_channels=False)
    peers = [make_address(f"203.0.113.{n}", 5000) for n in range(1, 4)]
    for n, peer in enumerate(peers):
        pair.alloc.create_permission(peer.host, 10.0 * n)
        pair.pump(10.0 * n)
    pair.events()
    assert pair.alloc.get_timer() == 240.0  # 300 s, refreshed a minute early
    for early in (100.0, 239.9):
        pair.alloc.handle_timer(early)
        assert pair.alloc.datagrams_to_send(early) == []
    for n, peer in enumerate(peers):
        sent = len(pair.sent)
        pair.advance(240.0 + 10.0 * n)
        [refresh] = pair.sent[sent:]
        assert decoded(refresh).get(XorPeerAddress) == XorPeerAddress(Address(peer.host, 0))
        assert pair.alloc.get_timer() == (250.0 + 10.0 * n if n < 2 else 480.0)


def test_a_lifetime_beyond_an_hour_is_refreshed_as_an_hour() -> None:
    pair = first_allocate_answered(XorRelayedAddress(RELAY), Lifetime(0xFFFFFFFF))
    [event] = pair.events()
    assert isinstance(event, AllocationCreated) and event.lifetime == 3600.0
    assert pair.alloc.expires_at == 3600.0 and pair.alloc.get_timer() == 3540.0
