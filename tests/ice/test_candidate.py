"""ice.candidate: candidate lines as browsers and aioice write them, the RFC 8445 numbers (priority,
local preference, foundation, redundancy, pair priority) and the RFC 8839 session attributes.

Round trips and "garbage raises only DecodeError" are hypothesis properties at the end.
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ice
from ice import (
    ICE_CHARS,
    TYPE_PREFERENCE,
    Candidate,
    CandidateType,
    DecodeError,
    IceDescription,
    LocalProtocolError,
    TcpType,
    UnsupportedCandidateError,
    candidate_priority,
    compute_foundation,
    eliminate_redundant,
    generate_credentials,
    local_preferences,
    pair_priority,
    validate_pwd,
    validate_ufrag,
)
from stun import Address
from stun.randomness import default_random

aioice = pytest.importorskip("aioice")

REPO_ROOT = Path(__file__).resolve().parents[2]
CONSTANTS: dict[str, Any] = json.loads(
    (REPO_ROOT / "rfc_vectors" / "constants.json").read_text(encoding="utf-8")
)
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MDNS_NAME = "4d5e6f70-1234-5678-9abc-def012345678.local"


def host_candidate(host: str = "10.0.0.1", port: int = 5000, **fields: Any) -> Candidate:
    values: dict[str, Any] = {
        "foundation": "1", "component": 1, "transport": "udp", "priority": 2130706431,
        "host": host, "port": port, "type": CandidateType.HOST,
    }
    values.update(fields)
    return Candidate(**values)


# --------------------------------------------------------------------------- real-world lines

# Lines as Chrome writes them (lower-case transport, generation/ufrag/network-id/network-cost):
# already in our canonical form, so they must come back byte for byte.
CHROME_LINES = [
    "candidate:3885250869 1 udp 2122260223 192.168.1.10 54321 typ host generation 0 ufrag EsAw "
    "network-id 1 network-cost 10",
    "candidate:842163049 1 udp 1686052607 203.0.113.7 61665 typ srflx raddr 192.168.1.10 "
    "rport 54321 generation 0 ufrag EsAw network-id 1 network-cost 10",
    "candidate:1234567890 1 udp 41885439 198.51.100.20 3478 typ relay raddr 203.0.113.7 "
    "rport 61665 generation 0 ufrag EsAw network-id 1 network-cost 10",
    "candidate:1051295206 1 tcp 1518280447 192.168.1.10 9 typ host tcptype active generation 0 "
    "ufrag EsAw network-id 1 network-cost 10",
    "candidate:2999745851 1 udp 2122194687 2001:db8::1 56789 typ host generation 0 ufrag EsAw "
    "network-id 2 network-cost 10",
    # With mDNS obfuscation Chrome hides the related address of srflx candidates.
    "candidate:3098175849 1 udp 1686052607 203.0.113.7 61665 typ srflx raddr 0.0.0.0 rport 0 "
    "generation 0 ufrag EsAw network-id 1 network-cost 10",
    f"candidate:1 1 udp 2122260223 {MDNS_NAME} 54321 typ host generation 0",
]


@pytest.mark.parametrize("line", CHROME_LINES)
def test_chrome_lines_round_trip_byte_for_byte(line: str) -> None:
    candidate = Candidate.from_sdp(line)
    assert "candidate:" + candidate.to_sdp() == line
    assert Candidate.from_sdp("a=" + line) == candidate
    assert Candidate.from_sdp(line.removeprefix("candidate:")) == candidate


def test_chrome_srflx_fields() -> None:
    candidate = Candidate.from_sdp(CHROME_LINES[1])
    assert candidate == Candidate(
        "842163049", 1, "udp", 1686052607, "203.0.113.7", 61665, CandidateType.SERVER_REFLEXIVE,
        related_address=Address("192.168.1.10", 54321),
        generation=0,
        extensions=(("ufrag", "EsAw"), ("network-id", "1"), ("network-cost", "10")),
    )
    assert candidate.address == Address("203.0.113.7", 61665)
    assert not candidate.is_mdns


def test_chrome_tcp_fields() -> None:
    candidate = Candidate.from_sdp(CHROME_LINES[3])
    assert candidate.transport == "tcp"
    assert candidate.tcp_type is TcpType.ACTIVE
    assert candidate.port == 9


def test_mdns_host_is_kept_as_given() -> None:
    candidate = Candidate.from_sdp(CHROME_LINES[-1])
    assert candidate.host == MDNS_NAME
    assert candidate.is_mdns
    assert candidate.address == Address(MDNS_NAME, 54321)
    upper = Candidate.from_sdp("1 1 udp 2122260223 Host-1.LOCAL 54321 typ host")
    assert upper.host == "Host-1.LOCAL" and upper.is_mdns


FIREFOX_LINES = [
    ("candidate:0 1 UDP 2122252543 192.168.1.10 53421 typ host", CandidateType.HOST, None),
    ("candidate:1 1 TCP 2105524479 192.168.1.10 9 typ host tcptype active", CandidateType.HOST,
     None),
    ("candidate:2 1 UDP 1686052863 203.0.113.7 53421 typ srflx raddr 192.168.1.10 rport 53421",
     CandidateType.SERVER_REFLEXIVE, Address("192.168.1.10", 53421)),
    ("candidate:5 1 UDP 92217343 198.51.100.20 58479 typ relay raddr 198.51.100.20 rport 58479",
     CandidateType.RELAYED, Address("198.51.100.20", 58479)),
    (f"candidate:0 1 UDP 2122252543 {MDNS_NAME} 53421 typ host", CandidateType.HOST, None),
]


@pytest.mark.parametrize(("line", "kind", "related"), FIREFOX_LINES)
def test_firefox_lines(line: str, kind: CandidateType, related: Address | None) -> None:
    """Firefox writes the transport upper case; we store and write it lower case."""
    candidate = Candidate.from_sdp(line)
    assert candidate.type is kind
    assert candidate.related_address == related
    assert candidate.transport in ("udp", "tcp")
    assert "candidate:" + candidate.to_sdp() == line.replace(" UDP ", " udp ").replace(
        " TCP ", " tcp "
    )


def test_rfc8839_example_line() -> None:
    """The example of RFC 8839 §5.1; its priority is the recommended formula's srflx value."""
    line = CONSTANTS["sdp_candidate_attribute"]["example"]
    candidate = Candidate.from_sdp(line)
    assert candidate.priority == candidate_priority(100, 65535, 1)
    assert candidate.related_address == Address("203.0.113.141", 8998)
    assert "a=candidate:" + candidate.to_sdp() == line.replace("UDP", "udp")


