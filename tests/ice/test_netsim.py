"""The simulated network (ice.netsim) with real machines: the STUN Binding server on the WAN,
STUN client sessions behind every NAT kind, and a small endpoint machine for filtering and links.

Every scenario is seeded, so every count asserted here is exact and the same on every run.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from typing import NamedTuple

import pytest

from ice.errors import LocalProtocolError
from ice.netsim import (
    DEFAULT_WAN_LINK,
    DropReason,
    FilteringBehavior,
    Host,
    LinkConfig,
    MappingBehavior,
    Nat,
    NatBehavior,
    NatConfig,
    Network,
    PortAllocation,
)
from stun.address import Address
from stun.client import BindingResult, ClientConfig, ClientSession
from stun.datagram import Datagram
from stun.errors import TransactionTimeout
from stun.events import RequestFailed, RequestSucceeded
from stun.server import Outcome

SERVER = Address("192.0.2.1", 3478)
SERVER_OTHER_PORT = Address("192.0.2.1", 3479)
OTHER_SERVER = Address("192.0.2.2", 3478)


# --------------------------------------------------------------------------- small machines


class Received(NamedTuple):
    data: bytes
    local: Address | None
    remote: Address
    time: float


class Endpoint:
    """The smallest machine: records every datagram it receives and sends what it is told to."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._outgoing: list[Datagram] = []

    def send(self, data: bytes, remote: Address, local: Address | None = None) -> None:
        self._outgoing.append(Datagram(data, local, remote))

    def receive_datagram(
        self, data: bytes, local: Address | None, remote: Address, now: float
    ) -> None:
        self.received.append(Received(data, local, remote, now))

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        outgoing, self._outgoing = self._outgoing, []
        return outgoing

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> object | None:
        return None


class Ticker(Endpoint):
    """Sends a numbered datagram to ``remote`` every ``interval`` seconds, ``count`` times."""

    def __init__(self, remote: Address, interval: float, count: int) -> None:
        super().__init__()
        self.remote = remote
        self.interval = interval
        self.left = count
        self.sent = 0
        self.next_tick: float | None = 0.0

    def get_timer(self) -> float | None:
        return self.next_tick

    def handle_timer(self, now: float) -> None:
        if self.next_tick is None or now < self.next_tick:
            return
        self.send(self.sent.to_bytes(4, "big"), self.remote)
        self.sent += 1
        self.next_tick = now + self.interval if self.sent < self.left else None


class Busy(Endpoint):
    """A broken machine whose timer is always due: the network must still stop."""

    def __init__(self) -> None:
        super().__init__()
        self.handled = 0

    def get_timer(self) -> float | None:
        return 0.0

    def handle_timer(self, now: float) -> None:
        self.handled += 1


# --------------------------------------------------------------------------- helpers


def stun_client(seed: int = 1, server: Address = SERVER) -> ClientSession:
    return ClientSession(server, config=ClientConfig(rng=random.Random(seed)))


def run_to_event(net: Network, client: ClientSession, timeout: float = 5.0) -> object:
    """Run until ``client`` has an event; return it."""
    found: list[object] = []

    def arrived() -> bool:
        event = client.next_event()
        if event is not None:
            found.append(event)
        return bool(found)

    assert net.run_until(arrived, timeout)
    return found[0]


def ask(net: Network, client: ClientSession, server: Address) -> Address:
    """The reflexive address ``server`` sees for ``client``'s socket."""
    client.server = server
    client.request(now=net.now)
    event = run_to_event(net, client)
    assert isinstance(event, RequestSucceeded)
    mapped = BindingResult.from_response(event.response, event.rtt, event.server).mapped_address
    assert mapped is not None
    return mapped


def with_servers(
    seed: int = 7, wan_link: LinkConfig = DEFAULT_WAN_LINK, trace: bool = False
) -> Network:
    """A network with Binding servers at SERVER, SERVER_OTHER_PORT and OTHER_SERVER."""
    net = Network(seed, wan_link=wan_link, trace=trace)
    for address in (SERVER, SERVER_OTHER_PORT, OTHER_SERVER):
        net.add_stun_server(address)
    return net


