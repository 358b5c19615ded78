"""Advertised addresses (:mod:`stun.advertised`): ICE host candidates offered with a 1:1 NAT's
public address, the TURN server's ``--external-ip`` in XOR-RELAYED-ADDRESS. A real 1:1 NAT in
namespaces: ``test_an_ice_lite_server_behind_a_1to1_nat_offers_its_public_address`` in
``tests/net/test_namespaces.py``."""

from __future__ import annotations

import pytest

from ice import LocalProtocolError
from ice.agent import Agent
from ice.config import AgentConfig
from ice.events import CandidateGathered
from stun import Address
from stun.advertised import AdvertisedAddress, advertise, parse_advertised
from stun.errors import LocalProtocolError as StunLocalProtocolError
from tests.ice.test_connection import gathered
from tests.net.loopback import run
from tests.turn.harness import RELAY, Client, make_server, relayed

PUBLIC = "203.0.113.7"


def test_the_text_forms_and_which_address_a_host_gets() -> None:
    table = (
        parse_advertised("203.0.113.7"),
        parse_advertised("198.51.100.9/10.0.0.9"),
        parse_advertised("[2001:db8::7]"),
    )
    assert table[1] == AdvertisedAddress("198.51.100.9", "10.0.0.9")
    assert str(table[1]) == "198.51.100.9/10.0.0.9"
    assert advertise(table, "10.0.0.9") == "198.51.100.9"  # its own mapping first
    assert advertise(table, "10.0.0.5") == "203.0.113.7"  # the family's catch-all
    assert advertise(table, "fd00::5") == "2001:db8::7"
    assert advertise(table[1:2], "10.0.0.5") == "10.0.0.5"  # nothing for it: itself


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("public", "not an IP address"),
        ("203.0.113.7/fd00::1", "mixes IPv4 and IPv6"),
        (("203.0.113.7",), "text"),
    ],
)
def test_bad_forms_are_refused_naming_the_argument(value: object, problem: str) -> None:
    with pytest.raises(StunLocalProtocolError, match=f"external_addresses: .*{problem}"):
        parse_advertised(value, "external_addresses")
    with pytest.raises(LocalProtocolError, match=f"advertised_addresses: .*{problem}"):
        AgentConfig(advertised_addresses=(value,))  # type: ignore[arg-type]


def test_two_public_addresses_for_one_local_address_are_refused() -> None:
    with pytest.raises(LocalProtocolError, match="two public addresses for any IPv4"):
        AgentConfig(advertised_addresses=("203.0.113.7", "203.0.113.8"))  # type: ignore[arg-type]


def test_host_candidates_carry_the_public_address_and_keep_their_base() -> None:
    agent = Agent(AgentConfig(advertised_addresses=(f"{PUBLIC}/10.0.0.5",), tcp_types=()))  # type: ignore[arg-type]
    agent.add_base(0, 1, Address("10.0.0.5", 40000))
    agent.add_base(0, 1, Address("10.0.1.5", 40001))
    agent.gather(0.0)
    gathered = []
    while (event := agent.next_event()) is not None:
        if isinstance(event, CandidateGathered):
            gathered.append(event.candidate)
    assert {(c.host, c.port, c.base) for c in gathered} == {
        (PUBLIC, 40000, Address("10.0.0.5", 40000)),
        ("10.0.1.5", 40001, Address("10.0.1.5", 40001)),  # not mapped: offered as it is
    }


def test_a_connection_offers_its_host_candidates_with_the_public_address() -> None:
    """Only the offer here: on loopback no NAT brings the public address back to the socket
    (the namespace test connects through one)."""

    async def main() -> None:
        async with gathered(advertised_addresses=[PUBLIC]) as (a, _):
            assert {(c.type.value, c.host) for c in a.local_candidates} == {("host", PUBLIC)}
            assert {c.transport for c in a.local_candidates} == {"udp", "tcp"}
            assert {c.base.host for c in a.agent.local_candidates} == {"127.0.0.1"}

    run(main())


def test_the_turn_server_reports_relayed_addresses_with_its_external_ip() -> None:
    server, _ = make_server(external_addresses=(f"{PUBLIC}/{RELAY.host}",))
    response = Client(server).allocate()
    assert relayed(response) == [Address(PUBLIC, RELAY.port)]
    plain, _ = make_server()
    assert relayed(Client(plain).allocate()) == [RELAY]
