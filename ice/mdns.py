"""Multicast DNS (RFC 6762) for ICE's ``.local`` host candidates, over asyncio.

Browsers hide the address of a host candidate behind a random ``<uuid>.local`` name (the mmusic
"mDNS ICE candidates" draft, answering RFC 8828's privacy concern). To use such a candidate an
agent resolves the name on its own links; an agent that hides its own addresses answers for its
names.

- :class:`Resolver` listens on port 5353 (shared with the host's other responders) on the
  interfaces it is given and keeps what responders multicast, answers and unsolicited
  announcements alike, in a bounded cache for the records' TTL
  (:class:`ice.mdns_cache.AddressCache`).
  :meth:`Resolver.resolve` answers from the cache at once, else multicasts a query for the name's
  A and AAAA records from port 5353 (§5.2), repeated after 1 s, 2 s, 4 s… until ``timeout``.
  Browsers' responders answer only such queries, and only by multicast. Where port 5353 cannot be
  shared, the resolver falls back to one-shot queries from an ephemeral port (§5.1), which other
  responders answer by unicast (§6.7). It raises :class:`OSError` at once when no interface can
  send multicast, and :class:`TimeoutError` when nobody answered in time; the caller reports the
  candidate as unresolvable (:class:`CandidateUnresolvable`) instead of failing.
- :func:`resolve` does the same with a resolver of its own, for one name.
- :class:`Responder` listens on port 5353 and answers for the names it
  :meth:`~Responder.publish`\\ es (:class:`ice.mdns_answers.Answerer` decides what to say): on the
  socket and interface the question came in on, whatever the family of the address; with an NSEC
  record for a type the name lacks (§6.1); by unicast to one-shot queriers (§6.7); by multicast
  otherwise, at most once a second per record and interface (§6). It announces each new name
  (§8.3) and withdraws every name when closed (§10.1).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from .candidate import Candidate
from .dns import DnsMessage, Question, RecordType
from .events import IceEvent
from .mdns_answers import HOST_RECORD_TTL, LEGACY_TTL, MDNS_PORT, Answerer
from .mdns_cache import AddressCache, normalise_name
from .mdns_sockets import (
    MDNS_GROUP_IPV4,
    MDNS_GROUP_IPV6,
    InterfaceAddress,
    Link,
    MdnsSockets,
    Sockaddr,
)

__all__ = [
    "HOST_RECORD_TTL",
    "LEGACY_TTL",
    "MDNS_GROUP_IPV4",
    "MDNS_GROUP_IPV6",
    "MDNS_PORT",
    "CandidateUnresolvable",
    "InterfaceAddress",
    "Resolver",
    "Responder",
    "resolve",
]

#: The first repetition of an unanswered query, doubled each time after (RFC 6762 §5.2).
FIRST_REPEAT = 1.0
#: How long a resolution waits by default: a responder may hold an answer back for up to a second
#: (it multicasts a record at most once a second, §6), and a querier repeats after one (§5.2).
DEFAULT_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class CandidateUnresolvable(IceEvent):
    """A remote ``.local`` candidate could not be resolved by mDNS; it is left out."""

    candidate: Candidate
    reason: str


class Resolver:
    """Resolves ``.local`` names on the given interfaces, remembering what responders announce.

    Must be created inside a running event loop; it never raises (an interface it cannot use
    makes :meth:`resolve` say why). ``cache_size`` bounds the names it remembers.
    """

    def __init__(self, interfaces: Iterable[InterfaceAddress], *, cache_size: int = 256) -> None:
        self._loop = asyncio.get_running_loop()
        self._cache = AddressCache(max_names=cache_size, max_ttl=HOST_RECORD_TTL)
        self._waiting: dict[str, list[asyncio.Future[str]]] = {}
        self._closed = False
        self._sockets = MdnsSockets(interfaces, self._received, one_shot_fallback=True)

    @property
    def interfaces(self) -> list[InterfaceAddress]:
        """The interfaces it queries and listens on."""
        return self._sockets.interfaces

    def cached(self, name: str) -> str | None:
        """An address of ``name`` heard and not expired yet, if any."""
        return self._cache.lookup(name, self._loop.time())

    async def resolve(self, name: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """One IP address of ``name``: from the cache, else by querying (RFC 6762 §5.2).

        Raises :class:`OSError` when no interface can send the query (or the resolver is
        closed) and :class:`TimeoutError` when no answer came within ``timeout`` seconds.
        """
        wanted = normalise_name(name)
        address = self.cached(wanted)
        if address is not None:
            return address
        if self._closed:
            raise OSError(errno.EBADF, "the mDNS resolver is closed")
        answered: asyncio.Future[str] = self._loop.create_future()
        self._waiting.setdefault(wanted, []).append(answered)
        try:
            deadline = self._loop.time() + timeout
            repeat = FIRST_REPEAT
            while True:
                self._query(wanted)
                wait = min(repeat, deadline - self._loop.time())
                done, _ = await asyncio.wait({answered}, timeout=max(wait, 0.0))
                if done:
                    return answered.result()
                if self._loop.time() >= deadline:
                    raise TimeoutError(f"no mDNS answer for {name} within {timeout:g} s")
                repeat *= 2
        finally:
            waiting = self._waiting.get(wanted, [])
            if answered in waiting:
                waiting.remove(answered)
            if not waiting:
                self._waiting.pop(wanted, None)

    def _query(self, name: str) -> None:
        """Ask for ``name``'s A and AAAA records on every link: from port 5353 with ID 0 (§18.1),
        or as a one-shot query with a random ID where the port could not be shared."""
        questions = (Question(name, RecordType.A), Question(name, RecordType.AAAA))
        continuous = DnsMessage(questions=questions).encode()
        one_shot = DnsMessage(id=secrets.randbits(16), questions=questions).encode()
        sent = False
        sockets = self._sockets
        for link in sockets.links:
            data = continuous if sockets.shared(link[0]) else one_shot
            sent = sockets.send_to_group(data, link) or sent
        if sent:
            return
        if sockets.links:  # the sockets are there, the kernel refused the datagrams
            raise OSError(errno.ENETUNREACH, f"the mDNS query was not sent ({sockets.send_error})")
        if sockets.problems:
            detail = "; ".join(sockets.problems)
            raise OSError(errno.ENETUNREACH, f"cannot query by mDNS: {detail}")
        raise OSError(errno.ENETUNREACH, "cannot query by mDNS: no interface to query on")

    def _received(self, message: DnsMessage, source: Sockaddr, link: Link) -> None:
        # Responders send from port 5353, also to one-shot queriers (RFC 6762 §6, §6.7).
        if not message.response or source[1] != MDNS_PORT:
            return
        now = self._loop.time()
        for name in self._cache.add(message, now) & self._waiting.keys():
            address = self._cache.lookup(name, now)
            if address is None:
                continue
            for future in self._waiting[name]:
                if not future.done():
                    future.set_result(address)

    def close(self) -> None:
        """Stop listening; pending :meth:`resolve` calls raise :class:`OSError`."""
        self._closed = True
        self._sockets.close()
        for waiting in self._waiting.values():
            for future in waiting:
                if not future.done():
                    future.set_exception(OSError(errno.EBADF, "the mDNS resolver was closed"))


async def resolve(
    name: str, interfaces: Iterable[InterfaceAddress], *, timeout: float = DEFAULT_TIMEOUT
) -> str:
    """Resolve an mDNS name to one IP address with a resolver of its own (see
    :meth:`Resolver.resolve`)."""
    resolver = Resolver(interfaces)
    try:
        return await resolver.resolve(name, timeout)
    finally:
        resolver.close()


class Responder:
    """Answers mDNS questions for the names it published, on the interfaces it was given.

    Must be created inside a running event loop. Raises :class:`OSError` when it can listen on
    none of the interfaces (port 5353 taken without address sharing, or no multicast).
    """

    def __init__(self, interfaces: Iterable[InterfaceAddress]) -> None:
        self._loop = asyncio.get_running_loop()
        self._by_address: dict[str, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sockets = MdnsSockets(interfaces, self._received)
        if not self._sockets.links:
            self._sockets.close()
            detail = "; ".join(self._sockets.problems) or "no interface given"
            raise OSError(errno.EADDRNOTAVAIL, f"cannot answer mDNS queries ({detail})")
        self._answerer = Answerer[Link](self._sockets.links)

    @property
    def interfaces(self) -> list[InterfaceAddress]:
        """The interfaces it listens on."""
        return self._sockets.interfaces

    def publish(self, address: str) -> str:
        """A ``<uuid>.local`` name that this responder answers with ``address`` (one name per
        address: publishing the same address again returns the same name). A new name is
        announced on every interface."""
        address = ipaddress.ip_address(address).compressed
        name = self._by_address.get(address)
        if name is None:
            name = f"{uuid.uuid4()}.local"
            self._by_address[address] = name
            self._answerer.publish(name, address, self._loop.time())
            self._flush()
        return name

    def lookup(self, name: str) -> str | None:
        """The address published under ``name``, if any."""
        return self._answerer.lookup(name)

    def _received(self, message: DnsMessage, source: Sockaddr, link: Link) -> None:
        for reply in self._answerer.receive_query(message, source[1], link, self._loop.time()):
            self._sockets.send_to(reply.encode(), link, source)
        self._flush()

    def _flush(self) -> None:
        """Multicast what is due now and wait for the next."""
        for link, message in self._answerer.handle_timer(self._loop.time()):
            self._sockets.send_to_group(message.encode(), link)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self._answerer.get_timer()
        if when is not None:
            self._timer = self._loop.call_at(when, self._flush)

    def close(self) -> None:
        """Withdraw the names (goodbye packets, RFC 6762 §10.1), stop answering and close."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for link, message in self._answerer.goodbye():
            self._sockets.send_to_group(message.encode(), link)
        self._sockets.close()
        self._by_address.clear()