def inversions(numbers: list[int]) -> int:
    """How many datagrams arrived right after one that was sent later."""
    return sum(1 for before, after in itertools.pairwise(numbers) if after < before)


# --------------------------------------------------------------------------- STUN through NATs


def test_a_public_host_sees_its_own_address_and_the_real_server_answers() -> None:
    net = with_servers()
    host = net.add_host("alice", ["198.51.100.7"])
    client = stun_client()
    host.attach(client, port=5000)
    server = net.add_stun_server(Address("192.0.2.9", 3478))

    assert ask(net, client, Address("192.0.2.9", 3478)) == Address("198.51.100.7", 5000)
    assert net.now == pytest.approx(0.020)  # two WAN crossings of 10 ms
    assert server.stats[Outcome.ANSWERED] == 1
    assert (net.stats.sent, net.stats.delivered, net.stats.dropped_total) == (2, 2, 0)


@pytest.mark.parametrize("behavior", list(NatBehavior))
def test_each_nat_kind_shows_its_public_address(behavior: NatBehavior) -> None:
    net = with_servers()
    host = net.add_host_behind("alice", behavior)
    client = stun_client()
    host.attach(client, port=5000)

    first = ask(net, client, SERVER)
    second = ask(net, client, OTHER_SERVER)

    if behavior is NatBehavior.OPEN:
        assert first == second == Address(host.addresses[0], 5000)
        return
    assert first.host == second.host == "203.0.113.1" != host.addresses[0]
    assert first.port != 5000  # no port preservation by default
    assert (first == second) is (behavior is not NatBehavior.SYMMETRIC)


@pytest.mark.parametrize(
    ("mapping", "same_for_other_port", "same_for_other_address"),
    [
        (MappingBehavior.ENDPOINT_INDEPENDENT, True, True),
        (MappingBehavior.ADDRESS_DEPENDENT, True, False),
        (MappingBehavior.ADDRESS_AND_PORT_DEPENDENT, False, False),
    ],
)
def test_mapping_behaviour(
    mapping: MappingBehavior, same_for_other_port: bool, same_for_other_address: bool
) -> None:
    net = with_servers()
    nat = net.add_nat("nat", NatConfig(mapping=mapping))
    client = stun_client()
    net.add_host("alice", lan=nat).attach(client, port=5000)

    first = ask(net, client, SERVER)
    assert ask(net, client, SERVER) == first  # the same destination always reuses the mapping
    assert (ask(net, client, SERVER_OTHER_PORT) == first) is same_for_other_port
    assert (ask(net, client, OTHER_SERVER) == first) is same_for_other_address
    expected_mappings = 1 + (not same_for_other_port) + (not same_for_other_address)
    assert len(nat.mappings) == expected_mappings


def test_nested_nats_show_the_outermost_public_address() -> None:
    net = with_servers()
    outer = net.add_nat("carrier", NatBehavior.PORT_RESTRICTED_CONE)
    inner = net.add_nat("home", NatBehavior.FULL_CONE, lan=outer)
    client = stun_client()
    host = net.add_host("alice", lan=inner)
    host.attach(client, port=5000)

    mapped = ask(net, client, SERVER)

    assert host.addresses == ("10.0.2.2",)
    assert inner.public_addresses == ("10.0.1.2",)  # an address on the carrier's LAN
    assert mapped.host == outer.public_addresses[0] == "203.0.113.1"
    assert [m.internal for m in outer.mappings] == [inner.mappings[0].external]
    assert net.now == pytest.approx(2 * (0.001 + 0.001 + 0.010))


def test_dual_stack_host_uses_its_public_ipv6_address_and_its_nat_for_ipv4() -> None:
    net = with_servers()
    v6_server = Address("2001:db8::1", 3478)
    net.add_stun_server(v6_server)
    nat = net.add_nat("nat", NatBehavior.SYMMETRIC)
    host = net.add_host("alice", lan=nat)
    assert host.add_address("2001:DB8:0::10", lan=None) == "2001:db8::10"
    client = stun_client()
    host.attach(client, port=5000)

    assert ask(net, client, v6_server) == Address("2001:db8::10", 5000)
    assert ask(net, client, SERVER).host == "203.0.113.1"


