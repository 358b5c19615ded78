"""The Binding server's lean path (stun.server.BindingServer._plain_binding) against its typed path
on generated requests: the same answer byte for byte and the same outcome counted, for plain
Binding requests (with and without FINGERPRINT) and for everything the lean path must leave to the
typed one — other methods and classes, classic requests, broken or mismatched FINGERPRINTs, any
other attribute (RFC 5780's included), truncated and flipped bytes."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from stun import (
    Address,
    BindingServer,
    Message,
    MessageClass,
    Method,
    ServerConfig,
    ShortTermCredentials,
)
from stun.integrity import fingerprint

from .damage import DAMAGE, damaged
from .signed import any_method, sources, transaction_ids, wire_attributes


def _with_fingerprint(header_and_body: bytes) -> bytes:
    size = struct.unpack_from("!H", header_and_body, 2)[0] + 8
    covered = header_and_body[:2] + struct.pack("!H", size) + header_and_body[4:]
    return covered + struct.pack("!HHI", 0x8028, 4, fingerprint(covered))


plain = st.builds(
    lambda tid: Message(Method.BINDING, MessageClass.REQUEST, tid).encode(), transaction_ids
)
requests = st.one_of(
    plain,
    plain.map(_with_fingerprint),
    st.builds(
        lambda method, cls, tid, attributes, fp: Message(method, cls, tid, attributes).encode(
            fingerprint=fp
        ),
        any_method,
        st.sampled_from(MessageClass),
        transaction_ids,
        st.lists(wire_attributes, max_size=3).map(tuple),
        st.booleans(),
    ),
    transaction_ids.map(lambda tid: b"\x00\x01\x00\x00" + tid[:4] + tid + bytes(4)),  # classic
)


@st.composite
def datagrams(draw: st.DrawFn) -> bytes:
    return damaged(draw, draw(requests), draw(st.sampled_from(("none", *DAMAGE))))


@given(data=datagrams(), remote=sources, software=st.sampled_from((None, "icestack test")))
def test_lean_and_typed_paths_answer_alike(data: bytes, remote: Address, software: str) -> None:
    lean = BindingServer(ServerConfig(software=software))
    typed = BindingServer(ServerConfig(software=software))
    for _ in range(2):  # the second answer comes from the lean path's cache
        answer = lean.respond(data, None, remote, 0.0)
        assert answer == typed._process_typed(data, None, remote, 0.0, False)
    assert lean.stats.counts == typed.stats.counts


@given(data=st.one_of(plain, plain.map(_with_fingerprint)), remote=sources)
def test_plain_requests_take_the_lean_path(data: bytes, remote: Address) -> None:
    assert BindingServer()._plain_binding(data, remote) is not None


def _sockaddr(remote: Address) -> tuple[object, ...]:
    """What a UDP socket reports for ``remote``: IPv6 addresses come with flow info and scope."""
    return (remote.host, remote.port, 0, 0) if ":" in remote.host else (remote.host, remote.port)


@given(data=datagrams(), remote=sources)
def test_the_drivers_entry_point_answers_and_counts_as_respond(
    data: bytes, remote: Address
) -> None:
    """``respond_plain`` (the UDP driver's first call, with the socket's address tuple), then
    ``respond`` when it declines: the typed path's bytes and counts, the second time from the
    cache."""
    direct = BindingServer()
    typed = BindingServer()
    for _ in range(2):
        answer = direct.respond_plain(data, _sockaddr(remote))
        if answer is None:
            answer = direct.respond(data, None, remote, 0.0)
        assert answer == typed._process_typed(data, None, remote, 0.0, False)
    assert direct.stats.counts == typed.stats.counts


def test_the_drivers_entry_point_declines_when_the_server_authenticates() -> None:
    credentials = ShortTermCredentials.from_passwords({"user": "password"})
    server = BindingServer(ServerConfig(authentication=credentials))
    request = Message(Method.BINDING, MessageClass.REQUEST, bytes(12)).encode()
    assert server.respond_plain(request, ("192.0.2.1", 3478)) is None
    assert BindingServer().respond_plain(request, ("192.0.2.1", 3478)) is not None
