"""mDNS for a :class:`~ice.aio.Connection`'s candidates: ours hidden behind ``.local`` names, the
peer's resolved (RFC 8828 privacy, the mmusic "mDNS ICE candidates" draft; :mod:`ice.mdns`).

Theory of operation. When gathering starts, :meth:`MdnsCandidates.start` opens a
:class:`~ice.mdns.Resolver` on the interfaces gathered on — listening from then on catches the
peer's announcements before its candidates arrive — and, to hide host candidates, a
:class:`~ice.mdns.Responder` that publishes one ``<uuid>.local`` name per host address.
:meth:`MdnsCandidates.signalled` is a local candidate as the peer sees it: a host candidate under
its name (withheld when it has none), reflexive ones with their related address hidden, and
foundations that leak no address. A remote ``.local`` candidate is resolved in the background
(:meth:`MdnsCandidates.resolve`), at most ``limit`` at a time; the connection hears back once per
candidate, with the address or ``None`` (then a :class:`~ice.mdns.CandidateUnresolvable` event
says why). A restart abandons the resolutions of the previous generation; when the interface
addresses changed, the resolver is made anew on those of now (an IPv4 resolver sends through its
addresses, and the names it heard are forgotten with it), names are published for the new
addresses and forgotten for the gone ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import logging
import secrets
from collections.abc import Callable

from stun.address import Address

from .candidate import Candidate, CandidateType
from .events import IceEvent
from .mdns import CandidateUnresolvable, InterfaceAddress, Resolver, Responder

_log = logging.getLogger("icestack.ice")

#: The placeholder a hidden related address becomes (RFC 8839 §5.1: "0.0.0.0" / "::", port 9).
_HIDDEN_RELATED = {False: Address("0.0.0.0", 9), True: Address("::", 9)}


class MdnsCandidates:
    """The mDNS side of one connection: publishing our names, resolving the peer's."""

    def __init__(
        self,
        *,
        hide_hosts: bool,
        timeout: float,
        limit: int,
        emit: Callable[[IceEvent], None],
        resolved: Callable[[Candidate, str | None], None],
    ) -> None:
        self._hide_hosts = hide_hosts
        self._timeout = timeout
        self._limit = limit
        self._emit = emit
        self._resolved = resolved
        self._resolver: Resolver | None = None
        self._responder: Responder | None = None
        #: Our ``.local`` name of each host address.
        self._names: dict[str, str] = {}
        self._foundation_salt = secrets.token_bytes(16)
        self._lookups: set[asyncio.Future[str | None]] = set()
        #: The interface addresses the resolver works on.
        self._hosts: set[str] = set()
        self._generation = 0
        self._closed = False

    @property
    def resolving(self) -> bool:
        """Whether a remote name is still being resolved."""
        return bool(self._lookups)

    def start(self, addresses: list[InterfaceAddress]) -> None:
        """Listen for the peer's names on ``addresses``, and publish ours there if hidden."""
        self._resolver = Resolver(addresses)
        self._hosts = {address.host for address in addresses}
        if not self._hide_hosts:
            return
        try:
            self._responder = Responder(addresses)
        except OSError as exc:
            _log.warning("host candidates withheld: they cannot be published by mDNS (%s)", exc)
            return
        self._publish(addresses)

    def _publish(self, addresses: list[InterfaceAddress]) -> None:
        if self._responder is not None:
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
            name = self._names.get(candidate.host)
            if name is None:
                return None
            return dataclasses.replace(candidate, host=name, foundation=foundation)
        related = candidate.related_address
        if related is not None:
            related = _HIDDEN_RELATED[":" in related.host]
        return dataclasses.replace(candidate, related_address=related, foundation=foundation)

    def resolve(self, candidate: Candidate) -> bool:
        """Resolve a remote ``.local`` candidate in the background; ``False`` (and nothing done)
        when ``limit`` resolutions are running already: the peer signals as many as it likes."""
        if len(self._lookups) >= self._limit:
            return False
        task = asyncio.ensure_future(self._lookup(candidate))
        self._lookups.add(task)
        task.add_done_callback(functools.partial(self._done, candidate, self._generation))
        return True

    async def _lookup(self, candidate: Candidate) -> str | None:
        try:
            assert self._resolver is not None  # made when gathering started
            return await self._resolver.resolve(candidate.host, self._timeout)
        except (OSError, TimeoutError) as exc:
            _log.info("remote candidate %s unresolvable: %s", candidate.host, exc)
            self._emit(CandidateUnresolvable(candidate, str(exc)))
            return None

    def _done(
        self, candidate: Candidate, generation: int, task: asyncio.Future[str | None]
    ) -> None:
        self._lookups.discard(task)
        if task.cancelled() or self._closed or generation != self._generation:
            return
        self._resolved(candidate, task.result())

    def restart(self, addresses: list[InterfaceAddress], added: list[InterfaceAddress]) -> None:
        """ICE restart on the interface ``addresses`` of now (``added`` since the last): the
        previous generation's resolutions are abandoned, the resolver follows the addresses,
        and so do our names."""
        self._generation += 1
        self._cancel()  # before the resolver closes: an abandoned lookup is not "unresolvable"
        hosts = {address.host for address in addresses}
        if self._resolver is not None and hosts != self._hosts:
            self._resolver.close()
            self._resolver = Resolver(addresses)
            self._hosts = hosts
        self._publish(added)
        for host in [host for host in self._names if host not in hosts]:
            del self._names[host]

    def _cancel(self) -> None:
        for task in self._lookups:
            task.cancel()
        self._lookups.clear()

    def close(self) -> None:
        """Stop resolving and answering."""
        self._closed = True
        self._cancel()
        if self._responder is not None:
            self._responder.close()
        if self._resolver is not None:
            self._resolver.close()