def test_stun_client_timers_run_on_the_virtual_clock() -> None:
    """With every datagram lost, the client's seven requests go out on RFC 8489's schedule and the
    request fails at 39.5 s (§6.2.1), seen by the on_event hook the moment it happens."""
    net = with_servers(wan_link=LinkConfig(loss=1.0))
    failures: list[tuple[float, object]] = []
    client = stun_client()
    net.add_host_behind("alice", NatBehavior.FULL_CONE).attach(
        client, on_event=lambda event: failures.append((net.now, event))
    )
    client.request(now=net.now)

    net.run(until=100.0)

    [(when, event)] = failures
    assert when == pytest.approx(39.5)
    assert isinstance(event, RequestFailed) and isinstance(event.error, TransactionTimeout)
    assert net.stats.sent == net.stats.dropped[DropReason.LOSS] == 7
    assert net.now == 100.0


def test_on_event_hook_may_give_commands() -> None:
    net = with_servers()
    client = stun_client()
    answers: list[float] = []

    def again(event: object) -> None:
        assert isinstance(event, RequestSucceeded)
        answers.append(net.now)
        if len(answers) < 3:
            client.request(now=net.now)

    net.add_host("alice").attach(client, on_event=again)
    client.request(now=net.now)
    net.run()

    assert answers == pytest.approx([0.02, 0.04, 0.06])
    assert client.next_event() is None  # the hook drained them


# --------------------------------------------------------------------------- filtering


def public_peers(net: Network) -> tuple[Endpoint, Endpoint, Endpoint]:
    """Endpoint machines at 198.51.100.10:4000 and :4001, and at 198.51.100.20:4000."""
    near = net.add_host("peer", ["198.51.100.10"])
    far = net.add_host("stranger", ["198.51.100.20"])
    peer, peer_other_port, stranger = Endpoint(), Endpoint(), Endpoint()
    near.attach(peer, port=4000)
    near.attach(peer_other_port, port=4001)
    far.attach(stranger, port=4000)
    return peer, peer_other_port, stranger


@pytest.mark.parametrize(
    ("filtering", "other_port_passes", "other_address_passes"),
    [
        (FilteringBehavior.ENDPOINT_INDEPENDENT, True, True),
        (FilteringBehavior.ADDRESS_DEPENDENT, True, False),
        (FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT, False, False),
    ],
)
def test_filtering_behaviour(
    filtering: FilteringBehavior, other_port_passes: bool, other_address_passes: bool
) -> None:
    net = Network(3)
    nat = net.add_nat("nat", NatConfig(filtering=filtering))
    inside = Endpoint()
    net.add_host("alice", lan=nat).attach(inside, port=5000)
    peer, peer_other_port, stranger = public_peers(net)

    inside.send(b"hello", Address("198.51.100.10", 4000))
    net.run()
    [hello] = peer.received
    mapped = hello.remote
    assert mapped.host == nat.public_addresses[0]
    for machine in (peer, peer_other_port, stranger):
        machine.send(b"to the mapping", mapped)
    net.run()

    senders = [r.remote for r in inside.received]
    expected = [Address("198.51.100.10", 4000)]
    if other_port_passes:
        expected.append(Address("198.51.100.10", 4001))
    if other_address_passes:
        expected.append(Address("198.51.100.20", 4000))
    assert senders == expected
    assert {r.local for r in inside.received} == {Address("10.0.1.2", 5000)}
    assert net.stats.dropped[DropReason.FILTERED] == 3 - len(expected)


@pytest.mark.parametrize("behavior", [b for b in NatBehavior if b is not NatBehavior.OPEN])
def test_unsolicited_inbound_finds_no_mapping(behavior: NatBehavior) -> None:
    net = Network(3)
    host = net.add_host_behind("alice", behavior)
    inside = Endpoint()
    host.attach(inside, port=5000)
    _, _, stranger = public_peers(net)

    stranger.send(b"knock knock", Address("203.0.113.1", 5000))
    net.run()

    assert inside.received == []
    assert net.stats.dropped[DropReason.NO_MAPPING] == 1


