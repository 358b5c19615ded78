"""Enum-typed fields of ice's public API take the enum's value strings, or refuse at once.

``Candidate(type="host", ...)`` used to be accepted unconverted and fail later in ``to_sdp()``
with an AttributeError; ``AgentConfig(policy="relay")`` was silently taken as "all".
"""

from __future__ import annotations

import pytest

from ice import Candidate, CandidateType, LocalProtocolError, TcpType, compute_foundation
from ice.config import AgentConfig, Policy
from ice.netsim import FilteringBehavior, MappingBehavior, NatBehavior, NatConfig, Network


def test_candidate_type_and_tcptype_take_their_strings() -> None:
    candidate = Candidate("1", 1, "tcp", 5, "192.0.2.1", 9, "host", tcp_type="active")  # type: ignore[arg-type]
    assert candidate.type is CandidateType.HOST and candidate.tcp_type is TcpType.ACTIVE
    assert candidate.to_sdp() == "1 1 tcp 5 192.0.2.1 9 typ host tcptype active"
    assert candidate == Candidate(
        "1", 1, "tcp", 5, "192.0.2.1", 9, CandidateType.HOST, tcp_type=TcpType.ACTIVE
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": "HOST"}, "type 'HOST' is not one of 'host', 'srflx', 'prflx', 'relay'"),
        ({"type": 1}, "type 1 is not one of"),
        ({"transport": "tcp", "tcp_type": "passiv"}, "tcptype 'passiv' is not one of"),
        ({"priority": "5"}, "priority must be an int"),
        ({"port": True}, "port must be an int"),
        ({"foundation": 1}, "foundation must be a str"),
    ],
)
def test_candidate_fields_of_the_wrong_kind_are_refused_at_construction(
    fields: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "foundation": "1", "component": 1, "transport": "udp", "priority": 5,
        "host": "192.0.2.1", "port": 9, "type": CandidateType.HOST,
    }
    arguments.update(fields)
    with pytest.raises(LocalProtocolError, match=message):
        Candidate(**arguments)  # type: ignore[arg-type]


def test_agent_config_policy_takes_its_strings() -> None:
    assert AgentConfig(policy="relay").policy is Policy.RELAY  # type: ignore[arg-type]
    assert AgentConfig(policy="all").policy is Policy.ALL  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError, match="policy 'relay-only' is not one of"):
        AgentConfig(policy="relay-only")  # type: ignore[arg-type]


def test_netsim_nat_fields_take_their_strings() -> None:
    config = NatConfig(mapping="address-dependent", filtering="endpoint-independent")  # type: ignore[arg-type]
    assert config.mapping is MappingBehavior.ADDRESS_DEPENDENT
    assert config.filtering is FilteringBehavior.ENDPOINT_INDEPENDENT
    with pytest.raises(LocalProtocolError, match="port_allocation 'linear'"):
        NatConfig(port_allocation="linear")  # type: ignore[arg-type]
    network = Network(seed=1)
    host = network.add_host_behind("alice", "symmetric")  # type: ignore[arg-type]
    assert host.name == "alice"
    with pytest.raises(LocalProtocolError, match="NAT behaviour 'cone'"):
        network.add_host_behind("bob", "cone")  # type: ignore[arg-type]
    assert NatBehavior("symmetric") is NatBehavior.SYMMETRIC


def test_compute_foundation_takes_the_type_string() -> None:
    assert compute_foundation("srflx", "192.0.2.1", "udp") == compute_foundation(  # type: ignore[arg-type]
        CandidateType.SERVER_REFLEXIVE, "192.0.2.1", "udp"
    )
    with pytest.raises(LocalProtocolError, match="candidate type 'stun'"):
        compute_foundation("stun", "192.0.2.1", "udp")  # type: ignore[arg-type]
