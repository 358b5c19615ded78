"""ice.mdns_answers: what our responder says, sans-IO on a virtual clock — positive and NSEC
answers whatever the socket's family, one-shot and unicast-response queriers, the once-a-second
multicast limit per record and link, known answers, announcements and goodbyes; and hypothesis:
any query leaves the tables within their bounds."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ice.dns import AddressRecord, DnsMessage, NsecRecord, Question, RecordType
from ice.mdns_answers import HOST_RECORD_TTL, LEGACY_TTL, MDNS_PORT, Answerer
from tests.ice.test_dns import dns_messages

V4 = "0b5a7c1e-0000-4000-8000-000000000004.local"
V6 = "0b5a7c1e-0000-4000-8000-000000000006.local"
A4 = AddressRecord(V4, "192.0.2.1", HOST_RECORD_TTL, cache_flush=True)
NSEC4 = NsecRecord(V4, V4, frozenset({RecordType.A}), HOST_RECORD_TTL, cache_flush=True)
AAAA6 = AddressRecord(V6, "2001:db8::1", HOST_RECORD_TTL, cache_flush=True)
NSEC6 = NsecRecord(V6, V6, frozenset({RecordType.AAAA}), HOST_RECORD_TTL, cache_flush=True)
#: Links are opaque to the answerer; the driver uses (family, interface index).
IPV4_ETH0, IPV4_ETH1, IPV6_ETH0 = (2, 1), (2, 2), (10, 1)
LINKS = (IPV4_ETH0, IPV4_ETH1, IPV6_ETH0)


def query(*questions: Question, known: tuple[AddressRecord, ...] = ()) -> DnsMessage:
    return DnsMessage(questions=questions, answers=known)


def ask(name: str, rtype: int, unicast: bool = False) -> DnsMessage:
    return query(Question(name, rtype, unicast))


def response(
    answers: tuple[AddressRecord | NsecRecord, ...],
    additionals: tuple[AddressRecord | NsecRecord, ...] = (),
) -> DnsMessage:
    return DnsMessage(response=True, authoritative=True, answers=answers, additionals=additionals)


def answerer() -> Answerer[tuple[int, int]]:
    """Both names published at t=0, their announcements sent and over (t=1)."""
    machine = Answerer[tuple[int, int]](LINKS)
    machine.publish(V4, "192.0.2.1", 0.0)
    machine.publish(V6, "2001:db8::1", 0.0)
    machine.handle_timer(0.0)
    machine.handle_timer(1.0)
    assert machine.get_timer() is None
    return machine


def test_publishing_announces_each_name_twice_on_every_link() -> None:
    machine = Answerer[tuple[int, int]](LINKS)
    machine.publish(V4, "192.0.2.1", 10.0)
    assert machine.get_timer() == 10.0
    first = machine.handle_timer(10.0)
    assert first == [(link, response((A4,), (NSEC4,))) for link in LINKS]
    assert machine.get_timer() == 11.0 and machine.handle_timer(10.9) == []
    assert machine.handle_timer(11.0) == first
    assert machine.get_timer() is None
    assert machine.lookup(V4.upper() + ".") == "192.0.2.1" and machine.lookup("x.local") is None


def test_each_question_gets_its_record_or_nsec_on_the_link_it_came_in_on() -> None:
    machine = answerer()
    # A browser asks A and AAAA separately, over IPv4 only.
    assert machine.receive_query(ask(V4, RecordType.A), MDNS_PORT, IPV4_ETH0, 5.0) == []
    assert machine.receive_query(ask(V4, RecordType.AAAA), MDNS_PORT, IPV4_ETH0, 5.0) == []
    assert machine.receive_query(ask(V6, RecordType.A), MDNS_PORT, IPV4_ETH0, 5.0) == []
    assert machine.receive_query(ask(V6.upper(), RecordType.AAAA), MDNS_PORT, IPV4_ETH0, 5.0) == []
    assert machine.get_timer() == 5.0
    # One message per link: every answer in it, no partner repeated as an additional.
    assert machine.handle_timer(5.0) == [(IPV4_ETH0, response((A4, NSEC4, NSEC6, AAAA6)))]


def test_a_missing_type_is_answered_with_nsec_and_the_address_rides_along() -> None:
    machine = answerer()
    machine.receive_query(ask(V6, RecordType.A), MDNS_PORT, IPV4_ETH1, 5.0)
    assert machine.handle_timer(5.0) == [(IPV4_ETH1, response((NSEC6,), (AAAA6,)))]
    machine.receive_query(ask(V4, RecordType.ANY), MDNS_PORT, IPV6_ETH0, 5.0)
    assert machine.handle_timer(5.0) == [(IPV6_ETH0, response((A4,), (NSEC4,)))]
    machine.receive_query(ask(V4, 16), MDNS_PORT, IPV6_ETH0, 6.0)  # TXT: no such record
    assert machine.handle_timer(6.0) == [(IPV6_ETH0, response((NSEC4,), (A4,)))]


def test_unknown_names_and_responses_are_not_answered() -> None:
    machine = answerer()
    assert machine.receive_query(ask("other.local", RecordType.A), 40000, IPV4_ETH0, 5.0) == []
    announcement = response((A4,))
    assert machine.receive_query(announcement, MDNS_PORT, IPV4_ETH0, 5.0) == []
    assert machine.get_timer() is None


def test_a_record_is_multicast_at_most_once_a_second_per_link_and_never_dropped() -> None:
    machine = answerer()
    machine.receive_query(ask(V4, RecordType.A), MDNS_PORT, IPV4_ETH0, 5.0)
    assert machine.handle_timer(5.0) == [(IPV4_ETH0, response((A4,), (NSEC4,)))]
    for now in (5.2, 5.5, 5.9):  # asked again and again within the second
        machine.receive_query(ask(V4, RecordType.A), MDNS_PORT, IPV4_ETH0, now)
        assert machine.handle_timer(now) == []
    # Another link and another record are not held back.
    machine.receive_query(ask(V4, RecordType.A), MDNS_PORT, IPV4_ETH1, 5.5)
    machine.receive_query(ask(V4, RecordType.AAAA), MDNS_PORT, IPV4_ETH0, 5.5)
    assert machine.handle_timer(5.5) == [
        (IPV4_ETH1, response((A4,), (NSEC4,))),
        (IPV4_ETH0, response((NSEC4,), (A4,))),
    ]
    assert machine.get_timer() == 6.0
    assert machine.handle_timer(6.0) == [(IPV4_ETH0, response((A4,), (NSEC4,)))]  # once
    assert machine.get_timer() is None


def test_one_shot_queriers_get_unicast_at_once_with_id_questions_and_short_ttl() -> None:
    machine = answerer()
    legacy = DnsMessage(
        id=0x4242,
        questions=(Question(V4, RecordType.AAAA), Question("x.local", RecordType.A)),
    )
    for now in (5.0, 5.1):  # not rate limited: every one-shot query gets its answer
        (reply,) = machine.receive_query(legacy, 40000, IPV4_ETH0, now)
        assert reply == DnsMessage(
            id=0x4242,
            response=True,
            authoritative=True,
            questions=(Question(V4, RecordType.AAAA),),
            answers=(NsecRecord(V4, V4, frozenset({RecordType.A}), LEGACY_TTL),),
            additionals=(AddressRecord(V4, "192.0.2.1", LEGACY_TTL),),
        )
    assert machine.get_timer() is None


def test_unicast_response_bit_is_honoured_only_after_a_recent_multicast() -> None:
    machine = answerer()
    # Not multicast here for more than a quarter of the TTL: multicast it (RFC 6762 §5.4).
    assert (
        machine.receive_query(ask(V4, RecordType.A, unicast=True), MDNS_PORT, IPV4_ETH0, 40.0) == []
    )
    assert machine.handle_timer(40.0) == [(IPV4_ETH0, response((A4,), (NSEC4,)))]
    (reply,) = machine.receive_query(
        ask(V4, RecordType.A, unicast=True), MDNS_PORT, IPV4_ETH0, 41.0
    )
    assert reply == response((A4,), (NSEC4,))
    assert machine.get_timer() is None


def test_known_answers_with_half_the_ttl_suppress_ours() -> None:
    machine = answerer()
    fresh = AddressRecord(V4, "192.0.2.1", HOST_RECORD_TTL // 2)
    stale = AddressRecord(V4, "192.0.2.1", HOST_RECORD_TTL // 2 - 1)
    other = AddressRecord(V4, "192.0.2.9", HOST_RECORD_TTL)
    machine.receive_query(
        query(Question(V4, RecordType.A), known=(fresh,)), MDNS_PORT, IPV4_ETH0, 5.0
    )
    assert machine.get_timer() is None
    for known, now in ((stale, 9.0), (other, 11.0)):
        machine.receive_query(
            query(Question(V4, RecordType.A), known=(known,)), MDNS_PORT, IPV4_ETH0, now
        )
        assert machine.handle_timer(now) == [(IPV4_ETH0, response((A4,), (NSEC4,)))]


def test_goodbye_withdraws_every_name_on_every_link() -> None:
    machine = answerer()
    machine.receive_query(ask(V4, RecordType.A), MDNS_PORT, IPV4_ETH0, 5.0)
    goodbye = response(
        (AddressRecord(V4, "192.0.2.1", 0, True), AddressRecord(V6, "2001:db8::1", 0, True))
    )
    assert machine.goodbye() == [(link, goodbye) for link in LINKS]
    assert machine.get_timer() is None and machine.lookup(V4) is None
    assert machine.goodbye() == []


# --------------------------------------------------------------------------- properties

names = st.sampled_from([V4, V6, V4.upper(), "other.local", "local", "a.b.c"])
types = st.sampled_from([*RecordType, 0, 16, 65535])
questions = st.builds(Question, names, types, st.booleans())
records = st.one_of(
    st.builds(
        AddressRecord,
        names,
        st.sampled_from(["192.0.2.1", "2001:db8::1"]),
        st.integers(0, 2**32 - 1),
    ),
    st.builds(
        NsecRecord, names, names, st.frozensets(types, max_size=4), st.integers(0, 2**32 - 1)
    ),
)
queries = dns_messages(questions, st.lists(records, max_size=4).map(tuple))
arrivals = st.tuples(queries, st.sampled_from([MDNS_PORT, 1, 40000]), st.sampled_from(LINKS))


@given(st.lists(arrivals, max_size=30), st.lists(st.floats(0, 3), min_size=30, max_size=30))
def test_any_queries_keep_every_table_within_our_names_and_links(
    arrived: list[tuple[DnsMessage, int, tuple[int, int]]], steps: list[float]
) -> None:
    machine = answerer()
    now = 2.0
    for (message, port, link), step in zip(arrived, steps, strict=False):
        now += step
        for reply in machine.receive_query(message, port, link, now):
            assert reply.response and all(r.name.lower() in (V4, V6) for r in reply.answers)
        for sent_on, multicast in machine.handle_timer(now):
            assert sent_on in LINKS and multicast.id == 0 and not multicast.questions
        timer = machine.get_timer()
        assert timer is None or now < timer <= now + 1.0
    # Two names, two records each, three links: nothing a peer sends adds to that.
    assert machine.table_size <= 2 * 2 * len(LINKS) * 3