@pytest.mark.parametrize(
    ("written", "normalised"),
    [("2001:DB8:0:0:0:0:0:1", "2001:db8::1"), ("fe80::0001", "fe80::1"), ("::1", "::1")],
)
def test_ipv6_hosts_are_normalised(written: str, normalised: str) -> None:
    candidate = Candidate.from_sdp(
        f"1 1 udp 2122194687 {written} 5000 typ srflx raddr {written} rport 5001"
    )
    assert candidate.host == normalised
    assert candidate.related_address == Address(normalised, 5001)


def test_keywords_are_case_insensitive() -> None:
    """ABNF literals ("typ", "host", "raddr"…) match in any case (RFC 5234 §2.3)."""
    shouted = "CANDIDATE:1 1 UDP 1686052607 1.2.3.4 5000 TYP SRFLX RADDR 10.0.0.1 RPORT 5000"
    assert Candidate.from_sdp(shouted) == Candidate.from_sdp(shouted.lower())


# --------------------------------------------------------------------------- aioice interop


def test_aioice_line_parses() -> None:
    theirs = aioice.Candidate(
        foundation="f2a27b2e",
        component=1,
        transport="udp",
        priority=1694498815,
        host="203.0.113.7",
        port=40000,
        type="srflx",
        related_address="10.0.0.1",
        related_port=5000,
        generation=0,
    )
    ours = Candidate.from_sdp(theirs.to_sdp())
    assert ours == Candidate(
        "f2a27b2e", 1, "udp", 1694498815, "203.0.113.7", 40000, CandidateType.SERVER_REFLEXIVE,
        related_address=Address("10.0.0.1", 5000), generation=0,
    )
    assert ours.to_sdp() == theirs.to_sdp()


def test_aioice_tcp_and_ipv6_lines_parse() -> None:
    theirs = aioice.Candidate(
        foundation="abc", component=2, transport="tcp", priority=1518280446,
        host="2001:db8::7", port=9, type="host", tcptype="active",
    )
    ours = Candidate.from_sdp(theirs.to_sdp())
    assert (ours.component, ours.tcp_type, ours.host) == (2, TcpType.ACTIVE, "2001:db8::7")


