"""The TURN server core against random sequences of validly signed requests of every method
(Allocate, Refresh, CreatePermission, ChannelBind, Connect, ConnectionBind) with any attribute
values, ChannelData, Send indications, peers' datagrams, TCP notifications and time, from clients
at any address over any transport.

Asserted after every step: nothing raised; every response answers a request we sent, with its
method and a code RFC 8656 / RFC 6062 allow for that method, protected with the key the request
was signed with whenever it carries integrity; data goes to peers only from relayed addresses in
use; and every table stays within its configured bound, measured. At the end a new client is
still served.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import (
    Address,
    Attribute,
    Message,
    MessageClass,
    Method,
    PasswordAlgorithmId,
    SecurityFeatures,
    make_address,
)
from stun.datagram import Datagram
from tests.turn.harness import (
    EPOCH,
    NONCE_SECRET,
    PASSWORDS,
    REALM,
    RELAY_HOSTS,
    SERVER,
    Client,
    Listeners,
    code,
    config,
)
from tests.turn.test_server_properties import check_tables
from turn import (
    ChannelNumber,
    ConnectionId,
    Lifetime,
    RequestedTransport,
    ReservationToken,
    TransportProtocol,
    TurnAttrType,
    XorPeerAddress,
    XorRelayedAddress,
)
from turn.server import (
    ClientTransport,
    FiveTuple,
    OpenPeerConnection,
    PortRangeAllocator,
    TurnServerCore,
)
from turn.server.table import MAX_PENDING_EVENTS

from .signed import (
    Draft,
    LongTermSigner,
    Signer,
    addresses,
    attributes_of,
    channel_numbers,
    drafts,
    hosts,
    payloads,
    sources,
    wire_attributes,
)

T = TypeVar("T")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TT = TurnAttrType
FEATURES = SecurityFeatures.PASSWORD_ALGORITHMS  # the server offers SHA-256 and MD5
SIGNERS: list[Signer | None] = [
    LongTermSigner("alice", PASSWORDS["alice"], REALM, NONCE_SECRET, FEATURES),
    LongTermSigner(
        "alice", PASSWORDS["alice"], REALM, NONCE_SECRET, FEATURES,
        (PasswordAlgorithmId.SHA256, PasswordAlgorithmId.MD5), PasswordAlgorithmId.SHA256,
    ),
    LongTermSigner("bob", PASSWORDS["bob"], REALM, NONCE_SECRET, FEATURES),
    LongTermSigner("alice", "not her password", REALM, NONCE_SECRET, FEATURES),
    None,
]  # fmt: skip
#: The codes each method may be answered with (400, 401 and 438 for any: authentication).
AUTHENTICATION = {400, 401, 438}
ALLOWED_CODES: dict[int, set[int]] = {
    Method.ALLOCATE: {300, 420, 437, 440, 442, 486, 508},
    Method.REFRESH: {420, 437, 441, 443},
    Method.CREATE_PERMISSION: {403, 420, 437, 441, 443, 508},
    Method.CHANNEL_BIND: {403, 420, 437, 441, 443, 508},
    Method.CONNECT: {403, 420, 437, 441, 443, 446, 447, 508},
    Method.CONNECTION_BIND: {420, 441},
    Method.BINDING: {420},
}
#: The attributes each method is built around, mixed with any others.
LIKELY: dict[int, tuple[int, ...]] = {
    Method.ALLOCATE: (
        _TT.REQUESTED_TRANSPORT, _TT.LIFETIME, _TT.EVEN_PORT, _TT.RESERVATION_TOKEN,
        _TT.REQUESTED_ADDRESS_FAMILY, _TT.ADDITIONAL_ADDRESS_FAMILY, _TT.DONT_FRAGMENT,
    ),
    Method.REFRESH: (_TT.LIFETIME, _TT.REQUESTED_ADDRESS_FAMILY),
    Method.CREATE_PERMISSION: (_TT.XOR_PEER_ADDRESS,),
    Method.CHANNEL_BIND: (_TT.CHANNEL_NUMBER, _TT.XOR_PEER_ADDRESS),
    Method.CONNECT: (_TT.XOR_PEER_ADDRESS,),
    Method.CONNECTION_BIND: (_TT.CONNECTION_ID,),
    Method.BINDING: (_TT.XOR_PEER_ADDRESS,),
}  # fmt: skip
#: What a sane client would put first, so that sequences get past the first checks often.
SANE: dict[int, st.SearchStrategy[tuple[Attribute, ...]]] = {
    Method.ALLOCATE: st.sampled_from(TransportProtocol).map(lambda p: (RequestedTransport(p),)),
    Method.CHANNEL_BIND: st.integers(0x4000, 0x4003).map(lambda n: (ChannelNumber(n),)),
    Method.REFRESH: st.sampled_from((0, 600)).map(lambda n: (Lifetime(n),)),
}


def with_sane_start(draft: Draft, start: tuple[Attribute, ...]) -> Draft:
    return Draft(draft.method, draft.message_class, draft.transaction_id,
                 (*start, *draft.attributes), draft.fingerprint)  # fmt: skip


def method_drafts(methods: tuple[int, ...]) -> st.SearchStrategy[Draft]:
    """Requests of ``methods`` with their likely attributes and any others, sane ones first
    half the time."""
    return st.sampled_from(methods).flatmap(
        lambda method: st.builds(
            with_sane_start,
            drafts(
                st.just(method),
                attributes=st.one_of(attributes_of(*LIKELY[method]), wire_attributes),
                max_attributes=4,
            ),
            st.one_of(st.just(()), SANE.get(method, st.just(()))),
        )
    )


send_drafts = drafts(
    st.just(Method.SEND),
    classes=st.just(MessageClass.INDICATION),
    attributes=st.one_of(attributes_of(_TT.XOR_PEER_ADDRESS, _TT.DATA), wire_attributes),
    max_attributes=4,
)
#: Which earlier value a step reuses (a token, a relayed address, a CONNECTION-ID, a peer).
recall = st.integers(0, 7)
#: Which of SIGNERS signs: the valid ones mostly.
signer_indexes = st.sampled_from((0, 0, 0, 1, 1, 2, 3, 4))

requests = st.tuples(
    st.just("request"), st.integers(0, 2), method_drafts(tuple(LIKELY)), signer_indexes, recall
)
timers = st.tuples(st.just("timer"), st.one_of(st.floats(0.0, 5.0), st.floats(0.0, 700.0)))
tcp_events = st.tuples(
    st.just("tcp"),
    st.sampled_from(["connected", "failed", "closed", "arrived", "relayed", "stream closed"]),
    recall,
    addresses,
    st.integers(0, 70000),
)
steps = st.one_of(
    requests,
    requests,
    requests,
    st.tuples(st.just("channel"), st.integers(0, 2),
              st.one_of(st.integers(0x4000, 0x4002), channel_numbers), payloads),
    st.tuples(st.just("send"), st.integers(0, 2), send_drafts, signer_indexes, recall),
    st.tuples(st.just("peer"), recall, addresses, payloads),
    timers,
    tcp_events,
)  # fmt: skip
clients = st.lists(st.tuples(sources, st.sampled_from(ClientTransport)), min_size=3, max_size=3)
variants = st.fixed_dictionaries(
    {
        "rfc5766_channels": st.booleans(),
        "alternate_server": st.sampled_from([None, None, None, make_address("192.0.2.99", 3478)]),
    }
)


def recent(values: list[T], which: int) -> T:
    """One of ``values``, the latest ones most often (``which`` counts back from the end)."""
    return values[-1 - which % len(values)]


@dataclass
class Run:
    """One server and what the steps learnt from it (values to reuse, requests to match)."""

    server: TurnServerCore
    relays: PortRangeAllocator
    now: float = 0.0
    #: Who signed the requests not yet answered, by transaction ID and method (drafts may share
    #: a transaction ID, and a Connect is answered later).
    pending: dict[tuple[bytes, int], list[Signer | None]] = field(default_factory=dict)
    tokens: list[bytes] = field(default_factory=list)
    relayed: list[Address] = field(default_factory=list)
    connection_ids: list[int] = field(default_factory=list)
    #: The CONNECTION-IDs of connections to peers the server was told to open.
    opened: list[int] = field(default_factory=list)
    peers: list[Address] = field(default_factory=lambda: [make_address("203.0.113.9", 5000)])

    def reuse(self, draft: Draft, which: int) -> Draft:
        """The draft with a value learnt earlier added, so that sequences can go deep: a
        RESERVATION-TOKEN the server gave, a relayed address as a peer, a CONNECTION-ID."""
        extra: list[Attribute] = []
        if draft.method == Method.ALLOCATE and self.tokens and which % 2:
            extra.append(ReservationToken(recent(self.tokens, which)))
        elif draft.method in (Method.CREATE_PERMISSION, Method.CHANNEL_BIND, Method.CONNECT,
                              Method.SEND):  # fmt: skip
            known = self.peers + self.relayed
            extra.append(XorPeerAddress(known[which % len(known)]))
        elif draft.method == Method.CONNECTION_BIND and self.connection_ids:
            extra.append(ConnectionId(recent(self.connection_ids, which)))
        return with_sane_start(draft, tuple(extra))

    def learn(self, out: list[Datagram]) -> None:
        """Check what the server sent, and keep what later steps may reuse."""
        for datagram in out:
            if datagram.local in self.relays.in_use and datagram.local != SERVER:
                continue  # relayed to a peer, from a relayed address in use
            assert datagram.local == SERVER
            if datagram.data[0] >= 0x40:
                continue  # ChannelData to a client
            message = Message.decode(datagram.data)
            if message.message_class is MessageClass.INDICATION:
                assert message.method in (Method.DATA, Method.CONNECTION_ATTEMPT)
                self.remember_connection(message)
                continue
            self.check_response(message)

    def check_response(self, response: Message) -> None:
        method = response.method
        signers = self.pending[(response.transaction_id, method)]  # it answers one of ours
        error = code(response)
        if error is not None:
            assert error in ALLOWED_CODES[method] | AUTHENTICATION, (Method(method), error)
        # Protected with the key of the request it answers — or, for an Allocate answered again
        # (§7.2: same transaction ID), of the one answered first.
        verifies = [s for s in SIGNERS if s is not None and response.check_integrity(s.key)]
        assert verifies or not response.has_integrity
        signers.remove(next((s for s in signers if s in verifies), signers[-1]))
        token = response.get(ReservationToken)
        if token is not None:
            self.tokens.append(token.token)
        self.relayed += [a.address for a in response.get_all(XorRelayedAddress)]
        self.remember_connection(response)

    def remember_connection(self, message: Message) -> None:
        connection = message.get(ConnectionId)
        if connection is not None:
            self.connection_ids.append(connection.value)


def tcp_notification(run: Run, kind: str, which: int, peer: Address, size: int) -> None:
    server, now = run.server, run.now
    opening = kind in ("connected", "failed")
    ids = (run.opened if opening else run.connection_ids) or [which]
    connection_id = recent(ids, which)
    if kind == "connected":
        server.peer_connected(connection_id, now)
    elif kind == "failed":
        server.peer_connect_failed(connection_id, now)
    elif kind == "closed":
        server.peer_connection_closed(connection_id, now)
    elif kind == "relayed":
        assert server.stream_relayed(connection_id, size, bool(which % 2), now) >= 0
    elif kind == "arrived" and run.relayed:
        arrived = server.peer_connection_arrived(run.relayed[which % len(run.relayed)], peer, now)
        if arrived is not None:
            run.connection_ids.append(arrived)


def check_bounds(run: Run) -> None:
    server = run.server
    check_tables(server, run.relays, run.now)
    config = server.config
    assert server.peer_connection_count <= config.max_peer_connections * server.allocation_count
    assert server.connections.pending_timers <= 2 * server.peer_connection_count + 65
    assert server.failure_sources <= config.failure_table_size
    assert server.table.reservation_count <= config.max_reservations
    assert len(server.table.events) <= MAX_PENDING_EVENTS
    assert all(len(a.channel_by_peer) == len(a.channels) for a in server.allocations())


def make_run(options: dict[str, Any]) -> Run:
    relays = PortRangeAllocator(RELAY_HOSTS, range(50000, 50012))
    settings: dict[str, Any] = {
        "user_quota": 3, "total_quota": 4, "max_permissions": 4, "max_channels": 3,
        "max_reservations": 2, "max_peer_connections": 3, "failure_table_size": 8,
        "failure_burst": 3, "rng": random.Random(8),
    }  # fmt: skip
    settings.update(options)
    server = TurnServerCore(
        config(**settings), relays, tcp_listeners=Listeners(), wall_clock_offset=EPOCH
    )
    return Run(server, relays)


def execute(run: Run, who: list[tuple[Address, ClientTransport]], step: tuple[Any, ...]) -> None:
    """Carry out one step, then check and learn from what the server sent, and its bounds."""
    server, kind = run.server, step[0]
    if kind in ("request", "send"):
        _, index, draft, signer_index, which = step
        source, transport = who[index]
        draft = run.reuse(draft, which)
        signer = SIGNERS[signer_index]
        if draft.message_class is MessageClass.REQUEST:
            run.pending.setdefault((draft.transaction_id, draft.method), []).append(signer)
        # A ConnectionBind carries the nonce of the control connection (RFC 6062 §4.3; client 0
        # holds the TCP allocation in the TCP test).
        nonce_for = who[0][0] if draft.method == Method.CONNECTION_BIND else source
        data = draft.encode(signer, nonce_for, run.now)
        server.receive_datagram(data, SERVER, source, run.now, transport=transport)
    elif kind == "channel":
        _, index, number, payload = step
        source, transport = who[index]
        data = number.to_bytes(2, "big") + len(payload).to_bytes(2, "big") + payload
        server.receive_datagram(data, SERVER, source, run.now, transport=transport)
    elif kind == "peer":
        _, which, peer, payload = step
        if run.relayed:
            server.receive_datagram(payload, run.relayed[which % len(run.relayed)], peer, run.now)
    elif kind == "timer":
        run.now += step[1]
        server.handle_timer(run.now)
    elif step[1] == "stream closed":
        source, transport = who[step[2] % len(who)]
        server.connection_closed(FiveTuple(source, SERVER, transport))
    else:
        tcp_notification(run, *step[1:])
    run.learn(server.datagrams_to_send(run.now))
    for command in server.tcp_commands():
        if isinstance(command, OpenPeerConnection):
            run.connection_ids.append(command.connection_id)
            run.opened.append(command.connection_id)
    while server.next_event() is not None:
        pass
    check_bounds(run)


def prologue(
    who: list[tuple[Address, ClientTransport]], allocating: int = 3
) -> list[tuple[Any, ...]]:
    """What sane clients do first: allocate (a TCP relay over a stream), a permission for a peer,
    and a channel to it, each of the first ``allocating`` clients its own; the random steps take
    it from there."""
    steps: list[tuple[Any, ...]] = []
    for index, (_, transport) in enumerate(who[:allocating]):
        protocol = TransportProtocol.TCP if transport.is_stream else TransportProtocol.UDP
        sane: list[tuple[Method, tuple[Attribute, ...]]] = [
            (Method.ALLOCATE, (RequestedTransport(protocol),)),
            (Method.CREATE_PERMISSION, ()),
            (Method.CHANNEL_BIND, (ChannelNumber(0x4000 + index),)),
        ]
        for number, (method, attributes) in enumerate(sane):
            tid = bytes([index, number]) + bytes(10)
            draft = Draft(method, MessageClass.REQUEST, tid, attributes)
            steps.append(("request", index, draft, 0, 0))
    return steps


@SETTINGS
@given(variants, clients, st.lists(steps, min_size=15, max_size=40))
def test_random_signed_sequences_never_escape_and_keep_every_bound(
    options: dict[str, Any], who: list[tuple[Address, ClientTransport]], plan: list[Any]
) -> None:
    run = make_run(options)
    for step in [*prologue(who), *plan]:
        execute(run, who, step)
    # The server keeps serving: a client it has not seen allocates while there is room.
    server = run.server
    newcomer = Client(server, address=make_address("198.51.100.200", 1234), username="bob",
                      password=PASSWORDS["bob"])  # fmt: skip
    if options["alternate_server"] is None and server.allocation_count < server.config.total_quota:
        response = newcomer.allocate(now=run.now)
        assert code(response) in (None, 486, 508)  # bob's own quota, or out of relayed ports


# --------------------------------------------------------------------------- TCP relays

#: A control connection (client 0, which has a TCP allocation and a permission for a peer) and
#: two data connections from the same host (clients 1 and 2) that ConnectionBind may come on.
tcp_requests = st.one_of(
    st.tuples(
        st.just("request"),
        st.just(0),
        method_drafts((Method.CONNECT, Method.CONNECT, Method.CREATE_PERMISSION, Method.REFRESH)),
        signer_indexes,
        recall,
    ),
    st.tuples(
        st.just("request"),
        st.integers(1, 2),
        method_drafts((Method.CONNECTION_BIND,)),
        signer_indexes,
        recall,
    ),
)
tcp_steps = st.one_of(tcp_requests, tcp_requests, tcp_events, tcp_events, timers)


@SETTINGS
@given(hosts, st.lists(tcp_steps, min_size=10, max_size=40))
def test_random_signed_tcp_relay_sequences_never_escape_and_keep_every_bound(
    host: str, plan: list[Any]
) -> None:
    who = [
        (make_address(host, 40000), ClientTransport.TCP),
        (make_address(host, 40001), ClientTransport.TCP),
        (make_address(host, 40002), ClientTransport.TLS),
    ]
    run = make_run({})
    for step in [*prologue(who, allocating=1), *plan]:
        execute(run, who, step)
