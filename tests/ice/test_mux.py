"""The shared-port mux's table (:mod:`ice.mux`), machine level: which session each datagram
goes to, what is dropped and counted, what is bounded."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ice import LocalProtocolError
from ice.mux import DropReason, MuxConfig, MuxFull, MuxTable, request_ufrag
from stun import Address
from stun.attributes import Priority, Username
from stun.message import Message, MessageClass, Method

CLIENT = Address("198.51.100.7", 40000)
OTHER = Address("198.51.100.8", 40000)
DATA = b"\x80" + bytes(20)  # RTP-like: first byte above 127 (RFC 7983)


def check(ufrag: str, *, username: bool = True, method: int = Method.BINDING) -> bytes:
    """A Binding request as a peer sends it: USERNAME ``<our ufrag>:<theirs>``."""
    attributes = [Username(f"{ufrag}:peer")] if username else []
    return Message(
        method, MessageClass.REQUEST, os.urandom(12), [*attributes, Priority(1)]
    ).encode()


def response() -> bytes:
    return Message(Method.BINDING, MessageClass.SUCCESS_RESPONSE, os.urandom(12)).encode()


def test_the_ufrag_is_read_from_requests_only() -> None:
    assert request_ufrag(check("abcd")) == "abcd"
    assert request_ufrag(check("abcd", username=False)) == ""
    assert request_ufrag(response()) is None
    assert request_ufrag(DATA) is None
    assert request_ufrag(check("abcd", method=Method.ALLOCATE)) is None


def test_two_sessions_checked_from_one_remote_address_are_told_apart() -> None:
    table: MuxTable[str] = MuxTable()
    table.register("one", "ufrag1")
    table.register("two", "ufrag2")
    assert table.route(check("ufrag1"), CLIENT) == "one"
    assert table.route(check("ufrag2"), CLIENT) == "two"
    assert table.route(check("ufrag1"), CLIENT) == "one"
    # Data has no ufrag: it goes to the session the address checked last.
    assert table.route(DATA, CLIENT) == "one"
    assert table.routed == 4 and not table.dropped


def test_answers_come_back_to_the_session_that_sent() -> None:
    table: MuxTable[str] = MuxTable()
    table.register("one", "ufrag1")
    server = Address("192.0.2.1", 3478)
    assert table.route(response(), server) is None
    table.sent("one", server)  # its own check, or a STUN server's request
    assert table.route(response(), server) == "one"
    assert table.dropped == {DropReason.UNKNOWN_SOURCE: 1}


def test_restart_on_a_mux_keeps_the_old_ufrag_for_one_generation() -> None:
    table: MuxTable[str] = MuxTable()
    table.register("one", "gen1")
    table.rename("one", "gen2")
    assert table.route(check("gen1"), CLIENT) == "one"  # checks still in flight
    assert table.route(check("gen2"), OTHER) == "one"  # a peer on a new address
    table.rename("one", "gen3")
    assert table.route(check("gen1"), CLIENT) is None
    assert table.route(check("gen3"), CLIENT) == "one"
    assert table.dropped == {DropReason.UNKNOWN_UFRAG: 1}
    table.register("two", "gen1")  # a released ufrag may be taken again


def test_a_session_closed_mid_check_releases_everything_at_once() -> None:
    table: MuxTable[str] = MuxTable()
    table.register("one", "ufrag1")
    table.register("two", "ufrag2")
    assert table.route(check("ufrag1"), CLIENT) == "one"
    table.sent("one", OTHER)
    table.unregister("one")
    assert len(table) == 1 and table.addresses == 0
    assert table.route(check("ufrag1"), CLIENT) is None  # its retransmission
    assert table.route(DATA, CLIENT) is None
    assert table.route(response(), OTHER) is None
    assert table.dropped == {DropReason.UNKNOWN_UFRAG: 1, DropReason.UNKNOWN_SOURCE: 2}
    table.unregister("one")  # twice does no harm


def test_the_session_cap_refuses_cleanly_and_a_ufrag_has_one_owner() -> None:
    table: MuxTable[int] = MuxTable(MuxConfig(max_sessions=2))
    table.register(1, "a")
    with pytest.raises(LocalProtocolError, match="another session"):
        table.register(2, "a")
    table.register(2, "b")
    with pytest.raises(MuxFull, match=r"max_sessions \(2\)"):
        table.register(3, "c")
    table.unregister(1)
    table.register(3, "c")


def test_addresses_per_session_are_bounded_oldest_first() -> None:
    table: MuxTable[str] = MuxTable(MuxConfig(max_addresses=3))
    table.register("one", "u")
    addresses = [Address("198.51.100.7", 40000 + i) for i in range(5)]
    for address in addresses:
        assert table.route(check("u"), address) == "one"
    assert table.addresses == 3
    assert table.route(DATA, addresses[0]) is None
    assert table.route(DATA, addresses[4]) == "one"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=64),
                st.text(min_size=1, max_size=40)
                .filter(lambda text: not text.startswith("known-ufrag"))
                .map(check),
                st.just(DATA),
            ),
            st.integers(1, 65535),
        ),
        max_size=40,
    )
)
def test_a_flood_of_unknown_ufrags_and_garbage_never_raises_nor_grows(
    flood: list[tuple[bytes, int]],
) -> None:
    table: MuxTable[str] = MuxTable()
    table.register("one", "known-ufrag")
    for data, port in flood:
        assert table.route(data, Address("203.0.113.9", port)) is None
    assert table.addresses == 0 and len(table) == 1
    assert sum(table.dropped.values()) == len(flood)
