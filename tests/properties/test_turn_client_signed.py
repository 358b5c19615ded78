"""The TURN client (turn.client.TurnAllocation) in every state against a hostile server: answers to
its requests signed with the right key but carrying any values, Data indications and ChannelData
from any peer, junk, datagrams from elsewhere, time, the application's commands and a lost
connection, in any order.

Each run first brings the allocation to one :class:`~turn.AllocationState` with the real server
core, then the hostile server takes over. Asserted after every step: nothing raised out of
``receive_datagram`` or ``handle_timer`` (commands raise only :class:`turn.LocalProtocolError`, the
documented local misuse); no relayed address, data sender or server to move to is port 0, the
unspecified address or multicast; and the client's tables (permissions, channels, requests) stay
within their bounds, measured.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import turn
from stun import (
    Address,
    AlternateServer,
    Attribute,
    AttrType,
    ErrorCode,
    Integrity,
    Message,
    MessageClass,
    Method,
    PasswordAlgorithmId,
    XorMappedAddress,
    long_term_key,
    make_address,
)
from stun.client import Credentials
from stun.datagram import Datagram
from tests.turn.harness import PASSWORDS, PEER, REALM
from tests.turn.test_client import ALICE, Pair
from turn import (
    AllocationState,
    ClientTransport,
    DataReceived,
    Lifetime,
    TurnAllocation,
    TurnAttrType,
    XorPeerAddress,
    XorRelayedAddress,
)
from turn.channel import MAX_CHANNEL, MIN_CHANNEL

from .signed import (
    Draft,
    addresses,
    attributes_of,
    channel_numbers,
    drafts,
    payloads,
    wire_attributes,
)

SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_TT = TurnAttrType
KEYS = {
    "sha-256": (long_term_key("alice", REALM, PASSWORDS["alice"], PasswordAlgorithmId.SHA256),
                Integrity.SHA256),
    "md5": (long_term_key("alice", REALM, PASSWORDS["alice"]), Integrity.SHA1),
    "none": (None, Integrity.SHA1),
}  # fmt: skip
#: Error codes a server answers with, each often (and ERROR-CODE of any value from WIRE_VALUES).
CODES = (300, 400, 401, 403, 420, 437, 438, 440, 441, 442, 443, 446, 447, 486, 500, 508, 599, 699)
_T = AttrType
RESPONSE_ATTRIBUTES = attributes_of(
    _TT.XOR_RELAYED_ADDRESS, _TT.LIFETIME, _TT.RESERVATION_TOKEN, _TT.ADDRESS_ERROR_CODE,
    _TT.CONNECTION_ID, _T.ALTERNATE_SERVER, _T.XOR_MAPPED_ADDRESS, _T.REALM, _T.NONCE,
    _T.UNKNOWN_ATTRIBUTES, _T.PASSWORD_ALGORITHMS,
)  # fmt: skip
OTHER_PEER = make_address("203.0.113.10", 6000)
RELAYED = make_address("192.0.2.1", 50000)
#: Every state, the ones with most to lose twice as often.
STATES = (*AllocationState, AllocationState.ALLOCATING, AllocationState.ALLOCATED)
KNOWN_PEERS = (PEER, OTHER_PEER)


def sane_start(message_class: MessageClass) -> st.SearchStrategy[tuple[Attribute, ...]]:
    """What a real server puts first: ERROR-CODE in an error (and ALTERNATE-SERVER in a 300), the
    addresses and LIFETIME in a success; half the time nothing, and the drawn attributes decide
    alone."""
    sane: st.SearchStrategy[tuple[Attribute, ...]]
    if message_class is MessageClass.ERROR_RESPONSE:
        redirect = st.tuples(st.just(ErrorCode.of(300)), st.builds(AlternateServer, addresses))
        sane = st.one_of(st.sampled_from(CODES).map(lambda code: (ErrorCode.of(code),)), redirect)
    else:
        sane = st.tuples(
            st.builds(XorRelayedAddress, st.one_of(st.just(RELAYED), addresses)),
            st.builds(Lifetime, st.sampled_from((1, 600, 0xFFFFFFFF))),
            st.builds(XorMappedAddress, addresses),
        )
    return st.one_of(st.just(()), sane)


@st.composite
def responses(draw: st.DrawFn, request: Message) -> bytes:
    """A response to ``request``: any class, sane or not, signed with one of the keys."""
    message_class = draw(
        st.sampled_from((MessageClass.SUCCESS_RESPONSE, MessageClass.ERROR_RESPONSE))
    )
    start = draw(sane_start(message_class))
    extra = draw(st.lists(st.one_of(RESPONSE_ATTRIBUTES, wire_attributes), max_size=4))
    method = draw(st.sampled_from((request.method, request.method, Method.BINDING)))
    fingerprint = draw(st.booleans())
    draft = Draft(method, message_class, request.transaction_id, (*start, *extra), fingerprint)
    key, integrity = KEYS[draw(st.sampled_from(("sha-256", "sha-256", "md5", "none")))]
    return draft.encode_with(key, integrity)


indications = drafts(
    st.sampled_from((Method.DATA, Method.DATA, Method.SEND, Method.CONNECTION_ATTEMPT)),
    classes=st.just(MessageClass.INDICATION),
    attributes=st.one_of(
        st.sampled_from(KNOWN_PEERS).map(XorPeerAddress),
        attributes_of(_TT.XOR_PEER_ADDRESS, _TT.DATA, _TT.ICMP),
        wire_attributes,
    ),
    max_attributes=4,
)
channel_data = st.tuples(
    st.one_of(st.integers(MIN_CHANNEL, MIN_CHANNEL + 2), channel_numbers), payloads
).map(lambda pair: pair[0].to_bytes(2, "big") + len(pair[1]).to_bytes(2, "big") + pair[1])
peers = st.one_of(st.sampled_from(KNOWN_PEERS), addresses)
commands = st.one_of(
    st.tuples(st.just("send"), peers, st.integers(0, 2000)),
    st.tuples(st.just("permit"), peers),
    st.tuples(st.just("bind"), peers),
    st.tuples(st.just("close")),
)
answers = st.tuples(st.just("answer"), st.integers(0, 3))
actions = st.one_of(
    answers,
    answers,
    answers,
    st.tuples(st.just("indication"), indications),
    st.tuples(st.just("channel"), channel_data),
    st.tuples(st.just("junk"), st.binary(max_size=40)),
    st.tuples(st.just("elsewhere"), addresses, channel_data),
    st.tuples(st.just("timer"), st.one_of(st.floats(0.0, 5.0), st.floats(0.0, 1000.0))),
    st.tuples(st.just("command"), commands),
    st.tuples(st.just("lost")),
)


def unusable(address: Address) -> bool:
    ip = ipaddress.ip_address(address.host)
    return address.port == 0 or ip.is_unspecified or ip.is_multicast


@dataclass
class Hostile:
    """The allocation, the requests it has sent that wait for an answer, and the clock."""

    alloc: TurnAllocation
    server: Address
    now: float
    pending: list[Message] = field(default_factory=list)

    def feed(self, data: bytes, remote: Address | None = None) -> None:
        self.alloc.receive_datagram(data, None, remote or self.alloc.server, self.now)

    def collect(self, out: list[Datagram]) -> None:
        """Keep the requests the allocation sent (to answer them later); data is dropped."""
        for datagram in out:
            assert not unusable(datagram.remote)
            if datagram.data[0] < 4:
                message = Message.decode(datagram.data)
                if message.message_class is MessageClass.REQUEST:
                    self.pending.append(message)

    def command(self, command: tuple[object, ...]) -> None:
        alloc, now = self.alloc, self.now
        try:
            if command[0] == "send":
                peer, size = command[1], command[2]
                assert isinstance(peer, Address) and isinstance(size, int)
                alloc.send(bytes(size), peer, now)
            elif command[0] == "permit":
                assert isinstance(command[1], Address)
                alloc.create_permission(command[1], now)
            elif command[0] == "bind":
                assert isinstance(command[1], Address)
                alloc.bind_channel(command[1], now)
            else:
                alloc.close(now)
        except turn.LocalProtocolError:
            pass  # the documented refusal: wrong state, peer family, no channel numbers left


def brought_to(state: AllocationState, transport: ClientTransport) -> Hostile:
    """An allocation in ``state``, reached with the real server core (see the module docstring),
    and the requests it has sent that no one answered."""
    wrong = Credentials(username="alice", password="not her password")
    credentials = wrong if state is AllocationState.FAILED else ALICE
    pair = Pair(transport=transport, credentials=credentials)
    held: list[Datagram] = []

    def hold(datagram: Datagram) -> bool:
        held.append(datagram)
        return True

    alloc, now = pair.alloc, 0.0
    if state is AllocationState.ALLOCATING:
        pair.lose = hold
    if state is not AllocationState.IDLE:
        alloc.allocate(now)
        pair.pump(now)
    if state in (AllocationState.ALLOCATED, AllocationState.CLOSING, AllocationState.CLOSED,
                 AllocationState.EXPIRED):  # fmt: skip
        alloc.create_permission(PEER, now)
        alloc.bind_channel(OTHER_PEER, now)
        pair.pump(now)
    if state in (AllocationState.CLOSING, AllocationState.CLOSED):
        if state is AllocationState.CLOSING:
            pair.lose = hold
        alloc.close(now)
        pair.pump(now)
    if state is AllocationState.EXPIRED:
        now = 10_000.0
        alloc.handle_timer(now)
        held += alloc.datagrams_to_send(now)
    assert alloc.state is state
    pair.events()
    hostile = Hostile(alloc, alloc.server, now)
    hostile.collect(held)
    return hostile


def check(hostile: Hostile) -> None:
    alloc = hostile.alloc
    config = alloc.config
    assert not unusable(alloc.server)
    assert not any(unusable(address) for address in alloc.relayed)
    assert alloc.permission_count <= config.max_permissions
    assert alloc.channel_count <= MAX_CHANNEL - MIN_CHANNEL + 1
    assert alloc.requests_in_flight <= config.stun.max_outstanding
    assert alloc.requests_waiting <= 2 * (config.max_permissions + alloc.channel_count + 2)
    while (event := alloc.next_event()) is not None:
        if isinstance(event, DataReceived):
            assert not unusable(event.peer)
            assert event.relayed in alloc.relayed


@SETTINGS
@given(st.sampled_from(STATES), st.sampled_from(ClientTransport), st.data())
def test_a_hostile_server_never_makes_the_client_raise(
    state: AllocationState, transport: ClientTransport, data: st.DataObject
) -> None:
    hostile = brought_to(state, transport)
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        action = data.draw(actions)
        kind = action[0]
        if kind == "answer" and hostile.pending:
            request = hostile.pending.pop(action[1] % len(hostile.pending))
            hostile.feed(data.draw(responses(request), label=f"answer to {request!r}"))
        elif kind == "indication":
            hostile.feed(action[1].encode(None, hostile.server, hostile.now))
        elif kind in ("channel", "junk"):
            hostile.feed(action[1])
        elif kind == "elsewhere":
            hostile.feed(action[2], action[1])
        elif kind == "timer":
            hostile.now += action[1]
            hostile.alloc.handle_timer(hostile.now)
        elif kind == "command":
            hostile.command(action[1])
        elif kind == "lost" and transport.is_stream:
            hostile.alloc.connection_lost(hostile.now)
        hostile.collect(hostile.alloc.datagrams_to_send(hostile.now))
        check(hostile)
