"""RFC 5780 behaviour discovery on the simulated network: our discovery machine against our
Binding server with two addresses, through every RFC 4787 mapping and filtering behaviour of an
``ice.netsim`` NAT, with and without hairpinning, and binding lifetimes (a table test), plus the
runs that cannot conclude and must say why."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from ice.netsim import FilteringBehavior, MappingBehavior, NatConfig, Network
from stun.address import Address
from stun.behavior import BehaviorAddresses
from stun.discovery import NatDiscovery
from stun.discovery_results import (
    Behavior,
    DiscoveryConfig,
    DiscoveryFinished,
    DiscoveryProgressed,
    DiscoveryResult,
    Lifetime,
)
from stun.server import BindingServer, ServerConfig

PRIMARY = Address("192.0.2.1", 3478)
ALTERNATE = Address("192.0.2.2", 3479)
FAST = DiscoveryConfig(test_timeout=1.0)


def discover(
    nat: NatConfig | None,
    *,
    config: DiscoveryConfig = FAST,
    behavior: bool = True,
    block_udp: bool = False,
    seed: int = 5,
) -> tuple[DiscoveryResult, list[str]]:
    """One discovery run from a host behind ``nat`` (on the WAN if ``None``)."""
    net = Network(seed)
    server_host = net.add_host("stun", [PRIMARY.host, ALTERNATE.host])
    addresses = BehaviorAddresses(primary=PRIMARY, alternate=ALTERNATE) if behavior else None
    server = BindingServer(ServerConfig(behavior=addresses, rng=random.Random(seed)))
    attachment = server_host.attach(server, port=PRIMARY.port)
    attachment.bind(ALTERNATE.port)
    client_host = net.add_host("client") if nat is None else net.add_host_behind("client", nat)
    local = Address(client_host.addresses[0], 40000)
    discovery = NatDiscovery(
        PRIMARY,
        local=local,
        second=Address(local.host, 40001),
        config=config,
        rng=random.Random(seed),
    )
    client = client_host.attach(discovery, port=40000)
    client.bind(40001)
    if block_udp:
        net.block(client_host.addresses[0], transport="udp")
    discovery.start(net.now)
    assert net.run_until(lambda: discovery.result is not None, timeout=3600)
    events = []
    while (event := discovery.next_event()) is not None:
        events.append(event)
    assert isinstance(events[-1], DiscoveryFinished)
    assert discovery.result is not None
    progress = [e.message for e in events if isinstance(e, DiscoveryProgressed)]
    return discovery.result, progress


EIM, ADM, APDM = (
    MappingBehavior.ENDPOINT_INDEPENDENT,
    MappingBehavior.ADDRESS_DEPENDENT,
    MappingBehavior.ADDRESS_AND_PORT_DEPENDENT,
)
EIF, ADF, APDF = (
    FilteringBehavior.ENDPOINT_INDEPENDENT,
    FilteringBehavior.ADDRESS_DEPENDENT,
    FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT,
)
VERDICT = {
    EIM: Behavior.ENDPOINT_INDEPENDENT,
    ADM: Behavior.ADDRESS_DEPENDENT,
    APDM: Behavior.ADDRESS_AND_PORT_DEPENDENT,
    EIF: Behavior.ENDPOINT_INDEPENDENT,
    ADF: Behavior.ADDRESS_DEPENDENT,
    APDF: Behavior.ADDRESS_AND_PORT_DEPENDENT,
}


@pytest.mark.parametrize("hairpinning", [True, False])
@pytest.mark.parametrize("filtering", [EIF, ADF, APDF])
@pytest.mark.parametrize("mapping", [EIM, ADM, APDM])
def test_every_mapping_and_filtering_behaviour_is_told(
    mapping: MappingBehavior, filtering: FilteringBehavior, hairpinning: bool
) -> None:
    result, _ = discover(NatConfig(mapping=mapping, filtering=filtering, hairpinning=hairpinning))
    assert result.nat is True
    assert result.mapping.verdict is VERDICT[mapping], result.mapping
    assert result.filtering.verdict is VERDICT[filtering], result.filtering
    assert result.mapping.evidence and result.filtering.evidence
    # The hairpinned request leaves through the mapping for the NAT's own address; when the
    # mapping depends on the destination that is a new mapping, whose packets the first
    # mapping's address-(and-port-)dependent filter drops, as a real NAT's would.
    passes_filter = mapping is EIM or filtering is EIF
    assert result.hairpinning.verdict is (hairpinning and passes_filter)
    assert result.lifetime is None


def test_no_nat_is_endpoint_independent_and_hairpinning_does_not_apply() -> None:
    result, _ = discover(None)
    assert result.nat is False
    assert result.mapped_address == result.local
    assert result.mapping.verdict is Behavior.ENDPOINT_INDEPENDENT
    assert result.filtering.verdict is Behavior.ENDPOINT_INDEPENDENT
    assert result.hairpinning.verdict is None
    assert result.hairpinning.reason == "there is no NAT between us and the server"


@pytest.mark.parametrize(
    ("lifetime", "filtering"), [(30.0, APDF), (75.0, EIF), (400.0, ADF)]
)
def test_binding_lifetime_is_bracketed_by_a_binary_search(
    lifetime: float, filtering: FilteringBehavior
) -> None:
    config = replace(FAST, lifetime=True, lifetime_max=180.0, lifetime_resolution=5.0)
    nat = NatConfig(mapping=EIM, filtering=filtering, binding_lifetime=lifetime)
    result, progress = discover(nat, config=config)
    assert result.lifetime is not None
    found = result.lifetime.verdict
    assert isinstance(found, Lifetime), result.lifetime
    if lifetime > config.lifetime_max:
        assert found == Lifetime(config.lifetime_max, None)
    else:
        assert found.expired_after is not None
        assert found.alive_after < lifetime <= found.expired_after + 0.1
        assert found.expired_after - found.alive_after <= config.lifetime_resolution
    assert any("waiting" in line for line in progress)  # the long waits show as progress
    assert result.lifetime.evidence


def test_a_server_without_the_second_address_leaves_mapping_and_filtering_undetermined() -> None:
    result, _ = discover(NatConfig(mapping=APDM, filtering=APDF), behavior=False)
    assert result.mapped_address is not None
    assert result.other_address is None
    for finding in (result.mapping, result.filtering):
        assert finding.verdict is None
        assert finding.reason is not None and "no OTHER-ADDRESS" in finding.reason
    assert result.hairpinning.verdict is False  # still tested: it needs no second address


def test_udp_blocked_leaves_everything_undetermined_and_says_so() -> None:
    result, _ = discover(NatConfig(), block_udp=True)
    assert result.nat is None and result.mapped_address is None
    for finding in (result.mapping, result.filtering, result.hairpinning):
        assert finding.verdict is None
        assert finding.reason is not None and "UDP to it is blocked" in finding.reason
