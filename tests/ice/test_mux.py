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


def response(transaction_id: bytes | None = None, *, error: bool = False) -> bytes:
    kind = MessageClass.ERROR_RESPONSE if error else MessageClass.SUCCESS_RESPONSE
    return Message(Method.BINDING, kind, transaction_id or os.urandom(12)).encode()


def transaction_id(message: bytes) -> bytes:
    return message[8:20]


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
    table.sent("one", server, DATA)  # data, or a request: the address is bound
    assert table.route(response(), server) == "one"
    assert table.dropped == {DropReason.UNKNOWN_SOURCE: 1}


def test_answers_to_checks_of_one_address_by_two_sessions_go_by_transaction_id() -> None:
    # Two muxes talking to each other: both sessions check the same remote address.
    table: MuxTable[str] = MuxTable()
    table.register("one", "ufrag1")
    table.register("two", "ufrag2")
    from_one, from_two = check("remote1"), check("remote2")
    table.sent("one", CLIENT, from_one)
    table.sent("two", CLIENT, from_two)  # CLIENT is bound to "two" now
    table.sent("two", CLIENT, from_two)  # a retransmission: one entry still
    assert table.transactions == 2
    assert table.route(response(transaction_id(from_one)), CLIENT) == "one"
    assert table.route(response(transaction_id(from_two), error=True), CLIENT) == "two"
    assert table.transactions == 0  # forgotten at the first answer
    # an answer to a retransmission, after the first: by address
    assert table.route(response(transaction_id(from_one)), CLIENT) == "two"
    # what is not a request is not remembered: responses, indications, data
    table.sent("one", CLIENT, response())
    table.sent("one", CLIENT, DATA)
    indication = Message(Method.BINDING, MessageClass.INDICATION, os.urandom(12)).encode()
    table.sent("one", CLIENT, indication)
    assert table.transactions == 0
    assert table.routed == 3 and not table.dropped


def test_transaction_ids_are_bounded_oldest_first_and_die_with_their_session() -> None:
    table: MuxTable[str] = MuxTable(MuxConfig(max_transactions=3))
    table.register("one", "ufrag1")
    table.register("two", "ufrag2")
    requests = [check(f"remote{i}") for i in range(4)]
    for request in requests:
        table.sent("one", CLIENT, request)
    table.sent("two", CLIENT, check("other"))
    assert table.transactions == 3
    # the oldest two were pushed out: their answers go by address (to "two", bound last)
    assert table.route(response(transaction_id(requests[0])), CLIENT) == "two"
    assert table.route(response(transaction_id(requests[2])), CLIENT) == "one"
    table.unregister("one")
    assert table.transactions == 1  # "two"'s
    assert table.route(response(transaction_id(requests[3])), CLIENT) == "two"
    table.unregister("two")
    assert table.transactions == 0
    assert table.route(response(transaction_id(requests[1])), CLIENT) is None
    assert table.dropped == {DropReason.UNKNOWN_SOURCE: 1}
    with pytest.raises(LocalProtocolError, match="max_transactions"):
        MuxConfig(max_transactions=0)


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
    table.sent("one", OTHER, DATA)
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


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["send", "answer", "garbage", "close", "open"]),
            st.sampled_from(["one", "two", "three"]),
            st.integers(0, 7),
        ),
        max_size=60,
    )
)
def test_any_sequence_of_requests_answers_and_closes_keeps_the_ids_bounded_and_owned(
    steps: list[tuple[str, str, int]],
) -> None:
    table: MuxTable[str] = MuxTable(MuxConfig(max_transactions=4))
    open_sessions = set()
    requests = [check(f"remote{i}") for i in range(8)]
    for step, session, which in steps:
        request = requests[which]
        if step == "open" and session not in open_sessions:
            table.register(session, session)
            open_sessions.add(session)
        elif step == "close":
            table.unregister(session)
            open_sessions.discard(session)
        elif step == "send" and session in open_sessions:
            table.sent(session, CLIENT, request)
        elif step == "answer":
            routed = table.route(response(transaction_id(request)), CLIENT)
            assert routed is None or routed in open_sessions
        else:
            table.route(bytes([1]) + request[1:20] + bytes(which), CLIENT)  # no raise
        assert table.transactions <= 4
    for session in list(open_sessions):
        table.unregister(session)
    assert table.transactions == 0 and table.addresses == 0