# --------------------------------------------------------------------------- hairpinning


@pytest.mark.parametrize("hairpinning", [True, False])
def test_hairpinning(hairpinning: bool) -> None:
    net = Network(5)
    config = dataclasses.replace(NatConfig(), hairpinning=hairpinning)
    nat = net.add_nat("nat", config)
    alice, bob, public = Endpoint(), Endpoint(), Endpoint()
    net.add_host("alice", lan=nat).attach(alice, port=5000)
    net.add_host("bob", lan=nat).attach(bob, port=5000)
    net.add_host("server", ["198.51.100.10"]).attach(public, port=4000)
    bob.send(b"open a mapping", Address("198.51.100.10", 4000))
    net.run()
    [bob_mapping] = [m.external for m in nat.mappings]

    sent_at = net.now
    alice.send(b"hi bob", bob_mapping)
    net.run()

    if not hairpinning:
        assert bob.received == []
        assert net.stats.dropped[DropReason.NO_HAIRPINNING] == 1
        return
    [hi] = bob.received
    alice_mapping = next(m.external for m in nat.mappings if m.internal.host == "10.0.1.2")
    assert hi.remote == alice_mapping  # the external source address and port (RFC 4787 REQ-9)
    assert hi.time - sent_at == pytest.approx(0.002)  # two LAN crossings, never on the WAN
    assert public.received[0].remote == bob_mapping


# --------------------------------------------------------------------------- binding lifetime


def expiry_scenario(
    config: NatConfig,
) -> tuple[Network, Nat, Endpoint, Endpoint, Address]:
    net = Network(11)
    nat = net.add_nat("nat", config)
    inside, peer = Endpoint(), Endpoint()
    net.add_host("alice", lan=nat).attach(inside, port=5000)
    net.add_host("peer", ["198.51.100.10"]).attach(peer, port=4000)
    inside.send(b"open", Address("198.51.100.10", 4000))
    net.run()
    return net, nat, inside, peer, peer.received[0].remote


def test_a_mapping_expires_after_its_lifetime_without_outbound_traffic() -> None:
    net, nat, inside, peer, mapped = expiry_scenario(NatConfig(binding_lifetime=30.0))

    net.run(until=29.0)
    peer.send(b"still there?", mapped)
    net.run(until=31.0)
    assert len(inside.received) == 1  # inbound traffic does not refresh the mapping...
    peer.send(b"and now?", mapped)
    net.run(until=32.0)
    assert len(inside.received) == 1  # ...so it is gone 30 s after the last outbound datagram
    assert net.stats.dropped[DropReason.NO_MAPPING] == 1
    assert nat.mappings == ()

    inside.send(b"again", Address("198.51.100.10", 4000))
    net.run(until=33.0)
    new_mapping = peer.received[-1].remote
    assert new_mapping.host == mapped.host
    assert (mapped.port, new_mapping.port) == (30671, 57761)  # from the seeded RNG


def test_outbound_traffic_refreshes_a_mapping() -> None:
    net, _, inside, peer, mapped = expiry_scenario(NatConfig(binding_lifetime=30.0))

    for when in (20.0, 40.0, 60.0):
        net.run(until=when)
        inside.send(b"keepalive", Address("198.51.100.10", 4000))
    net.run(until=85.0)
    peer.send(b"still there?", mapped)
    net.run(until=86.0)

    assert {r.remote for r in peer.received} == {mapped}
    assert inside.received[-1].data == b"still there?"


def test_inbound_refresh_when_configured() -> None:
    config = NatConfig(binding_lifetime=30.0, inbound_refresh=True)
    net, _, inside, peer, mapped = expiry_scenario(config)

    for when in (25.0, 50.0):
        net.run(until=when)
        peer.send(b"ping", mapped)
    net.run(until=70.0)

    assert [r.data for r in inside.received] == [b"ping", b"ping"]