def aioice_fields(candidate: Any) -> tuple[Any, ...]:
    return (
        candidate.foundation, candidate.component, candidate.transport, candidate.priority,
        candidate.host, candidate.port, candidate.type, candidate.related_address,
        candidate.related_port, candidate.tcptype, candidate.generation,
    )


def test_our_lines_parse_in_aioice() -> None:
    for line in CHROME_LINES:
        ours = Candidate.from_sdp(line)
        theirs = aioice.Candidate.from_sdp(ours.to_sdp())
        related = ours.related_address
        assert aioice_fields(theirs) == (
            ours.foundation, ours.component, ours.transport, ours.priority, ours.host, ours.port,
            ours.type.value, related and related.host, related and related.port,
            ours.tcp_type and ours.tcp_type.value, ours.generation,
        )


@pytest.mark.parametrize("kind", list(CandidateType))
@pytest.mark.parametrize("component", [1, 2, 256])
def test_priority_agrees_with_aioice(kind: CandidateType, component: int) -> None:
    for local in (0, 1, 32542, 65535):
        expected = aioice.candidate.candidate_priority(component, kind.value, local)
        assert candidate_priority(TYPE_PREFERENCE[kind], local, component) == expected


# --------------------------------------------------------------------------- malformed lines

VALID = "1 1 udp 2122260223 10.0.0.1 5000 typ host"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "0 fields"),
        ("candidate:", "0 fields"),
        ("hello world", "2 fields"),
        ("1 1 udp 2122260223 10.0.0.1 5000 host", "7 fields"),
        ("1 1 udp 2122260223 10.0.0.1 5000 type host", "'typ' expected"),
        ("1 1 udp 2122260223 10.0.0.1 70000 typ host", "port 70000 out of range"),
        ("1 1 udp 2122260223 10.0.0.1 abc typ host", "port 'abc' is not a number"),
        ("1 1 udp 2122260223 10.0.0.1 -1 typ host", "port '-1' is not a number"),
        ("1 1 udp 2122260223 10.0.0.1 +1 typ host", "port '+1' is not a number"),
        ("1 1 udp 0 10.0.0.1 5000 typ host", "priority 0 out of range"),
        ("1 1 udp 4294967296 10.0.0.1 5000 typ host", "priority 4294967296 out of range"),
        ("1 1 udp 2147483648 10.0.0.1 5000 typ host", "priority 2147483648 out of range"),
        ("1 1 udp 12345678901 10.0.0.1 5000 typ host", "1-10 digits"),
        ("1 0 udp 2122260223 10.0.0.1 5000 typ host", "component-id 0 out of range"),
        ("1 257 udp 2122260223 10.0.0.1 5000 typ host", "component-id 257 out of range"),
        ("1 1000 udp 2122260223 10.0.0.1 5000 typ host", "1-3 digits"),
        ("x" * 33 + " 1 udp 2122260223 10.0.0.1 5000 typ host", "not 1-32 ice-chars"),
        ("a-b 1 udp 2122260223 10.0.0.1 5000 typ host", "not 1-32 ice-chars"),
        ("1 1 u(p 2122260223 10.0.0.1 5000 typ host", "bad transport"),
        ("1 1 udp 2122260223 10.0.0.1 5000 typ h@st", "bad candidate type"),
        ("1 1 udp 2122260223 10.0.0.256 5000 typ host", "not an IP address"),
        ("1 1 udp 2122260223 10.0.0.1 5000 typ srflx raddr 10.0.0.2", "raddr and rport"),
        ("1 1 udp 2122260223 10.0.0.1 5000 typ srflx rport 5000", "raddr and rport"),
        ("1 1 udp 2122260223 10.0.0.1 5000 typ srflx raddr x rport 5000", "not an IP address"),
        ("1 1 udp 2122260223 10.0.0.1 5000 typ srflx raddr 10.0.0.2 rport 65536", "rport 65536"),
        (VALID + " generation", "'generation' has no value"),
        (VALID + " generation x", "generation 'x' is not a number"),
        (VALID + " generation 0 generation 1", "generation given twice"),
        (VALID + " network-id \x00", "bad value"),
        (VALID + " net@id 1", "bad extension name"),
        ("1 1 tcp 2122260223 10.0.0.1 9 typ host", "tcptype is required"),
        ("1 1 udp 2122260223 10.0.0.1 9 typ host tcptype active", "tcptype is required"),
        ("1 1 tcp 2122260223 10.0.0.1 9 typ host tcptype sideways", "unknown tcptype"),
    ],
)
def test_malformed_lines(line: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace("+", r"\+")) as e:
        Candidate.from_sdp(line)
    assert not isinstance(e.value, UnsupportedCandidateError)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1 1 sctp 2122260223 10.0.0.1 5000 typ host", "transport 'sctp' not supported"),
        ("1 1 udp 2122260223 10.0.0.1 5000 typ wormhole", "type 'wormhole' not supported"),
        ("1 1 udp 2122260223 turn.example.com 5000 typ relay", "FQDN"),
        ("1 1 udp 2122260223 localhost 5000 typ host", "FQDN"),
    ],
)
def test_unsupported_candidates(line: str, message: str) -> None:
    """Well-formed but unusable: RFC 8839 §5.1 says to ignore the line, so it has its own class."""
    with pytest.raises(UnsupportedCandidateError, match=message):
        Candidate.from_sdp(line)


