"""RFC 5780 behaviour discovery against anything a peer sends: the Binding server with two
addresses (stun.behavior) and the discovery client (stun.discovery).

Server: validly signed requests with any attribute values (CHANGE-REQUEST, RESPONSE-PORT and
PADDING with any value among them), reaching any of its sockets from any source: nothing raises,
every answer leaves from one of its four sockets towards the source's IP, and an unauthenticated
padded answer is no larger than its request (RFC 5780 §9). Client: any bytes, and responses to its
own transactions with any attributes from any address, at any point: nothing raises, and the
discovery still ends, with a result, within its bounded schedule.
"""

from __future__ import annotations

import random
from typing import cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stun import Address, BindingServer, Message, MessageClass, Method, ServerConfig, make_address
from stun.attributes import Attribute, Padding
from stun.behavior import BehaviorAddresses
from stun.discovery import NatDiscovery
from stun.discovery_results import DiscoveryConfig

from .signed import Draft, addresses, drafts, sources, wire_attributes

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ADDRESSES = BehaviorAddresses(
    primary=Address("192.0.2.1", 3478), alternate=Address("192.0.2.2", 3479)
)
LOCALS = st.sampled_from([*ADDRESSES.sockets, Address("192.0.2.9", 3478)])


@SETTINGS
@given(
    st.lists(
        st.tuples(drafts(st.just(Method.BINDING)), sources, LOCALS, st.floats(0, 1)),
        min_size=1,
        max_size=20,
    )
)
def test_the_server_answers_only_from_its_sockets_and_never_amplifies(
    sends: list[tuple[Draft, Address, Address, float]],
) -> None:
    server = BindingServer(ServerConfig(behavior=ADDRESSES, rng=random.Random(0)))
    now = 0.0
    for draft, source, local, step in sends:
        now += step
        data = draft.encode(None, source, now)
        before = sum(server.stats.counts.values())
        answer = server.answer(data, local, source, now)
        assert sum(server.stats.counts.values()) == before + 1
        if answer is None:
            continue
        assert answer.local in (*ADDRESSES.sockets, local)
        assert answer.remote.host == source.host
        response = Message.decode(answer.data)
        assert response.transaction_id == draft.transaction_id
        padding = response.get(Padding)
        if padding is not None and padding.value:
            assert len(answer.data) <= len(data)


def _drive(discovery: NatDiscovery, now: float) -> float:
    """Run the discovery's timers until it ends, answering nothing; the time it ended."""
    for _ in range(10_000):
        if discovery.result is not None:
            return now
        deadline = discovery.get_timer()
        assert deadline is not None, "a discovery without a result must have a timer"
        now = max(now, deadline)
        discovery.handle_timer(now)
        discovery.datagrams_to_send(now)
    raise AssertionError("the discovery did not end")


peer_input = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=80), addresses),
    st.tuples(
        st.just("answer"),
        st.tuples(st.sampled_from(MessageClass), st.lists(wire_attributes, max_size=5)),
        addresses,
    ),
)


@SETTINGS
@given(st.lists(st.tuples(peer_input, st.floats(0, 3)), max_size=25), st.booleans())
def test_the_discovery_absorbs_anything_and_still_ends(
    inputs: list[tuple[tuple[str, object, Address], float]], lifetime: bool
) -> None:
    config = DiscoveryConfig(
        test_timeout=1.0, lifetime=lifetime, lifetime_max=20.0, lifetime_resolution=5.0
    )
    local = make_address("198.51.100.7", 40000)
    discovery = NatDiscovery(
        ADDRESSES.primary,
        local=local,
        second=make_address("198.51.100.7", 40001),
        config=config,
        rng=random.Random(1),
    )
    now = 0.0
    discovery.start(now)
    for (kind, value, remote), step in inputs:
        now += step
        if discovery.result is None:
            discovery.handle_timer(now)
        sent = discovery.datagrams_to_send(now)
        if kind == "bytes":
            data = cast(bytes, value)
        else:
            message_class, attributes = cast(tuple[MessageClass, list[Attribute]], value)
            transaction_id = sent[-1].data[8:20] if sent else bytes(12)
            data = Message(Method.BINDING, message_class, transaction_id, attributes).encode()
        discovery.receive_datagram(data, local, remote, now)
    _drive(discovery, now)
    result = discovery.result
    assert result is not None
    for finding in (result.mapping, result.filtering, result.hairpinning):
        assert (finding.verdict is None) == (finding.reason is not None)