# --------------------------------------------------------------------------- port allocation


def test_port_preservation_keeps_the_internal_port_while_it_is_free() -> None:
    net = Network(2)
    nat = net.add_nat("nat", NatConfig(port_preservation=True))
    peer = Endpoint()
    net.add_host("peer", ["198.51.100.10"]).attach(peer, port=4000)
    first, second = Endpoint(), Endpoint()
    net.add_host("alice", lan=nat).attach(first, port=5000)
    net.add_host("bob", lan=nat).attach(second, port=5000)

    first.send(b"a", Address("198.51.100.10", 4000))
    second.send(b"b", Address("198.51.100.10", 4000))
    net.run()

    ports = [r.remote.port for r in peer.received]
    assert ports[0] == 5000
    assert ports[1] != 5000  # taken: the second host gets another port (no port overloading)


def test_sequential_allocation_and_exhaustion() -> None:
    net = Network(2)
    config = NatConfig(port_allocation=PortAllocation.SEQUENTIAL, port_range=(40000, 40001))
    nat = net.add_nat("nat", config)
    peer = Endpoint()
    net.add_host("peer", ["198.51.100.10"]).attach(peer, port=4000)
    senders = [Endpoint() for _ in range(3)]
    for index, sender in enumerate(senders):
        net.add_host(f"host{index}", lan=nat).attach(sender, port=5000)
        sender.send(b"x", Address("198.51.100.10", 4000))
    net.run()

    assert [r.remote.port for r in peer.received] == [40000, 40001]
    assert net.stats.dropped[DropReason.PORTS_EXHAUSTED] == 1


# --------------------------------------------------------------------------- link impairments


def blast(seed: int, wan: LinkConfig, count: int = 1000, interval: float = 0.001) -> list[int]:
    """Send ``count`` numbered datagrams across the WAN; return the numbers in arrival order."""
    net = Network(seed, wan_link=wan)
    sink = Endpoint()
    net.add_host("sink", ["198.51.100.10"]).attach(sink, port=4000)
    ticker = Ticker(Address("198.51.100.10", 4000), interval, count)
    net.add_host("source").attach(ticker)
    net.run()
    assert net.stats.sent == count
    assert net.stats.delivered == len(sink.received)
    return [int.from_bytes(r.data, "big") for r in sink.received]


def test_loss_is_random_but_exactly_reproducible() -> None:
    arrived = blast(1, LinkConfig(delay=0.01, loss=0.3))
    assert len(arrived) == 720
    assert arrived == sorted(arrived)  # no jitter: whatever arrives, arrives in order
    assert blast(1, LinkConfig(delay=0.01, loss=0.3)) == arrived
    assert len(blast(2, LinkConfig(delay=0.01, loss=0.3))) == 713


def test_duplication() -> None:
    arrived = blast(1, LinkConfig(delay=0.01, duplicate=0.1))
    assert len(arrived) == 1000 + 95
    assert set(arrived) == set(range(1000))


def test_jitter_reorders_datagrams_sent_closer_than_it() -> None:
    assert inversions(blast(1, LinkConfig(delay=0.01, jitter=0.005))) == 320
    assert inversions(blast(1, LinkConfig(delay=0.01, jitter=0.005), interval=0.01)) == 0


def test_reorder_probability_holds_some_datagrams_back() -> None:
    arrived = blast(1, LinkConfig(delay=0.01, reorder=0.05, reorder_delay=0.01))
    assert sorted(arrived) == list(range(1000))
    assert inversions(arrived) == 54


def test_impairments_apply_per_realm() -> None:
    net = Network(4)
    nat = net.add_nat("nat", NatBehavior.FULL_CONE, link=LinkConfig(delay=0.005, loss=1.0))
    sink = Endpoint()
    net.add_host("sink", ["198.51.100.10"]).attach(sink, port=4000)
    lan_ticker = Ticker(Address("198.51.100.10", 4000), 0.1, 10)
    wan_ticker = Ticker(Address("198.51.100.10", 4000), 0.1, 10)
    net.add_host("inside", lan=nat).attach(lan_ticker)
    net.add_host("outside").attach(wan_ticker)
    net.run()
    assert len(sink.received) == 10
    assert net.stats.dropped[DropReason.LOSS] == 10

    nat.lan.link = LinkConfig(delay=0.005)
    lan_ticker.left, lan_ticker.next_tick = 20, net.now
    net.run()
    assert len(sink.received) == 20
    assert {r.remote.host for r in sink.received[10:]} == {nat.public_addresses[0]}