def test_error_messages_stay_short() -> None:
    with pytest.raises(DecodeError) as error:
        Candidate.from_sdp("-" * 10_000 + " 1 udp 2122260223 10.0.0.1 5000 typ host")
    assert len(str(error.value)) < 200


# --------------------------------------------------------------------------- building candidates


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"foundation": ""}, "foundation"),
        ({"component": 0}, "component-id"),
        ({"transport": "sctp"}, "transport"),
        ({"priority": 2**31}, "priority"),
        ({"port": 65536}, "port"),
        ({"host": "example.com"}, "not an IP address"),
        ({"transport": "tcp"}, "tcptype"),
        ({"generation": -1}, "generation"),
        ({"extensions": (("generation", "1"),)}, "extension name"),
        ({"extensions": (("RPORT", "1"),)}, "extension name"),
        ({"extensions": (("network-id", "a b"),)}, "bad value"),
        ({"extensions": (("network-id", ""),)}, "bad value"),
        ({"related_address": Address("10.0.0.2", 70000)}, "rport"),
    ],
)
def test_bad_fields_are_local_errors(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        host_candidate(**fields)


def test_construction_normalises() -> None:
    candidate = host_candidate(
        "2001:DB8::0:1", transport="TCP", tcp_type=TcpType.PASSIVE,
        related_address=Address("0:0::1", 9),
    )
    assert (candidate.host, candidate.transport) == ("2001:db8::1", "tcp")
    assert candidate.related_address == Address("::1", 9)


def test_base_is_not_part_of_equality_or_the_text() -> None:
    plain = host_candidate()
    based = host_candidate(base=Address("10.0.0.1", 5000))
    assert plain == based and hash(plain) == hash(based)
    assert plain.to_sdp() == based.to_sdp()
    assert based.base == Address("10.0.0.1", 5000)


# --------------------------------------------------------------------------- priorities


def test_type_preferences_are_the_rfc_values() -> None:
    recommended = CONSTANTS["ice"]["type_preferences_recommended"]
    assert dict(TYPE_PREFERENCE) == {
        CandidateType.HOST: recommended["host"],
        CandidateType.PEER_REFLEXIVE: recommended["peer-reflexive"],
        CandidateType.SERVER_REFLEXIVE: recommended["server-reflexive"],
        CandidateType.RELAYED: recommended["relayed"],
    }


def test_priority_formula() -> None:
    """priority = 2^24 * type preference + 2^8 * local preference + (256 - component ID)."""
    ranges = CONSTANTS["ice"]
    single = ranges["local_preference_range"]["single_address_value"]
    assert candidate_priority(126, single, 1) == 2**24 * 126 + 2**8 * 65535 + 255 == 2130706431
    assert candidate_priority(0, 0, 256) == 0
    top = ranges["type_preference_range"]["max"]
    assert candidate_priority(top, single, 1) <= ice.MAX_PRIORITY
    # RFC 8421 §5's table: IPv6 host, local preference 60000, components 1 and 2.
    assert candidate_priority(126, 60000, 1) == 2129289471
    assert candidate_priority(126, 60000, 2) == 2129289470


@pytest.mark.parametrize(
    "arguments", [(127, 0, 1), (-1, 0, 1), (0, 65536, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257)]
)
def test_priority_arguments_out_of_range(arguments: tuple[int, int, int]) -> None:
    with pytest.raises(LocalProtocolError, match="out of range"):
        candidate_priority(*arguments)


def test_local_preferences_rfc8421_example() -> None:
    """Two IPv4 and six IPv6 addresses: an IPv4 one after four IPv6 ones (RFC 8421 §4)."""
    v4 = ["192.0.2.1", "198.51.100.1"]
    v6 = [f"2001:db8::{n}" for n in range(1, 7)]
    preferences = local_preferences(v4 + v6)
    ranked = sorted(preferences, key=preferences.__getitem__, reverse=True)
    assert ranked == [*v6[:4], v4[0], v6[4], v4[1], v6[5]]
    assert sorted(preferences.values()) == list(range(65535 - 7, 65536))


def test_local_preferences_single_family_keeps_the_callers_order() -> None:
    assert local_preferences(["10.0.0.2", "10.0.0.1"]) == {"10.0.0.2": 65535, "10.0.0.1": 65534}
    assert local_preferences(["::2", "::1"]) == {"::2": 65535, "::1": 65534}
    assert local_preferences([]) == {}


def test_local_preferences_single_address_is_65535() -> None:
    single = CONSTANTS["ice"]["local_preference_range"]["single_address_value"]
    assert local_preferences(["10.0.0.1"]) == {"10.0.0.1": single}


def test_local_preferences_normalise_and_deduplicate() -> None:
    assert local_preferences(["2001:DB8::1", "2001:db8:0::1", "10.0.0.1"]) == {
        "2001:db8::1": 65535, "10.0.0.1": 65534,
    }


def test_local_preferences_reject_names() -> None:
    with pytest.raises(LocalProtocolError, match="not an IP address"):
        local_preferences(["host.local"])


@FAST
@given(st.lists(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str), max_size=40))
def test_local_preferences_are_unique_and_stable(bases: list[str]) -> None:
    preferences = local_preferences(bases)
    assert len(set(preferences.values())) == len(preferences) == len(set(preferences))
    assert all(0 <= value <= 0xFFFF for value in preferences.values())
    assert local_preferences(bases) == preferences
    # So several interfaces never tie: host priorities for one component are all distinct.
    priorities = {candidate_priority(126, value, 1) for value in preferences.values()}
    assert len(priorities) == len(preferences)
    if any(":" in host for host in preferences):
        assert ":" in max(preferences, key=preferences.__getitem__)


