"""The session events of the TURN server core — permissions and channels granted, requests refused
and why — and the log line :mod:`turn.server.session_log` makes of each."""

from __future__ import annotations

from stun import Method
from stun import Outcome as StunOutcome
from turn.server import (
    AllocationCreated,
    ChannelGranted,
    Outcome,
    PeerPolicy,
    PermissionGranted,
    RequestRefused,
)
from turn.server.session_log import describe

from .harness import CLIENT, PEER, Client, code, events, make_server

LOOPBACK_PEER = PEER._replace(host="127.0.0.1")


def test_permissions_and_channels_are_reported_once_each() -> None:
    server, _ = make_server()
    alice = Client(server)
    alice.allocate()
    (created,) = events(server)
    assert isinstance(created, AllocationCreated)
    assert code(alice.permit(PEER, PEER._replace(host="203.0.113.10"))) is None
    assert events(server) == [
        PermissionGranted(alice.five_tuple, "alice", ("203.0.113.10", "203.0.113.9"))
    ]
    assert code(alice.permit(PEER, now=60.0)) is None  # a refresh: nothing new
    assert events(server) == []
    assert code(alice.bind(0x4000, PEER)) is None
    assert code(alice.bind(0x4000, PEER, now=60.0)) is None  # a refresh
    assert events(server) == [ChannelGranted(alice.five_tuple, "alice", 0x4000, PEER)]
    assert describe(ChannelGranted(alice.five_tuple, "alice", 0x4000, PEER)) == (
        f"udp {CLIENT} 'alice': channel 0x4000 bound to {PEER}"
    )


def test_a_refused_peer_is_reported_with_the_policys_reason() -> None:
    server, _ = make_server()
    alice = Client(server)
    alice.allocate()
    events(server)
    assert code(alice.permit(PEER, LOOPBACK_PEER)) == 403
    assert code(alice.bind(0x4000, LOOPBACK_PEER)) == 403
    refusals = [e for e in events(server) if isinstance(e, RequestRefused)]
    assert [(e.method, e.code, e.outcome) for e in refusals] == [
        (Method.CREATE_PERMISSION, 403, Outcome.FORBIDDEN),
        (Method.CHANNEL_BIND, 403, Outcome.FORBIDDEN),
    ]
    first = refusals[0]
    assert first.detail is not None and first.detail.startswith("peer 127.0.0.1: ")
    line = describe(first)
    assert line.startswith(f"udp {CLIENT} 'alice': CreatePermission refused 403: ")
    assert "--allow-loopback-peers" in line
    assert "--allowed-peer-ip" in describe(
        RequestRefused(first.five_tuple, "alice", Method.CREATE_PERMISSION, 403,
                       Outcome.FORBIDDEN, "peer 10.0.0.1: private (RFC 1918)")
    )  # fmt: skip


def test_an_admitted_loopback_peer_is_not_refused() -> None:
    server, _ = make_server(peer_policy=PeerPolicy(allow_loopback_peers=True))
    alice = Client(server)
    alice.allocate()
    assert code(alice.permit(LOOPBACK_PEER)) is None
    assert [type(e) for e in events(server)] == [AllocationCreated, PermissionGranted]


def test_quota_refusals_name_the_quota() -> None:
    server, _ = make_server(user_quota=1, total_quota=2)
    Client(server).allocate()
    assert code(Client(server, address=CLIENT._replace(port=40001)).allocate()) == 486
    (refused,) = [e for e in events(server) if isinstance(e, RequestRefused)]
    assert (refused.code, refused.detail) == (486, "user_quota 1")
    assert describe(refused).endswith("raise user_quota (serve turn --user-quota) to allow more")
    server, _ = make_server(user_quota=2, total_quota=2)
    Client(server).allocate()
    Client(server, address=CLIENT._replace(port=40001)).allocate()
    bob = Client(server, address=CLIENT._replace(port=40002), username="bob")
    bob.password = "the-builder"
    assert code(bob.allocate()) == 508
    (refused,) = [e for e in events(server) if isinstance(e, RequestRefused)]
    assert (refused.code, refused.detail) == (508, "total_quota 2")
    assert describe(refused).endswith("raise total_quota (serve turn --total-quota) to allow more")


def test_authentication_failures_are_reported_but_not_the_challenge() -> None:
    server, _ = make_server()
    alice = Client(server)
    alice.challenge(0.0)  # the 401 every session starts with
    assert events(server) == []
    mallory = Client(server, address=CLIENT._replace(port=40009), password="guess")
    assert code(mallory.allocate()) == 401
    (refused,) = events(server)
    assert isinstance(refused, RequestRefused)
    assert (refused.username, refused.code, refused.outcome) == (
        "alice", 401, StunOutcome.BAD_INTEGRITY
    )
    assert describe(refused) == (
        f"udp {CLIENT._replace(port=40009)} 'alice': Allocate refused 401: "
        "MESSAGE-INTEGRITY(-SHA256) does not match"
    )