# --------------------------------------------------------------------------- determinism


def busy_scenario(seed: int) -> Network:
    net = with_servers(seed, wan_link=LinkConfig(delay=0.02, jitter=0.01, loss=0.2), trace=True)
    for index, behavior in enumerate(NatBehavior):
        client = stun_client(seed=index)
        net.add_host_behind(f"host{index}", behavior).attach(client)
        for server in (SERVER, OTHER_SERVER):
            client.server = server
            client.request(now=0.0)
    net.run(until=60.0)
    return net


def test_same_seed_same_trace_different_seed_different_trace() -> None:
    first, again, other = busy_scenario(4), busy_scenario(4), busy_scenario(5)

    assert (first.stats.sent, first.stats.dropped[DropReason.LOSS]) == (29, 7)
    assert first.trace == again.trace
    assert first.stats == again.stats
    assert (other.stats.sent, other.stats.dropped[DropReason.LOSS]) == (35, 10)
    assert first.trace != other.trace


def test_equal_times_run_in_insertion_order() -> None:
    net = Network(0)
    order: list[str] = []
    for name in ("first", "second", "third"):
        net.call_at(1.0, functools.partial(order.append, name))
    net.call_at(0.5, lambda: order.append("earlier"))
    net.run()
    assert order == ["earlier", "first", "second", "third"]
    assert net.now == 1.0


# --------------------------------------------------------------------------- driving


def test_run_is_bounded_by_max_events() -> None:
    net = Network(0)
    busy = Busy()
    net.add_host("busy").attach(busy)

    assert net.run(max_events=50) == 50
    assert busy.handled == 50
    assert net.now == 0.0
    assert not net.run_until(lambda: False, timeout=1.0, max_events=10)
    assert busy.handled == 60


def test_run_until() -> None:
    net = with_servers()
    client = stun_client()
    net.add_host("alice").attach(client)
    client.request(now=net.now)

    assert net.run_until(lambda: client.next_event() is not None, timeout=1.0)
    assert net.now == pytest.approx(0.02)
    assert not net.run_until(lambda: False, timeout=2.5)
    assert net.now == pytest.approx(2.52)


def test_call_at_may_give_commands() -> None:
    net = with_servers()
    client = stun_client()
    net.add_host("alice").attach(client)

    def later() -> None:
        client.request(now=net.now)

    net.call_at(5.0, later)

    assert isinstance(run_to_event(net, client, timeout=10.0), RequestSucceeded)
    assert net.now == pytest.approx(5.02)


def test_detached_machines_get_nothing() -> None:
    net = Network(0)
    ticker = Ticker(Address("198.51.100.10", 4000), 1.0, 10)
    attachment = net.add_host("alice").attach(ticker)
    sink = Endpoint()
    net.add_host("sink", ["198.51.100.10"]).attach(sink, port=4000)
    net.run(until=2.5)
    attachment.detach()
    net.run(until=10.0)

    assert ticker.sent == 3
    sink.send(b"reply", Address(attachment.host.addresses[0], attachment.port))
    net.run()
    assert net.stats.dropped[DropReason.PORT_UNREACHABLE] == 1


# --------------------------------------------------------------------------- drops and misuse


def test_unknown_destinations_are_counted() -> None:
    net = Network(0)
    nat = net.add_nat("nat", NatBehavior.FULL_CONE)
    public, inside = Endpoint(), Endpoint()
    net.add_host("public", ["198.51.100.10"]).attach(public, port=4000)
    net.add_host("inside", lan=nat).attach(inside, port=5000)

    public.send(b"nobody", Address("192.0.2.99", 1))
    public.send(b"closed port", Address("198.51.100.10", 4001))
    public.send(b"wrong family", Address("2001:db8::99", 1))
    inside.send(b"another LAN's address", Address("10.0.2.2", 1))
    net.run()

    assert net.stats.dropped[DropReason.NO_ROUTE] == 3
    assert net.stats.dropped[DropReason.PORT_UNREACHABLE] == 1
    assert net.stats.delivered == 0


