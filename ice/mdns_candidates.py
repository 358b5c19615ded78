"""mDNS for a :class:`~ice.aio.Connection`'s candidates: ours hidden behind ``.local`` names, the
peer's resolved (RFC 8828 privacy, the mmusic "mDNS ICE candidates" draft; :mod:`ice.mdns`).

Theory of operation. A connection makes its :class:`MdnsCandidates` when gathering starts if it
hides its host candidates, else with the peer's first ``.local`` candidate (most sessions have
none: they hold no mDNS state at all); :meth:`MdnsCandidates.start` notes the interfaces
gathered on and, to hide host candidates, opens a :class:`~ice.mdns.Responder` that publishes one
``<uuid>.local`` name per host address. The :class:`~ice.mdns.Resolver` on those interfaces is
opened with the first remote ``.local`` name to look up — a session whose peer signals addresses
never opens an mDNS socket — and from then on also keeps what it hears announced.
:meth:`MdnsCandidates.signalled` is a local candidate as the peer sees it: a host candidate under
its name (withheld when it has none), reflexive ones with their related address hidden, and
foundations that leak no address. A remote ``.local`` candidate is resolved in the background
(:meth:`MdnsCandidates.resolve`) through the connection's one resolver — no socket of its own:
one lookup per name, whatever the number of candidates that carry it, at most
:data:`MAX_CONCURRENT_LOOKUPS` names at a time, the others waiting their turn in order, and at most
``limit`` ``.local`` candidates taken per generation (the peer signals as many as it likes; the
agent keeps no more remote candidates than that anyway). The connection hears back once per
candidate, with the address or ``None`` (then a :class:`~ice.mdns.CandidateUnresolvable` event
says why, in words that are true: no answer in time, the mDNS sockets could not be opened, the
cap). A relay-only connection (``local_link=False``) neither listens nor queries on the local
link: its ``.local`` candidates are reported unresolvable at once. A restart abandons the
resolutions of the previous generation; when the interface addresses changed, the resolver is
made anew on those of now (an IPv4 resolver sends through its addresses, and the names it heard
are forgotten with it), names are published for the new addresses and forgotten for the gone
ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from stun.address import Address, is_destination

from .candidate import Candidate, CandidateType
from .mdns import CandidateUnresolvable, InterfaceAddress, Resolver, Responder
from .mdns_cache import normalise_name
from .shared_values import SharedValues

if TYPE_CHECKING:
    from .aio import Connection

_log = logging.getLogger("icestack.ice")

#: How many names are looked up at once; more wait their turn (each lookup queries its name
#: about three times in ``mdns_timeout``, on every interface).
MAX_CONCURRENT_LOOKUPS = 16
#: The placeholder a hidden related address becomes (RFC 8839 §5.1: "0.0.0.0" / "::", port 9).
_HIDDEN_RELATED = {False: Address("0.0.0.0", 9), True: Address("::", 9)}
#: The interface addresses of the connections of this process: mostly one value, held once.
_ADDRESSES: SharedValues[tuple[InterfaceAddress, ...]] = SharedValues()


def shared_addresses(addresses: list[InterfaceAddress]) -> tuple[InterfaceAddress, ...]:
    """The interface addresses gathered on, as a tuple shared by the connections that gathered
    on the same ones."""
    return _ADDRESSES.get(tuple(addresses))


def signalled(mdns: MdnsCandidates | None, candidate: Candidate) -> Candidate | None:
    """A local candidate as the peer sees it (:meth:`MdnsCandidates.signalled`); as it is when
    the connection has no mDNS side (``None``: nothing hidden)."""
    return candidate if mdns is None else mdns.signalled(candidate)


class MdnsCandidates:
    """The mDNS side of one connection: publishing our names, resolving the peer's.

    The connection hears back through three of its methods (held as the connection, not as
    bound methods: 64 bytes each): ``_admit_resolved`` is asked before a name's lookup starts
    whether its candidate can still be used (``None`` if so, else why not: the agent's table of
    remote candidates is full), ``_resolved`` gets each candidate's address or ``None``, and
    ``_emit`` each :class:`~ice.mdns.CandidateUnresolvable`.
    """

    __slots__ = (
        "_addresses",
        "_closed",
        "_connection",
        "_foundation_salt",
        "_generation",
        "_hide_hosts",
        "_limit",
        "_local_link",
        "_lookups",
        "_names",
        "_queue",
        "_resolver",
        "_responder",
        "_taken",
        "_timeout",
    )

    def __init__(
        self,
        connection: Connection,
        *,
        hide_hosts: bool,
        timeout: float,
        limit: int,
        local_link: bool,
    ) -> None:
        self._connection = connection
        self._hide_hosts = hide_hosts
        self._timeout = timeout
        self._limit = limit
        self._local_link = local_link
        self._resolver: Resolver | None = None
        self._responder: Responder | None = None
        #: Our ``.local`` name of each host address (none unless hidden).
        self._names: dict[str, str] | None = {} if hide_hosts else None
        #: Keys the foundations signalled while hidden (:meth:`signalled`); none needed else.
        self._foundation_salt = secrets.token_bytes(16) if hide_hosts else b""
        #: Names being looked up, with the candidates that wait for each (made with the first
        #: remote ``.local`` candidate, as the next table: most sessions have none).
        self._lookups: dict[str, tuple[asyncio.Future[str], list[Candidate]]] | None = None
        #: Names waiting for a free lookup, in the order they came, with their candidates.
        self._queue: dict[str, list[Candidate]] | None = None
        #: ``.local`` candidates taken this generation (at most ``limit``).
        self._taken = 0
        #: The interface addresses the resolver works on, from the start of gathering (``None``:
        #: not started, or no resolving on the local link).
        self._addresses: tuple[InterfaceAddress, ...] | None = None
        self._generation = 0
        self._closed = False

    @property
    def resolving(self) -> bool:
        """Whether a remote name is still being resolved or waits to be."""
        return bool(self._lookups or self._queue)

    def start(self, addresses: tuple[InterfaceAddress, ...]) -> None:
        """Resolve the peer's names on ``addresses`` (from the first one), and publish ours there
        if hidden (not at all without ``local_link``)."""
        if not self._local_link:
            return
        self._addresses = addresses
        if not self._hide_hosts:
            return
        try:
            self._responder = Responder(addresses)
        except OSError as exc:
            _log.warning("host candidates withheld: they cannot be published by mDNS (%s)", exc)
            return
        self._publish(addresses)

    def _publish(self, addresses: Iterable[InterfaceAddress]) -> None:
        if self._responder is not None and self._names is not None:
            for address in addresses:
                self._names[address.host] = self._responder.publish(address.host)

    def signalled(self, candidate: Candidate) -> Candidate | None:
        """The candidate as the peer sees it: host addresses behind mDNS names when hidden, with
        the related address of reflexive candidates and foundations that leak no address."""
        if not self._hide_hosts:
            return candidate
        foundation = hashlib.blake2b(
            candidate.foundation.encode(), digest_size=8, key=self._foundation_salt
        ).hexdigest()
        if candidate.type is CandidateType.HOST:
            name = None if self._names is None else self._names.get(candidate.host)
            if name is None:
                return None
            return dataclasses.replace(candidate, host=name, foundation=foundation)
        related = candidate.related_address
        if related is not None and is_destination(related):  # not hidden by the agent already
            related = _HIDDEN_RELATED[":" in related.host]
        return dataclasses.replace(candidate, related_address=related, foundation=foundation)

    def resolve(self, candidate: Candidate) -> bool:
        """Resolve a remote ``.local`` candidate in the background. ``False`` when it is not
        taken: ``limit`` were taken this generation already (reported unresolvable, and logged
        once a generation)."""
        if not self._local_link:
            self._unresolvable(
                candidate, "not resolved: a relay-only connection sends nothing on the local link"
            )
            self._connection._resolved(candidate, None)
            return True
        if self._taken >= self._limit:
            if self._taken == self._limit:
                _log.info(
                    "remote .local candidates beyond %d in this generation are dropped unresolved",
                    self._limit,
                )
            self._taken = self._limit + 1
            self._connection._emit(
                CandidateUnresolvable(
                    candidate,
                    f"not resolved: {self._limit} .local candidates were taken in this "
                    "generation already (max_remote_candidates)",
                )
            )
            return False
        self._taken += 1
        name = normalise_name(candidate.host)
        lookups, queue = self._tables()
        if name in lookups:
            lookups[name][1].append(candidate)
        elif name in queue or len(lookups) >= MAX_CONCURRENT_LOOKUPS:
            queue.setdefault(name, []).append(candidate)
        else:
            self._start_lookup(name, [candidate])
        return True

    def _tables(
        self,
    ) -> tuple[dict[str, tuple[asyncio.Future[str], list[Candidate]]], dict[str, list[Candidate]]]:
        """The lookups and the queue, made at first use."""
        if self._lookups is None or self._queue is None:
            self._lookups, self._queue = {}, {}
        return self._lookups, self._queue

    def _start_lookup(self, name: str, candidates: list[Candidate]) -> None:
        connection = self._connection
        admitted = []
        for candidate in candidates:
            refusal = connection._admit_resolved(candidate)
            if refusal is None:
                admitted.append(candidate)
            else:
                self._unresolvable(candidate, f"not resolved: {refusal}")
                connection._resolved(candidate, None)
        if not admitted:
            return
        resolver = self._resolver
        if resolver is None:
            assert self._addresses is not None  # noted when gathering started
            resolver = self._resolver = Resolver(self._addresses)
        task = asyncio.ensure_future(resolver.resolve(name, self._timeout))
        self._tables()[0][name] = (task, admitted)
        task.add_done_callback(functools.partial(self._done, name, self._generation))

    def _done(self, name: str, generation: int, task: asyncio.Future[str]) -> None:
        if task.cancelled() or self._closed or generation != self._generation:
            return
        lookups, queue = self._tables()
        _, candidates = lookups.pop(name)
        error = task.exception()
        for candidate in candidates:
            if error is not None:
                expected = isinstance(error, OSError | TimeoutError)
                self._unresolvable(candidate, str(error) if expected else f"a bug: {error!r}")
            self._connection._resolved(candidate, None if error is not None else task.result())
        while queue and len(lookups) < MAX_CONCURRENT_LOOKUPS:
            waiting = next(iter(queue))
            self._start_lookup(waiting, queue.pop(waiting))

    def _unresolvable(self, candidate: Candidate, reason: str) -> None:
        _log.info("remote candidate %s unresolvable: %s", candidate.host, reason)
        self._connection._emit(CandidateUnresolvable(candidate, reason))

    def restart(
        self, addresses: tuple[InterfaceAddress, ...], added: list[InterfaceAddress]
    ) -> None:
        """ICE restart on the interface ``addresses`` of now (``added`` since the last): the
        previous generation's resolutions are abandoned, the resolver follows the addresses,
        and so do our names."""
        self._generation += 1
        self._taken = 0
        self._cancel()  # before the resolver closes: an abandoned lookup is not "unresolvable"
        hosts = {address.host for address in addresses}
        if self._addresses is not None:
            if self._resolver is not None and hosts != {a.host for a in self._addresses}:
                self._resolver.close()
                self._resolver = None  # opened anew on these addresses by the next lookup
            self._addresses = addresses
        self._publish(added)
        if self._names is not None:
            for host in [host for host in self._names if host not in hosts]:
                del self._names[host]

    def _cancel(self) -> None:
        if self._lookups is not None:
            for task, _ in self._lookups.values():
                task.cancel()
        self._lookups = self._queue = None

    def close(self) -> None:
        """Stop resolving and answering."""
        self._closed = True
        self._cancel()
        if self._responder is not None:
            self._responder.close()
        if self._resolver is not None:
            self._resolver.close()