def test_pair_priority_both_orders() -> None:
    g, d = 2130706431, 1694498815
    assert pair_priority(g, d) == 2**32 * d + 2 * g + 1
    assert pair_priority(d, g) == 2**32 * d + 2 * g
    assert pair_priority(g, g) == 2**32 * g + 2 * g


@FAST
@given(st.integers(1, ice.MAX_PRIORITY), st.integers(1, ice.MAX_PRIORITY))
def test_pair_priority_is_the_same_from_both_sides(g: int, d: int) -> None:
    """Each agent computes the pair's priority from the roles, not from which side it is on, so
    both order their check lists alike (RFC 8445 §6.1.2.3); the G>D bit breaks ties."""
    value = pair_priority(g, d)
    assert value == 2**32 * min(g, d) + 2 * max(g, d) + (1 if g > d else 0)
    if g != d:
        assert value != pair_priority(d, g)
    assert value < 2**64


# --------------------------------------------------------------------------- foundations


def test_foundation_depends_on_type_base_ip_transport_and_server() -> None:
    srflx = CandidateType.SERVER_REFLEXIVE
    reference = compute_foundation(srflx, "10.0.0.1", "udp", "192.0.2.10")
    assert compute_foundation(srflx, "10.0.0.1", "UDP", "192.0.2.10") == reference
    others = {
        compute_foundation(CandidateType.RELAYED, "10.0.0.1", "udp", "192.0.2.10"),
        compute_foundation(srflx, "10.0.0.2", "udp", "192.0.2.10"),
        compute_foundation(srflx, "10.0.0.1", "tcp", "192.0.2.10"),
        compute_foundation(srflx, "10.0.0.1", "udp", "192.0.2.11"),
        compute_foundation(srflx, "10.0.0.1", "udp"),
        compute_foundation(srflx, "10.0.0.1", "udp", "192.0.2.10", salt=b"agent secret"),
    }
    assert reference not in others and len(others) == 6