def test_firewall_blocks_between_two_addresses_until_unblocked() -> None:
    net = Network(0)
    left, right = Endpoint(), Endpoint()
    net.add_host("left", ["198.51.100.10"]).attach(left, port=4000)
    net.add_host("right", ["198.51.100.20"]).attach(right, port=4000)
    net.block("198.51.100.10", "198.51.100.20")
    right.send(b"blocked", Address("198.51.100.10", 4000))
    net.run()
    net.unblock("198.51.100.10", "198.51.100.20")
    right.send(b"open", Address("198.51.100.10", 4000))
    net.run()
    net.block("198.51.100.20")
    left.send(b"blocked again", Address("198.51.100.20", 4000))
    net.run()

    assert [r.data for r in left.received] == [b"open"]
    assert right.received == []
    assert net.stats.dropped[DropReason.FIREWALL] == 2


def test_local_addresses_are_checked() -> None:
    net = Network(0)
    host: Host = net.add_host("alice", ["198.51.100.10", "2001:db8::10"])
    echo = Endpoint()
    attachment = host.attach(echo, port=4000)

    with pytest.raises(LocalProtocolError, match="already bound"):
        host.attach(Endpoint(), port=4000)
    echo.send(b"", Address("192.0.2.1", 1), local=Address("198.51.100.99", 4000))
    with pytest.raises(LocalProtocolError, match="no address"):
        net.run()
    echo.send(b"", Address("192.0.2.1", 1), local=Address("198.51.100.10", 4001))
    with pytest.raises(LocalProtocolError, match="not bound"):
        net.run()
    attachment.bind(4001)
    echo.send(b"", Address("192.0.2.1", 1), local=Address("2001:db8::10", 4001))
    net.run()
    assert net.stats.dropped[DropReason.NO_ROUTE] == 1  # a v6 source cannot reach a v4 address


def test_building_mistakes_raise() -> None:
    net = Network(0)
    net.add_host("alice", ["198.51.100.10"])
    with pytest.raises(LocalProtocolError, match="taken"):
        net.add_host("alice")
    with pytest.raises(LocalProtocolError, match="already in use"):
        net.add_host("bob", ["198.51.100.10"])
    with pytest.raises(LocalProtocolError, match="no NAT"):
        net.add_nat("nat", NatBehavior.OPEN)
    with pytest.raises(LocalProtocolError, match="at least one address"):
        net.add_host("carol", [])
    with pytest.raises(LocalProtocolError, match="probability"):
        LinkConfig(loss=1.5)
    with pytest.raises(LocalProtocolError, match="positive"):
        NatConfig(binding_lifetime=0)
    with pytest.raises(LocalProtocolError, match="port_range"):
        NatConfig(port_range=(2000, 1000))


def test_nat_behavior_names_for_the_command_line() -> None:
    assert [b.value for b in NatBehavior] == [
        "none",
        "full-cone",
        "restricted",
        "port-restricted",
        "symmetric",
    ]
    assert NatBehavior.parse("port-restricted") is NatBehavior.PORT_RESTRICTED_CONE
    assert NatBehavior.parse(" SYMMETRIC ") is NatBehavior.SYMMETRIC
    assert NatBehavior.parse("restricted_cone") is NatBehavior.RESTRICTED_CONE
    with pytest.raises(LocalProtocolError, match="full-cone"):
        NatBehavior.parse("cone")
    assert NatBehavior.OPEN.config is None
    symmetric = NatBehavior.SYMMETRIC.config
    assert symmetric is not None
    assert symmetric.mapping is MappingBehavior.ADDRESS_AND_PORT_DEPENDENT
    assert symmetric.filtering is FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT
