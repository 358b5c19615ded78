"""A TCP allocation of the TURN client (RFC 6062) against a hostile server: answers to its Connects
and ConnectionBinds signed with the right key but carrying any values, ConnectionAttempt
indications with any attributes, junk, time, the application's commands and lost connections,
in any order.

Each run first makes a TCP allocation with the real server core (tests/turn/test_tcp_client.py's
wire), then the hostile server takes over. Asserted after every step: nothing raised out of
``receive_datagram``, ``handle_timer`` or ``connection_lost`` (commands raise only
:class:`turn.LocalProtocolError`); every peer announced or connected is one a connection can go
to, with a CONNECTION-ID of 32 bits; a data connection's binding ends once, and never binds
without a success response to its own ConnectionBind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

import turn
from stun import Address, Message, MessageClass, Method
from stun.address import is_destination
from tests.turn.test_tcp_client import CONTROL, tcp_allocation
from turn import ConnectionId, TurnAllocation, TurnAttrType, XorPeerAddress
from turn.client.tcp import BindingState, ConnectionBinding
from turn.events import (
    ConnectFailed,
    ConnectionAttempted,
    ConnectionBindFailed,
    ConnectionBound,
    PeerConnected,
)

from .signed import Draft, addresses, attributes_of, drafts, wire_attributes
from .test_turn_client_signed import KNOWN_PEERS, SETTINGS, responses

attempts = drafts(
    st.just(Method.CONNECTION_ATTEMPT),
    classes=st.just(MessageClass.INDICATION),
    attributes=st.one_of(
        st.sampled_from(KNOWN_PEERS).map(XorPeerAddress),
        attributes_of(TurnAttrType.XOR_PEER_ADDRESS, TurnAttrType.CONNECTION_ID),
        wire_attributes,
    ),
    max_attributes=4,
)
peers = st.one_of(st.sampled_from(KNOWN_PEERS), addresses)
actions = st.one_of(
    st.tuples(st.just("answer"), st.integers(0, 3)),
    st.tuples(st.just("answer"), st.integers(0, 3)),
    st.tuples(st.just("attempt"), attempts),
    st.tuples(st.just("junk"), st.binary(max_size=40)),
    st.tuples(st.just("timer"), st.one_of(st.floats(0.0, 5.0), st.floats(0.0, 100.0))),
    st.tuples(st.just("connect"), peers),
    st.tuples(st.just("permit"), peers),
    st.tuples(st.just("bind"), st.integers(0, 2**32 - 1)),
    st.tuples(st.just("lost"), st.booleans()),
)


@dataclass
class Hostile:
    """The allocation, its data connections' bindings, what waits for an answer, the clock."""

    alloc: TurnAllocation
    now: float = 0.0
    bindings: list[ConnectionBinding] = field(default_factory=list)
    #: Requests not yet answered, with the machine that sent them.
    pending: list[tuple[TurnAllocation | ConnectionBinding, Message]] = field(default_factory=list)
    ended: dict[int, int] = field(default_factory=dict)

    @property
    def machines(self) -> list[TurnAllocation | ConnectionBinding]:
        return [self.alloc, *self.bindings]

    def collect(self) -> None:
        for machine in self.machines:
            for datagram in machine.datagrams_to_send(self.now):
                if datagram.data[0] < 4:
                    message = Message.decode(datagram.data)
                    if message.message_class is MessageClass.REQUEST:
                        self.pending.append((machine, message))

    def command(self, kind: str, value: object) -> None:
        alloc, now = self.alloc, self.now
        try:
            if kind == "connect":
                assert isinstance(value, Address)
                alloc.connect(value, now)
            elif kind == "permit":
                assert isinstance(value, Address)
                alloc.create_permission(value, now)
            else:
                assert isinstance(value, int)
                self.bindings.append(alloc.bind_connection(value, now))
        except turn.LocalProtocolError:
            pass  # the documented refusal: wrong state, peer family, a Connect under way

    def check(self) -> None:
        while (event := self.alloc.next_event()) is not None:
            if isinstance(event, PeerConnected | ConnectionAttempted):
                assert is_destination(event.peer)
                assert 0 <= event.connection_id < 2**32
            assert not isinstance(event, ConnectionBound | ConnectionBindFailed)
            if isinstance(event, ConnectFailed):
                assert event.error is not None
        for index, binding in enumerate(self.bindings):
            while (event := binding.next_event()) is not None:
                assert isinstance(event, ConnectionBound | ConnectionBindFailed)
                assert event.connection_id == binding.connection_id
                self.ended[index] = self.ended.get(index, 0) + 1
            assert self.ended.get(index, 0) == (binding.state is not BindingState.BINDING)


@SETTINGS
@given(st.data())
def test_a_hostile_server_never_makes_a_tcp_allocation_raise(data: st.DataObject) -> None:
    wire, alloc = tcp_allocation()
    del wire.machines[CONTROL]  # from here on, the hostile server answers
    hostile = Hostile(alloc)
    server = alloc.server
    for _ in range(data.draw(st.integers(1, 25), label="steps")):
        kind, value = data.draw(actions)
        if kind == "answer" and hostile.pending:
            assert isinstance(value, int)
            machine, request = hostile.pending.pop(value % len(hostile.pending))
            answer = data.draw(responses(request), label=f"answer to {request!r}")
            machine.receive_datagram(answer, None, server, hostile.now)
        elif kind == "attempt":
            assert isinstance(value, Draft)
            indication = value.encode(None, server, hostile.now)
            alloc.receive_datagram(indication, None, server, hostile.now)
        elif kind == "junk":
            assert isinstance(value, bytes)
            for machine in hostile.machines:
                machine.receive_datagram(value, None, server, hostile.now)
        elif kind == "timer":
            assert isinstance(value, float)
            hostile.now += value
            for machine in hostile.machines:
                machine.handle_timer(hostile.now)
        elif kind == "lost" and hostile.bindings:
            hostile.bindings[-1].connection_lost(hostile.now)
        elif kind == "lost" and value:
            alloc.connection_lost(hostile.now)
        elif kind in ("connect", "permit", "bind"):
            hostile.command(kind, value)
        hostile.collect()
        hostile.check()


def test_the_connection_attempt_strategy_reaches_the_allocation() -> None:
    """The positive control: a well-formed ConnectionAttempt becomes an event."""
    _, alloc = tcp_allocation()
    indication = Message(
        Method.CONNECTION_ATTEMPT, MessageClass.INDICATION, bytes(12),
        [XorPeerAddress(KNOWN_PEERS[0]), ConnectionId(7)],
    )  # fmt: skip
    alloc.receive_datagram(indication.encode(), None, alloc.server, 0.0)
    assert alloc.next_event() == ConnectionAttempted(KNOWN_PEERS[0], 7)
