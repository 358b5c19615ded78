"""The UDP sockets of a :class:`~ice.aio.Connection` — the agent's bases (RFC 8445 §5.1.1.1) — and
the fast data path through them.

Theory of operation. Each base is one non-blocking UDP socket bound to an interface address on an
ephemeral port or one of the connection's ``port_range`` (:func:`bind_base`), read on readiness in
batches (:meth:`BaseSocket.read_ready`, up to :data:`UDP_BATCH` datagrams a wake-up, through
:mod:`stun.batch_io`: ``recvmmsg`` on Linux once the socket is busy, ``recvmsg`` while it is
quiet). A datagram
whose first byte is 0-3 is STUN (RFC 7983) and goes to the agent; so does anything from an address
that is not the remote side of the component's selected pair (the agent delivers it only if a check
proved the address the peer's, :meth:`~ice.agent.Agent.receive_datagram`). Data from that address
goes straight into the connection's receive queue — bounded: when it is full, the datagram is
dropped and counted.

:class:`DataPaths` caches, per component, the selected pair's socket and remote address
(:class:`DataPath`), so that sending and receiving data cost no agent call, no task and no
allocation beyond the bytes; what a socket sends goes through its :class:`~ice.outbox.Outbox`,
many datagrams per system call; the bytes moved are handed to the agent in bulk when the connection
next talks to it (:meth:`DataPaths.flush`). A relayed pair has no socket of ours: its data goes
through the agent, which wraps it for the TURN server. When a path is lost (consent, the local
candidate gone) the reason is kept for whoever sends or waits on that component next.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import TYPE_CHECKING, Any

from stun.address import Address, normalize_host
from stun.batch_io import DatagramIO
from stun.ports import PortRange, bind_in_range

from .candidate import Candidate
from .checklist import CandidatePair
from .outbox import Outbox

if TYPE_CHECKING:
    from .aio import Connection
    from .aio_mux import Mux

_log = logging.getLogger("icestack.ice")

#: An :class:`~stun.address.Address` built without ``NamedTuple``'s Python-level constructor.
_new_tuple = tuple.__new__

#: How many datagrams one wake-up of a socket reader handles before yielding to the loop.
UDP_BATCH = 256
_RECEIVE_BUFFER = 1 << 20


class Signal:
    """Wakes every coroutine waiting for "something changed".

    Each waiter awaits a future of its own, made when it starts waiting and resolved by
    :meth:`fire`: one event-loop callback wakes it (a shared future behind ``asyncio.shield``
    costs three). A waiter cancelled meanwhile takes its future out, so the list holds only
    live waits."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    def fire(self) -> None:
        waiters = self._waiters
        if waiters is not None:
            self._waiters = None
            for future in waiters:
                if not future.done():
                    future.set_result(None)

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the next :meth:`fire`; ``loop``: the running one (asking asyncio for it costs a
        ``getpid`` system call)."""
        future = loop.create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = [future]
        else:
            waiters.append(future)
        try:
            await future
        except BaseException:
            waiters = self._waiters
            if waiters is not None and future in waiters:
                waiters.remove(future)
            raise


class DataPath:
    """Where a component's data goes: the selected pair, its socket's outbox and remote, cached,
    with the bytes moved since they were last handed to the agent."""

    __slots__ = ("component", "host", "outbox", "pair", "port", "received", "remote", "sent")

    def __init__(self, component: int, pair: CandidatePair, outbox: Outbox) -> None:
        self.component = component
        self.pair = pair
        self.outbox = outbox
        #: The remote candidate's own address (a 2-tuple: no copy of it per path).
        self.remote = pair.remote.address
        self.host, self.port = self.remote
        self.sent = 0
        self.received = 0


class BaseSocket:
    """One UDP socket: a base of the agent (RFC 8445 §5.1.1.1), read in batches on readiness."""

    __slots__ = ("component", "connection", "io", "local", "mux", "outbox", "path", "sock")

    def __init__(
        self, connection: Connection, sock: socket.socket, component: int, outbox: Outbox
    ) -> None:
        self.connection = connection
        self.sock = sock
        #: What the socket sends, queued and sent in batches (shared by a mux's bases).
        self.outbox = outbox
        #: Reads many datagrams per system call where the platform can (:mod:`stun.batch_io`).
        self.io = outbox.io
        self.component = component
        host, port = sock.getsockname()[:2]
        self.local = Address(normalize_host(host), port)
        #: The component's selected path when this socket is its local base.
        self.path: DataPath | None = None
        #: The shared-port mux whose socket this base uses, if any (it reads for the base).
        self.mux: Mux | None = None

    def read_ready(self) -> None:
        """The socket is readable: read a batch and handle it."""
        datagrams = read_datagrams(self.io, self.local)
        if datagrams:
            # No flush to hold: the agent's answers leave at once (ice.outbox), or behind a
            # queue whose flush is already scheduled.
            self.handle(datagrams, self.connection._loop.time())

    def handle(self, datagrams: list[tuple[bytes, tuple[Any, ...]]], now: float) -> None:
        """Datagrams that arrived for this base (read from its socket, or routed to it by a
        :class:`~ice.aio_mux.Mux`): data of the selected path into the receive queue, the
        rest to the agent, then one pump."""
        connection = self.connection
        agent = connection._agent
        assert agent is not None
        received = connection._received
        limit = connection._receive_queue_size
        component = self.component
        local = self.local
        path = self.path
        to_agent = delivered = False
        for data, sockaddr in datagrams:
            if (
                path is not None
                and (not data or data[0] > 3)
                and sockaddr[1] == path.port
                and sockaddr[0] == path.host
            ):
                if received is None:
                    received = connection._received = deque()
                if len(received) < limit:
                    received.append((data, component))
                    delivered = True
                else:
                    connection.receive_queue_dropped += 1
                path.received += len(data)
            else:
                try:
                    # sockaddr[:2]: the (host, port) of IPv4's, the same tuple, no copy
                    agent.receive_datagram(data, local, _new_tuple(Address, sockaddr[:2]), now)
                except Exception as error:
                    connection.reader_errors.contain(error, f"ICE socket {local}")
                to_agent = True
        if delivered:
            connection._data_signal.fire()
        if to_agent:
            try:
                connection._pump(now=now)
            except Exception as error:  # a bug: contained, so that no wait misses its wake-up
                connection.reader_errors.contain(error, f"ICE socket {local}")


def read_datagrams(
    io: DatagramIO, local: Address, limit: int = UDP_BATCH
) -> list[tuple[bytes, tuple[Any, ...]]]:
    """Up to ``limit`` datagrams waiting on ``io``'s socket, with their sources: every reader of
    ICE's UDP sockets (a base's, a mux's) reads through this one function. ICMP errors about an
    earlier send are skipped (:mod:`stun.batch_io`); another error ends the batch, logged."""
    try:
        return io.receive(limit)
    except OSError as exc:
        _log.warning("ICE socket %s: %s", local, exc)
        return []


class DataPaths:
    """The selected pair of each component as the fast data path uses it (module docstring).

    It works on its connection's sockets (``_bases``), hands the byte counts to its
    ``_count_data`` and wakes the waits of its ``_data_signal`` when a path is lost: the
    connection is held once, not a bound method (64 bytes) and two references."""

    __slots__ = ("_connection", "_lost", "_relayed", "paths")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        #: The paths of the components whose selected pair is on a socket of ours, one per
        #: component at most. A tuple, replaced when a path comes or goes, looked through by
        #: component: as short as the components (1 with RTP/RTCP multiplexing; not a table a
        #: peer can grow), and a tuple of one is 48 bytes, a list 88, a dict 224.
        self.paths: tuple[DataPath, ...] = ()
        #: Components whose selected pair is relayed: their data goes through the agent, which
        #: wraps it for the TURN server, instead of straight to a socket. Made at the first,
        #: as the next table (most connections never need them).
        self._relayed: dict[int, CandidatePair] | None = None
        #: Why a component has no path any more.
        self._lost: dict[int, str] | None = None

    def __bool__(self) -> bool:
        return bool(self.paths or self._relayed)

    def path(self, component: int) -> DataPath | None:
        """The component's path on a socket of ours, if it has one."""
        for path in self.paths:
            if path.component == component:
                return path
        return None

    def relayed(self, component: int) -> bool:
        """Whether the component's selected pair is relayed (its data goes through the agent)."""
        return self._relayed is not None and component in self._relayed

    def lost(self, component: int) -> str | None:
        """Why the component lost its path, if it did."""
        return None if self._lost is None else self._lost.get(component)

    def select(self, component: int, pair: CandidatePair, now: float) -> None:
        """The agent selected ``pair`` for ``component``."""
        self.drop(component, None, now)
        base = self._connection._bases.get(pair.local_base)
        if self._relayed is not None:
            self._relayed.pop(component, None)
        if base is not None:
            path = DataPath(component, pair, base.outbox)
            self.paths += (path,)
            base.path = path
        else:  # a relayed address is no socket of ours
            if self._relayed is None:
                self._relayed = {}
            self._relayed[component] = pair
        if self._lost is not None:
            self._lost.pop(component, None)

    def lose(self, candidate: Candidate, reason: str, now: float) -> None:
        """A local candidate is gone: so is the path of every component it carried."""
        carried = [(path.component, path.pair) for path in self.paths]
        carried += (self._relayed or {}).items()
        for component, pair in carried:
            if pair.local_base == candidate.base:
                self.drop(component, reason, now)

    def drop(self, component: int, reason: str | None, now: float) -> None:
        """Forget the component's path; with a ``reason``, the component lost it."""
        path = self.path(component)
        if path is not None:
            self.paths = tuple(p for p in self.paths if p is not path)
        else:
            relayed = self._relayed
            if relayed is not None and component in relayed and reason is not None:
                del relayed[component]
                self._lose(component, reason)
            return
        self._flush(path, now)
        for base in self._connection._bases.values():
            if base.path is path:
                base.path = None
        if reason is not None:
            self._lose(component, reason)

    def _lose(self, component: int, reason: str) -> None:
        if self._lost is None:
            self._lost = {}
        self._lost[component] = reason
        self._connection._data_signal.fire()

    def flush(self, now: float) -> None:
        """Hand the bytes the fast path moved to the agent."""
        for path in self.paths:
            if path.sent or path.received:
                self._flush(path, now)

    def _flush(self, path: DataPath, now: float) -> None:
        self._connection._count_data(path.pair, now, path.sent, path.received)
        path.sent = path.received = 0


def bind_base(host: str, port_range: PortRange | None = None) -> socket.socket:
    """A non-blocking UDP socket on ``host``, on an ephemeral port or one of ``port_range``
    (:func:`stun.ports.bind_in_range`): one base."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
        bind_in_range(sock, host, port_range)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