def test_foundation_normalises_addresses() -> None:
    host = CandidateType.HOST
    assert compute_foundation(host, "2001:DB8::1", "udp") == compute_foundation(
        host, "2001:db8:0::1", "udp"
    )


def test_foundation_is_a_valid_sdp_foundation() -> None:
    foundation = compute_foundation(CandidateType.HOST, "10.0.0.1", "udp")
    assert len(foundation) <= 32 and set(foundation) <= set(ICE_CHARS)
    candidate = host_candidate(foundation=foundation)
    assert Candidate.from_sdp(candidate.to_sdp()).foundation == foundation


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((CandidateType.HOST, "example.com", "udp"), "not an IP address"),
        ((CandidateType.HOST, "10.0.0.1", "sctp"), "transport"),
        ((CandidateType.SERVER_REFLEXIVE, "10.0.0.1", "udp", "stun.example.com"), "IP address"),
    ],
)
def test_foundation_bad_arguments(arguments: tuple[Any, ...], message: str) -> None:
    with pytest.raises(LocalProtocolError, match=message):
        compute_foundation(*arguments)


def test_foundation_salt_is_limited() -> None:
    with pytest.raises(LocalProtocolError, match="64 bytes"):
        compute_foundation(CandidateType.HOST, "10.0.0.1", "udp", salt=bytes(65))


# --------------------------------------------------------------------------- redundancy


def local(kind: CandidateType, address: Address, base: Address, priority: int,
          transport: str = "udp") -> Candidate:
    return Candidate(
        "1", 1, transport, priority, address.host, address.port, kind, base=base,
        tcp_type=TcpType.PASSIVE if transport == "tcp" else None,
    )


def test_eliminate_redundant() -> None:
    """A srflx candidate equal to its host base (no NAT) goes; everything else stays, in order."""
    base = Address("10.0.0.1", 5000)
    host = local(CandidateType.HOST, base, base, 2130706431)
    no_nat = local(CandidateType.SERVER_REFLEXIVE, base, base, 1694498815)
    natted = local(CandidateType.SERVER_REFLEXIVE, Address("192.0.2.1", 6000), base, 1694498815)
    other_base = local(CandidateType.SERVER_REFLEXIVE, base, Address("10.0.0.2", 5000), 1)
    tcp = local(CandidateType.HOST, base, base, 2105524479, transport="tcp")
    assert eliminate_redundant([no_nat, host, natted, other_base, tcp]) == [
        host, natted, other_base, tcp,
    ]


def test_eliminate_redundant_keeps_the_first_of_a_tie() -> None:
    base = Address("10.0.0.1", 5000)
    first = local(CandidateType.SERVER_REFLEXIVE, base, base, 100)
    second = Candidate("2", 1, "udp", 100, "10.0.0.1", 5000, CandidateType.PEER_REFLEXIVE,
                       base=base)
    assert eliminate_redundant([first, second]) == [first]
    assert eliminate_redundant(iter([second, first])) == [second]


def test_eliminate_redundant_needs_bases() -> None:
    with pytest.raises(LocalProtocolError, match="no base"):
        eliminate_redundant([host_candidate()])


# --------------------------------------------------------------------------- session attributes

CHROME_MEDIA_SECTION = "\r\n".join([
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "c=IN IP4 0.0.0.0",
    *("a=" + line for line in CHROME_LINES[:2]),
    "a=candidate:9 1 udp 2122260223 turn.example.com 3478 typ host",  # FQDN: ignored
    "a=candidate:10 1 sctp 2122260223 10.0.0.1 5000 typ host",  # unknown transport: ignored
    "a=ice-ufrag:EsAw",
    "a=ice-pwd:P+cnpR4w5P1HS9cNJ9Xhqb2T",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 00:11:22",
    "a=setup:actpass",
    "a=end-of-candidates",
    "",
])


def test_description_from_a_chrome_media_section() -> None:
    description = IceDescription.from_sdp(CHROME_MEDIA_SECTION)
    assert description == IceDescription(
        ufrag="EsAw",
        pwd="P+cnpR4w5P1HS9cNJ9Xhqb2T",
        options=("trickle",),
        candidates=tuple(Candidate.from_sdp(line) for line in CHROME_LINES[:2]),
        end_of_candidates=True,
    )
    assert IceDescription.from_sdp(description.to_sdp()) == description


def test_description_rfc8839_examples() -> None:
    """RFC 8839 §5.4's ufrag/pwd, §5.5's pacing, §5.6's options and a lite session."""
    text = (
        "a=ice-lite\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\na=ice-ufrag:8hhY\r\n"
        "a=ice-pacing:50\r\na=ice-options:ice2 rtp+ecn\r\n"
    )
    description = IceDescription.from_sdp(text)
    assert (description.ufrag, description.pwd) == ("8hhY", "asd88fgpdd777uzjYhagZg")
    assert description.options == ("ice2", "rtp+ecn")
    assert description.lite and description.pacing_ms == 50
    assert not description.candidates and not description.end_of_candidates
    assert description.to_sdp() == (
        "a=ice-lite\r\na=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\n"
        "a=ice-options:ice2 rtp+ecn\r\na=ice-pacing:50\r\n"
    )


def test_description_session_and_media_level_may_repeat_a_value() -> None:
    text = "a=ice-ufrag:8hhY\na=ice-pwd:asd88fgpdd777uzjYhagZg\nm=audio 9 RTP/AVP 0\n" * 2
    assert IceDescription.from_sdp(text).ufrag == "8hhY"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a=ice-pwd:asd88fgpdd777uzjYhagZg", "no a=ice-ufrag"),
        ("a=ice-ufrag:8hhY", "no a=ice-pwd"),
        ("a=ice-ufrag:8hh\na=ice-pwd:asd88fgpdd777uzjYhagZg", "ice-ufrag '8hh'"),
        ("a=ice-ufrag:8h-Y\na=ice-pwd:asd88fgpdd777uzjYhagZg", "ice-ufrag '8h-Y'"),
        ("a=ice-ufrag:8hhY\na=ice-pwd:asd88fgpdd777uzjYhagZ", "ice-pwd of 21 characters"),
        ("a=ice-ufrag:8hhY\na=ice-ufrag:9hhY\na=ice-pwd:asd88fgpdd777uzjYhagZg", "two different"),
        ("a=ice-ufrag:8hhY\na=ice-pwd:asd88fgpdd777uzjYhagZg\na=ice-pacing:fast", "ice-pacing"),
        ("a=ice-ufrag:8hhY\na=ice-pwd:asd88fgpdd777uzjYhagZg\na=ice-pacing:0", "ice-pacing 0"),
        ("a=ice-ufrag:8hhY\na=ice-pwd:asd88fgpdd777uzjYhagZg\na=ice-options:a-b", "ice-option"),
        ("a=ice-ufrag:8hhY\na=ice-pwd:asd88fgpdd777uzjYhagZg\na=candidate:1 1 udp", "3 fields"),
    ],
)
def test_description_errors(text: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        IceDescription.from_sdp(text)


def test_ufrag_and_pwd_bounds() -> None:
    validate_ufrag("a" * 4)
    validate_ufrag("+/" * 128)
    validate_pwd("a" * 22)
    validate_pwd("a" * 256)
    for bad_ufrag in ("a" * 3, "a" * 257, "abc:", "abcd\n", "\uff41\uff42\uff43\uff44"):
        with pytest.raises(LocalProtocolError):
            validate_ufrag(bad_ufrag)
    for bad_pwd in ("a" * 21, "a" * 257, "a" * 21 + "="):
        with pytest.raises(LocalProtocolError):
            validate_pwd(bad_pwd)


def test_generate_credentials() -> None:
    ufrag, pwd = generate_credentials(random.Random(1))
    assert (len(ufrag), len(pwd)) == (8, 24)
    validate_ufrag(ufrag)
    validate_pwd(pwd)
    assert generate_credentials(random.Random(1)) == (ufrag, pwd)
    assert generate_credentials(random.Random(2)) != (ufrag, pwd)
    validate_pwd(generate_credentials(default_random())[1])


def test_generated_credentials_use_the_whole_alphabet() -> None:
    """Every ice-char shows up, so each character carries its full 6 bits."""
    rng = random.Random(7)
    seen: set[str] = set()
    for _ in range(100):
        seen.update("".join(generate_credentials(rng)))
    assert seen == set(string.ascii_letters + string.digits + "+/") == set(ICE_CHARS)


# --------------------------------------------------------------------------- properties

ice_chars = st.text(st.sampled_from(ICE_CHARS), min_size=1, max_size=32)
tokens = st.text(st.sampled_from(string.ascii_letters + string.digits + "-.!%*_+`'~"), min_size=1,
                 max_size=12).filter(lambda name: name.lower() not in
                                     {"raddr", "rport", "tcptype", "generation"})
vchars = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
ip_hosts = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str)
mdns_hosts = st.uuids().map(lambda uuid: f"{uuid}.local")
ports = st.integers(0, 0xFFFF)


@st.composite
def candidates(draw: st.DrawFn) -> Candidate:
    transport = draw(st.sampled_from(["udp", "tcp"]))
    return Candidate(
        draw(ice_chars),
        draw(st.integers(1, 256)),
        transport,
        draw(st.integers(1, ice.MAX_PRIORITY)),
        draw(st.one_of(ip_hosts, mdns_hosts)),
        draw(ports),
        draw(st.sampled_from(CandidateType)),
        related_address=draw(st.none() | st.builds(Address, ip_hosts, ports)),
        tcp_type=draw(st.sampled_from(TcpType)) if transport == "tcp" else None,
        generation=draw(st.none() | st.integers(0, 2**32 - 1)),
        extensions=tuple(draw(st.lists(st.tuples(tokens, vchars), max_size=4))),
    )


@FAST
@given(candidates())
def test_round_trip(candidate: Candidate) -> None:
    line = candidate.to_sdp()
    assert Candidate.from_sdp(line) == candidate
    assert Candidate.from_sdp(f"a=candidate:{line}\r\n") == candidate


@FAST
@given(candidates())
def test_aioice_reads_what_we_write(candidate: Candidate) -> None:
    theirs = aioice.Candidate.from_sdp(candidate.to_sdp())
    related = candidate.related_address
    assert aioice_fields(theirs) == (
        candidate.foundation, candidate.component, candidate.transport, candidate.priority,
        candidate.host, candidate.port, candidate.type.value, related and related.host,
        related and related.port, candidate.tcp_type and candidate.tcp_type.value,
        candidate.generation,
    )


@FAST
@given(ice_chars.filter(lambda s: len(s) >= 4), st.text(st.sampled_from(ICE_CHARS), min_size=22,
       max_size=40), st.lists(candidates(), max_size=3), st.booleans(), st.booleans())
def test_description_round_trip(
    ufrag: str, pwd: str, listed: list[Candidate], lite: bool, end: bool
) -> None:
    description = IceDescription(
        ufrag=ufrag, pwd=pwd, options=("trickle",), lite=lite, candidates=tuple(listed),
        end_of_candidates=end,
    )
    assert IceDescription.from_sdp(description.to_sdp()) == description


FIELD_WORDS = st.sampled_from([
    "typ", "raddr", "rport", "tcptype", "generation", "host", "srflx", "udp", "tcp", "0", "1",
    "65536", "4294967296", "1.2.3.4", "::1", "x.local", "example.com", "active", "candidate:",
])
fields = st.lists(st.one_of(FIELD_WORDS, st.text(max_size=12)), max_size=14).map(" ".join)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), fields, candidates().map(Candidate.to_sdp).flatmap(
    lambda line: st.tuples(st.just(line), st.integers(0, len(line)), st.text(max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] + 1:]
    )
)))
def test_garbage_raises_only_decode_error(text: str) -> None:
    try:
        candidate = Candidate.from_sdp(text)
    except DecodeError:
        return
    assert Candidate.from_sdp(candidate.to_sdp()) == candidate


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.text(max_size=30),
    st.sampled_from(["a=ice-ufrag:", "a=ice-pwd:", "a=ice-options:", "a=ice-pacing:",
                     "a=candidate:", "a=ice-lite", "a=end-of-candidates"]).flatmap(
        lambda prefix: st.one_of(st.text(max_size=30), fields).map(prefix.__add__)
    ),
), max_size=8).map("\n".join))
def test_description_garbage_raises_only_decode_error(text: str) -> None:
    try:
        description = IceDescription.from_sdp(text)
    except DecodeError:
        return
    assert IceDescription.from_sdp(description.to_sdp()) == description
