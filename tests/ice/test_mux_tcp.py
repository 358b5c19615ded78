"""The TCP side of the shared-port mux (:mod:`ice.mux_tcp`), machine level: which session an
accepted connection goes to after its first framed request, what is closed and counted, what is
bounded."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ice import LocalProtocolError
from ice.mux import MuxTable
from ice.mux_tcp import Dropped, Routed, TcpDropReason, TcpMuxConfig, TcpMuxTable
from ice.tcp import FIRST_FRAME_LIMIT
from stun.framing import frame_rfc4571
from stun.message import Method

from .test_mux import DATA, check, response


def tables(**bounds: float) -> tuple[MuxTable[str], TcpMuxTable[int, str]]:
    sessions: MuxTable[str] = MuxTable()
    sessions.register("alpha", "ufrag-a")
    sessions.register("beta", "ufrag-b")
    return sessions, TcpMuxTable(sessions, TcpMuxConfig(**bounds))  # type: ignore[arg-type]


def test_the_first_request_routes_the_connection_with_every_byte_received() -> None:
    _, table = tables()
    first = frame_rfc4571(check("ufrag-b"))
    after = frame_rfc4571(DATA)
    table.accepted(1, now=0.0)
    table.accepted(2, now=0.0)
    # Byte by byte: nothing is decided before the first frame is whole.
    for byte in first[:-1]:
        assert table.received(1, bytes([byte])) is None
    assert table.received(1, first[-1:] + after[:3]) == Routed("beta", first + after[:3])
    # A request for the other session, in one read with what follows it.
    other = frame_rfc4571(check("ufrag-a"))
    assert table.received(2, other + after) == Routed("alpha", other + after)
    assert table.routed == 2 and len(table) == 0 and not table.dropped
    # Routed connections are the sessions' now: the table ignores their bytes.
    assert table.received(1, b"anything") is None


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (frame_rfc4571(check("nobody")), TcpDropReason.UNKNOWN_UFRAG),
        (frame_rfc4571(check("ufrag-a", username=False)), TcpDropReason.NO_USERNAME),
        (frame_rfc4571(response()), TcpDropReason.NOT_STUN),
        (frame_rfc4571(check("ufrag-a", method=Method.ALLOCATE)), TcpDropReason.NOT_STUN),
        (frame_rfc4571(DATA), TcpDropReason.NOT_STUN),
        (b"GET / HTTP/1.1\r\n\r\n", TcpDropReason.NOT_STUN),  # announces 18245 bytes
        (b"\x00\x05hello", TcpDropReason.NOT_STUN),  # shorter than a STUN header
        ((FIRST_FRAME_LIMIT + 1).to_bytes(2, "big"), TcpDropReason.NOT_STUN),
    ],
    ids=["unknown-ufrag", "no-username", "response", "allocate", "data", "http", "short", "big"],
)
def test_a_first_frame_that_names_no_session_closes_the_connection(
    first: bytes, reason: TcpDropReason
) -> None:
    _, table = tables()
    table.accepted(7, now=0.0)
    assert table.received(7, first) == Dropped(reason)
    assert table.dropped == {reason: 1} and len(table) == 0 and table.routed == 0


def test_a_session_closed_mid_check_gets_no_connection() -> None:
    sessions, table = tables()
    first = frame_rfc4571(check("ufrag-a"))
    table.accepted(1, now=0.0)
    assert table.received(1, first[:10]) is None
    sessions.unregister("alpha")  # the session closes while its check is on the way
    assert table.received(1, first[10:]) == Dropped(TcpDropReason.UNKNOWN_UFRAG)


def test_after_a_restart_both_ufrags_route_for_one_generation() -> None:
    sessions, table = tables()
    sessions.rename("alpha", "ufrag-a2")
    for key, ufrag in enumerate(["ufrag-a", "ufrag-a2"]):
        table.accepted(key, now=0.0)
        verdict = table.received(key, frame_rfc4571(check(ufrag)))
        assert isinstance(verdict, Routed) and verdict.session == "alpha"


def test_silent_connections_are_closed_at_their_deadline_oldest_first() -> None:
    _, table = tables(first_request_timeout=5.0)
    assert table.get_timer() is None
    table.accepted(1, now=0.0)
    table.accepted(2, now=1.0)
    table.accepted(3, now=2.0)
    assert table.received(2, b"\x00") is None  # half a length is no request
    assert table.get_timer() == 5.0
    assert table.handle_timer(4.9) == []
    assert table.handle_timer(6.0) == [1, 2]
    assert table.get_timer() == 7.0 and 3 in table
    assert table.dropped == {TcpDropReason.SILENT: 2}


def test_unowned_connections_are_bounded_the_oldest_evicted() -> None:
    _, table = tables(max_unowned=3)
    assert [table.accepted(key, now=0.0) for key in range(3)] == [None, None, None]
    assert table.accepted(3, now=0.0) == 0
    assert table.accepted(4, now=0.0) == 1
    assert len(table) == 3 and table.dropped == {TcpDropReason.EVICTED: 2}
    assert table.received(0, frame_rfc4571(check("ufrag-a"))) is None  # gone: nothing
    with pytest.raises(LocalProtocolError):
        table.accepted(4, now=0.0)


def test_one_source_cannot_push_the_others_out() -> None:
    """Past its share of waiting connections, a source's new one is closed at once; the
    others' stay, and a slot it frees is its own again."""
    _, table = tables(max_unowned=8, max_unowned_per_source=2)
    honest, first, second, third, fourth = range(5)
    assert table.accepted(honest, now=0.0, source="192.0.2.1") is None
    assert [table.accepted(key, 0.0, "203.0.113.9") for key in (first, second)] == [None, None]
    assert table.accepted(third, now=0.0, source="203.0.113.9") == third  # close this one
    assert third not in table and honest in table and len(table) == 3
    assert table.dropped == {TcpDropReason.SOURCE_LIMIT: 1}
    table.closed(first)
    assert table.accepted(fourth, now=0.0, source="203.0.113.9") is None
    assert table.accepted_count == 5


def test_closed_and_refused_connections_are_counted() -> None:
    _, table = tables()
    table.accepted(1, now=0.0)
    table.accepted(2, now=0.0)
    table.closed(1)
    table.closed(1)  # once only
    assert isinstance(table.received(2, frame_rfc4571(check("ufrag-a"))), Routed)
    table.refused()  # the session's agent had no room
    assert table.dropped == {TcpDropReason.CLOSED: 1, TcpDropReason.REFUSED: 1}
    assert table.routed == 0 and table.accepted_count == 2


def test_bounds_are_checked() -> None:
    with pytest.raises(LocalProtocolError, match="max_unowned"):
        TcpMuxConfig(max_unowned=0)
    with pytest.raises(LocalProtocolError, match="first_request_timeout"):
        TcpMuxConfig(first_request_timeout=0)


_operations = st.lists(
    st.one_of(
        st.tuples(st.just("accept"), st.integers(0, 20)),
        st.tuples(
            st.just("receive"),
            st.integers(0, 20),
            st.one_of(
                st.binary(max_size=300),
                st.sampled_from(["ufrag-a", "nobody", "", "ufrag-b"]).map(
                    lambda u: frame_rfc4571(check(u, username=bool(u)))
                ),
                st.binary(min_size=2, max_size=2),
            ),
        ),
        st.tuples(st.just("close"), st.integers(0, 20)),
        st.tuples(st.just("timer"), st.integers(0, 20)),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(_operations)
def test_any_sequence_of_peer_input_never_raises_and_stays_bounded(
    operations: list[tuple[object, ...]],
) -> None:
    _, table = tables(max_unowned=4, first_request_timeout=3.0)
    now = 0.0
    for operation in operations:
        kind, key = operation[0], operation[1]
        assert isinstance(key, int)
        if kind == "accept" and key not in table:
            table.accepted(key, now)
        elif kind == "receive":
            data = operation[2]
            assert isinstance(data, bytes)
            verdict = table.received(key, data)
            if isinstance(verdict, Routed):
                assert verdict.session in ("alpha", "beta") and verdict.data.endswith(data)
        elif kind == "close":
            table.closed(key)
        elif kind == "timer":
            now += key / 4
            table.handle_timer(now)
        assert len(table) <= 4
        assert table.accepted_count == table.routed + sum(table.dropped.values()) + len(table)
