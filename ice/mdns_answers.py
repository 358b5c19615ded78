"""What a Multicast DNS responder says for the ``.local`` names it published (RFC 6762), sans-IO.

Theory of operation. Each published name has exactly two records: its address record (A or
AAAA, one address per name) and an NSEC record in the restricted form of §6.1 that says the name
has no record of any other type. A question for the name's own type (or "any") is answered with
the address record, a question for any other type with the NSEC record; whichever of the two is
not an answer rides along in the additional section (§6.2). So a browser that asks A and AAAA
separately gets its negative answer at once instead of waiting for a timeout, and a name whose
only address is IPv6 still resolves over IPv4: a question is answered on the socket and
interface it came in on, whatever the family of the record.

How an answer travels depends on the query (:meth:`Answerer.receive_query`):

- from a source port other than 5353, a one-shot querier (§6.7): a unicast reply with the
  query's ID and questions, TTLs of at most 10 s and no cache-flush bits, returned at once;
- with the unicast-response bit (§5.4), when the record was multicast on that link within a
  quarter of its TTL: a unicast reply, returned at once;
- otherwise by multicast on the link the question came in on (§6), scheduled: a record is
  multicast on a link at most once a second, so a question that comes sooner is answered when
  the second is over (never dropped), and repeated questions meanwhile add nothing.

Multicast answers and announcements (§8.3: a new name is announced on every link, twice, a
second apart) wait in one table keyed by (link, name, type); :meth:`get_timer` is the earliest
of them and :meth:`handle_timer` returns the messages due, one per link. A known answer in the
query with at least half our TTL suppresses ours (§7.1). Names are random UUIDs, so there is no
probing (§8.1). Every table is keyed by our own names and links: a peer cannot grow it.

Links are opaque keys chosen by the driver (it uses the address family and interface index).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from .dns import AddressRecord, DnsMessage, NsecRecord, Question, Record, RecordType
from .errors import LocalProtocolError
from .mdns_cache import normalise_name

#: The source port of fully compliant Multicast DNS queriers and responders (RFC 6762 §5.2).
MDNS_PORT = 5353
#: Records with host names live 120 s (RFC 6762 §10); answers to one-shot queriers at most 10 s
#: (§6.7).
HOST_RECORD_TTL = 120
LEGACY_TTL = 10
#: The least time between two multicasts of one record on one link (RFC 6762 §6).
MULTICAST_INTERVAL = 1.0
#: Announcements of a new name on each link (RFC 6762 §8.3: at least two, a second apart).
ANNOUNCEMENTS = 2

LinkT = TypeVar("LinkT", bound=Hashable)


@dataclass(frozen=True, slots=True)
class _Published:
    """The two records of a published name."""

    address: AddressRecord
    nsec: NsecRecord

    def record(self, rtype: RecordType) -> Record:
        return self.nsec if rtype is RecordType.NSEC else self.address

    def answer_to(self, question: Question) -> Record:
        """The address record for its own type or "any", the NSEC record otherwise (§6.1)."""
        if question.type in (self.address.type, RecordType.ANY):
            return self.address
        return self.nsec


class Answerer(Generic[LinkT]):
    """The responder's side of RFC 6762 for a set of published names, on a set of links."""

    def __init__(self, links: Iterable[LinkT], *, ttl: int = HOST_RECORD_TTL) -> None:
        if not 1 <= ttl <= 0xFFFF_FFFF:
            raise LocalProtocolError(f"record TTL {ttl} out of range")
        self.ttl = ttl
        self._links = list(dict.fromkeys(links))
        self._names: dict[str, _Published] = {}
        self._last_multicast: dict[tuple[LinkT, str, RecordType], float] = {}
        self._due: dict[tuple[LinkT, str, RecordType], float] = {}
        self._announcements_left: dict[tuple[LinkT, str, RecordType], int] = {}

    def publish(self, name: str, address: str, now: float) -> None:
        """Answer for ``name`` with ``address`` from now on, and announce it on every link."""
        record = AddressRecord(name, address, self.ttl, cache_flush=True)
        key = normalise_name(name)
        self._names[key] = _Published(record, NsecRecord.negative(name, [record.type], self.ttl))
        for link in self._links:
            self._schedule((link, key, record.type), now)
            self._announcements_left[(link, key, record.type)] = ANNOUNCEMENTS - 1

    @property
    def table_size(self) -> int:
        """Entries kept for rate limits and schedules: at most three per record and link."""
        return len(self._last_multicast) + len(self._due) + len(self._announcements_left)

    def lookup(self, name: str) -> str | None:
        """The address published under ``name``, if any."""
        published = self._names.get(normalise_name(name))
        return None if published is None else published.address.address

    def receive_query(
        self, query: DnsMessage, source_port: int, link: LinkT, now: float
    ) -> list[DnsMessage]:
        """Take a query that came in on ``link`` from ``source_port``; return the unicast replies
        to send back to the querier at once (multicast answers are scheduled)."""
        if query.response:
            return []
        legacy = source_port != MDNS_PORT
        known = _known_answers(query, self.ttl)
        unicast: dict[tuple[str, RecordType], Record] = {}
        questions = []
        for question in query.questions:
            key = normalise_name(question.name)
            published = self._names.get(key)
            if published is None:
                continue
            record = published.answer_to(question)
            if (key, record.type, record.rdata()) in known:
                continue
            questions.append(question)
            last = self._last_multicast.get((link, key, record.type))
            recently = last is not None and now - last < self.ttl / 4
            if legacy or (question.unicast_response and recently):
                unicast[(key, record.type)] = record
            else:
                self._schedule((link, key, record.type), now)
        if not unicast:
            return []
        if legacy:
            return [
                DnsMessage(
                    id=query.id,
                    response=True,
                    authoritative=True,
                    questions=tuple(questions),
                    answers=tuple(_legacy(record) for record in unicast.values()),
                    additionals=tuple(_legacy(record) for record in self._partners(unicast)),
                )
            ]
        return [_response(tuple(unicast.values()), self._partners(unicast))]

    def _schedule(self, key: tuple[LinkT, str, RecordType], now: float) -> None:
        last = self._last_multicast.get(key)
        due = now if last is None else max(now, last + MULTICAST_INTERVAL)
        self._due[key] = min(due, self._due.get(key, due))

    def _partners(self, answers: dict[tuple[str, RecordType], Record]) -> tuple[Record, ...]:
        """The other record of each answered name, unless it is an answer too (§6.2)."""
        partners = []
        for name, rtype in answers:
            published = self._names[name]
            other = published.nsec if rtype is not RecordType.NSEC else published.address
            if (name, other.type) not in answers:
                partners.append(other)
        return tuple(partners)

    def get_timer(self) -> float | None:
        """When the next scheduled multicast is due, or ``None``."""
        return min(self._due.values(), default=None)

    def handle_timer(self, now: float) -> list[tuple[LinkT, DnsMessage]]:
        """The multicast messages due by ``now``, one per link, as (link, message)."""
        by_link: dict[LinkT, dict[tuple[str, RecordType], Record]] = {}
        for key, due in list(self._due.items()):
            if due > now:
                continue
            del self._due[key]
            link, name, rtype = key
            published = self._names.get(name)
            if published is None:
                continue
            by_link.setdefault(link, {})[(name, rtype)] = published.record(rtype)
            self._last_multicast[key] = now
            left = self._announcements_left.pop(key, 0)
            if left > 0:
                self._due[key] = now + MULTICAST_INTERVAL
                self._announcements_left[key] = left - 1
        return [
            (link, _response(tuple(answers.values()), self._partners(answers)))
            for link, answers in by_link.items()
        ]

    def goodbye(self) -> list[tuple[LinkT, DnsMessage]]:
        """Withdraw every name (§10.1: its records with TTL 0) on every link, as (link, message);
        the answerer then has no names."""
        records = tuple(replace(p.address, ttl=0) for p in self._names.values())
        self._names.clear()
        self._due.clear()
        self._announcements_left.clear()
        self._last_multicast.clear()
        if not records:
            return []
        return [(link, _response(records, ())) for link in self._links]


def _response(answers: tuple[Record, ...], additionals: tuple[Record, ...]) -> DnsMessage:
    """A Multicast DNS response: ID 0, no questions (RFC 6762 §18.1, §6)."""
    return DnsMessage(response=True, authoritative=True, answers=answers, additionals=additionals)


def _legacy(record: Record) -> Record:
    """The record as a one-shot querier gets it: TTL at most 10 s, no cache-flush bit (§6.7)."""
    return replace(record, ttl=min(record.ttl, LEGACY_TTL), cache_flush=False)


def _known_answers(query: DnsMessage, ttl: int) -> set[tuple[str, RecordType, bytes]]:
    """The records the querier already knows with at least half of ``ttl`` left (§7.1)."""
    return {
        (normalise_name(known.name), known.type, known.rdata())
        for known in query.answers
        if known.ttl * 2 >= ttl
    }
