"""asyncio layer of ICE-TCP (RFC 6544): a :class:`~ice.aio.Connection`'s listening sockets — the
agent's TCP bases — and the TCP connections the agent opens and accepts, carried out from its
commands (:mod:`ice.tcp`).

Theory of operation. Every socket is non-blocking and served on readiness (``loop.add_reader`` /
``add_writer``), as the UDP bases are; nothing here decides anything about ICE. A listening socket
(:func:`listen_base`, Nagle off through :func:`stun.aio_sockets.tcp_socket`) is bound next to each
UDP base on the same interface address, on a port of its own. Each connection it accepts is
offered to the agent (``tcp_accepted``): refused ones are closed at once, so a flood of incoming
connections costs a socket for the time of one call. An :class:`~ice.tcp.OpenTcp` connects from
an ephemeral port of the base's address (from the base itself, ``SO_REUSEPORT``, for a
simultaneous open) and reports ``tcp_connected`` or ``tcp_closed``; the agent gives up at its own
``tcp_connect_timeout`` with a :class:`~ice.tcp.CloseTcp`. Bytes read go to ``receive_stream`` as
they come (at most :data:`READ_BATCH` reads a wake-up); the agent cuts them into RFC 4571 frames.

Writes are bounded. What the kernel does not take at once waits in a buffer of at most
:data:`WRITE_LIMIT` bytes per connection, written as the socket becomes writable; a write that
would pass the bound is dropped whole — a frame is never cut, so the stream stays in step — and
counted (:attr:`TcpSockets.dropped_writes`): a slow TCP path loses data as a congested UDP path
would, and nothing grows without limit.

A connection that ends without a :class:`~ice.tcp.CloseTcp` — the peer closed or reset it, a
write failed — is reported with ``tcp_closed`` and the reason, after the current call returns.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from typing import TYPE_CHECKING

from stun.address import Address, normalize_host
from stun.aio_sockets import tcp_socket
from stun.aio_streams import ACCEPT_RETRY_DELAY, OUT_OF_RESOURCES
from stun.framing import MAX_RFC4571_PACKET
from stun.ports import PortRange, PortRangeExhausted, bind_in_range

from .candidate import TcpType
from .checklist import CandidatePair
from .errors import LocalProtocolError
from .tcp import CloseTcp, OpenTcp, TcpCommand, WriteTcp

if TYPE_CHECKING:
    from .agent import Agent
    from .aio import Connection

_log = logging.getLogger("icestack.ice")

#: How many bytes wait to be written on one connection at most; a write past it is dropped.
WRITE_LIMIT = 256 * 1024
#: How many reads (of up to :data:`_READ_SIZE` bytes) one wake-up of a connection does.
READ_BATCH = 16
#: How many connections one wake-up of a listening socket accepts.
ACCEPT_BATCH = 64
_READ_SIZE = 65536
_BACKLOG = 64
_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})
_LENGTH = struct.Struct("!H")


def listen_base(
    host: str,
    *,
    avoid: int = 0,
    listening: bool = True,
    simultaneous_open: bool = False,
    port_range: PortRange | None = None,
    backlog: int = _BACKLOG,
) -> socket.socket:
    """A non-blocking TCP socket on ``host``, listening unless told not to (an agent with active
    candidates only never accepts, but its base needs an address): an ephemeral port other than
    ``avoid`` (the UDP base's: a TCP base needs an address of its own, and both port spaces may
    hand out the same number) — or one of ``port_range`` (:func:`stun.ports.bind_in_range`) —
    or with ``simultaneous_open`` one that connections may also leave from (``SO_REUSEPORT``);
    ``backlog`` connections wait to be accepted."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(1 if port_range is not None else 8):
        sock = tcp_socket(family)
        try:
            _prepare(sock, family, simultaneous_open)
            bind_in_range(sock, host, port_range, avoid=avoid)
            if sock.getsockname()[1] == avoid:
                sock.close()
                continue
            if listening:
                sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock
    raise OSError(errno.EADDRINUSE, f"no TCP port on {host} apart from {avoid}")


def _prepare(sock: socket.socket, family: int, simultaneous_open: bool) -> None:
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if simultaneous_open:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def _address(sockaddr: tuple[object, ...]) -> Address:
    host, port = sockaddr[0], sockaddr[1]
    assert isinstance(host, str) and isinstance(port, int)
    return Address(normalize_host(host), port)


class TcpLink:
    """One TCP connection of the agent, known to it by ``connection``."""

    __slots__ = (
        "base",
        "batching",
        "connecting",
        "connection",
        "owner",
        "pending",
        "remote",
        "sock",
    )

    def __init__(
        self,
        owner: TcpSockets,
        sock: socket.socket,
        connection: int,
        base: Address,
        remote: Address,
        *,
        connecting: bool,
    ) -> None:
        self.owner = owner
        self.sock = sock
        self.connection = connection
        #: The TCP base it belongs to (it was accepted there, or connects from there).
        self.base = base
        self.remote = remote
        self.connecting = connecting
        #: Bytes the kernel did not take yet (at most :data:`WRITE_LIMIT`).
        self.pending = bytearray()
        #: A write went out this turn of the loop: the next ones wait for :meth:`flush`.
        self.batching = False

    def read_ready(self) -> None:
        owner = self.owner
        recv = self.sock.recv
        to_agent = False
        for _ in range(READ_BATCH):
            try:
                data = recv(_READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                owner.lost(self, exc.strerror or str(exc))
                return
            if not data:
                owner.lost(self, "closed by the peer")
                return
            to_agent |= owner.received(self, data)
            if self.sock.fileno() < 0:
                break  # the agent closed it meanwhile
        if to_agent:
            owner.pump()

    def connect_ready(self) -> None:
        """The connect finished, one way or the other."""
        owner = self.owner
        owner.loop.remove_writer(self.sock.fileno())
        error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            owner.lost(self, os.strerror(error))
            return
        self.connecting = False
        owner.loop.add_reader(self.sock.fileno(), self.read_ready)
        if self.pending:
            owner.loop.add_writer(self.sock.fileno(), self.write_ready)
        owner.connected(self)

    def write(self, data: bytes) -> bool:
        """Write ``data``; ``False`` if it would pass the bound. The first write after a quiet
        moment leaves at once; what follows it in the same turn of the loop waits for the turn
        to end and leaves in one ``send`` (:meth:`flush`), so a burst costs few system calls
        and a lone message no delay."""
        pending = self.pending
        if len(pending) + len(data) > WRITE_LIMIT:
            return False
        if pending or self.connecting or self.batching:
            pending += data
            return True
        self.batching = True
        self.owner.loop.call_soon(self.flush)
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.owner.lost_later(self, exc.strerror or str(exc))
            return True
        if sent < len(data):
            pending += data[sent:]
        return True

    def flush(self) -> None:
        """Send what waits, as much as the kernel takes; the rest when it is writable."""
        self.batching = False
        pending = self.pending
        if not pending or self.connecting or self.sock.fileno() < 0:
            return
        try:
            sent = self.sock.send(pending)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.owner.lost(self, exc.strerror or str(exc))
            return
        del pending[:sent]
        if pending:
            self.owner.loop.add_writer(self.sock.fileno(), self.write_ready)

    def write_ready(self) -> None:
        pending = self.pending
        try:
            sent = self.sock.send(pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.owner.lost(self, exc.strerror or str(exc))
            return
        del pending[:sent]
        if not pending:
            self.owner.loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        loop = self.owner.loop
        fileno = self.sock.fileno()
        if fileno >= 0:
            loop.remove_reader(fileno)
            loop.remove_writer(fileno)
        self.sock.close()


class TcpPath:
    """The fast data path of a component whose selected pair is a TCP pair: its connection,
    written to directly, and the bytes sent since they were last handed to the agent."""

    __slots__ = ("link", "pair", "received", "sent")

    def __init__(self, link: TcpLink, pair: CandidatePair) -> None:
        self.link = link
        self.pair = pair
        self.sent = 0
        self.received = 0

    def send(self, data: bytes) -> bool:
        """Write ``data`` as one RFC 4571 frame; ``False`` if the buffer bound dropped it."""
        if len(data) > MAX_RFC4571_PACKET:
            raise LocalProtocolError(f"{len(data)} bytes: an ICE-TCP frame holds at most 65535")
        if not self.link.write(_LENGTH.pack(len(data)) + data):
            return False
        self.sent += len(data)
        return True


#: The tables of a :class:`TcpSockets` without connections or TCP paths: shared, never added to.
_NO_LINKS: dict[int, TcpLink] = {}
_NO_PATHS: dict[int, TcpPath] = {}


class TcpSockets:
    """The listening sockets and connections of one connection's agent (module docstring)."""

    __slots__ = (
        "_agent",
        "_connection",
        "dropped_writes",
        "links",
        "listeners",
        "loop",
        "paths",
        "port_range",
    )

    def __init__(
        self,
        connection: Connection,
        agent: Agent,
        port_range: PortRange | None = None,
    ) -> None:
        #: The ICE connection: its ``_pump`` runs after the agent heard something, and the
        #: application data of a component's TCP path goes to its receive queue (``_deliver``).
        #: (Held once, not as two bound methods of 64 bytes each.)
        self._connection = connection
        self.loop = connection._loop
        #: The ports the listeners may take (``None``: ephemeral ones).
        self.port_range = port_range
        self._agent = agent
        #: The listening sockets, with the base address the agent knows each by (a tuple: one
        #: or two per interface address, looked up when a base goes or a simultaneous open
        #: fails, never per datagram; a dict of one is 224 bytes).
        self.listeners: tuple[tuple[Address, socket.socket], ...] = ()
        #: The connections by the agent's id, and the fast data path of each component whose
        #: selected pair is a TCP pair: both the shared empty table until the first entry
        #: (:meth:`_link`, :meth:`select`: the only places that add; most sessions end up on
        #: UDP, and an empty dict is 64 bytes).
        self.links: dict[int, TcpLink] = _NO_LINKS
        self.paths: dict[int, TcpPath] = _NO_PATHS
        #: Writes dropped because the connection's buffer was full (module docstring).
        self.dropped_writes = 0

    def pump(self) -> None:
        """Let the connection act on what the agent heard."""
        self._connection._pump()

    # ================================================================== the data path

    def select(self, component: int, pair: CandidatePair) -> None:
        """``pair`` is the component's selected pair now: a TCP pair's data goes straight to
        its connection (any other's through the agent, :mod:`ice.base_sockets`)."""
        self.drop(component, self.loop.time())
        agent = self._agent
        connection = agent.tcp.connection_of(pair)
        link = None if connection is None else self.links.get(connection)
        if link is None:
            return
        if self.paths is _NO_PATHS:
            self.paths = {}
        path = self.paths[component] = TcpPath(link, pair)
        deliver = self._connection._deliver

        def sink(frame: bytes) -> None:
            path.received += len(frame)
            deliver(frame, component)

        agent.tcp.set_sink(link.connection, sink)

    def drop(self, component: int, now: float) -> None:
        """The component's TCP path is gone (consent lost, its connection closed)."""
        path = self.paths.pop(component, None)
        if path is not None:
            self._flush(path, now)
            self._agent.tcp.set_sink(path.link.connection, None)

    def send(self, component: int, data: bytes) -> bool:
        """Send on the component's TCP path; ``False`` if it has none."""
        path = self.paths.get(component)
        if path is None:
            return False
        if not path.send(data):
            self.dropped_writes += 1
        return True

    def flush(self, now: float) -> None:
        """Hand the bytes the fast path sent to the agent (stats, keepalives)."""
        for path in self.paths.values():
            if path.sent or path.received:
                self._flush(path, now)

    def _flush(self, path: TcpPath, now: float) -> None:
        self._agent.count_data(path.pair, now, sent=path.sent, received=path.received)
        path.sent = path.received = 0

    # ================================================================== bases

    def listen(
        self, host: str, *, avoid: int, listening: bool = True, simultaneous_open: bool = False
    ) -> Address:
        """Open a TCP base on ``host`` (see :func:`listen_base`); return its address."""
        sock = listen_base(
            host,
            avoid=avoid,
            listening=listening,
            simultaneous_open=simultaneous_open,
            port_range=self.port_range,
        )
        base = _address(sock.getsockname())
        self.listeners += ((base, sock),)
        if listening:
            self.loop.add_reader(sock.fileno(), self._accept_ready, base, sock)
        return base

    def add_bases(self, agent: Agent, component: int, host: str, *, avoid: int) -> None:
        """Open the TCP bases of an address the agent lacks (both at gathering; at a restart,
        those it released) and declare them to it: one that listens (for passive candidates) or
        only connects (active ones alone), and one for simultaneous open, as its ``tcp_types``
        ask; ports other than ``avoid`` (the UDP base's). A bind that fails is logged and
        skipped, but for :class:`~stun.ports.PortRangeExhausted`: raised."""
        types = agent.config.tcp_types
        has_base = agent.gatherer.has_base
        try:
            if (TcpType.PASSIVE in types or TcpType.ACTIVE in types) and not has_base(
                0, component, host, tcp=True
            ):
                listening = TcpType.PASSIVE in types
                agent.add_tcp_base(
                    0, component, self.listen(host, avoid=avoid, listening=listening)
                )
            if TcpType.SIMULTANEOUS_OPEN in types and not has_base(
                0, component, host, tcp=True, simultaneous_open=True
            ):
                base = self.listen(host, avoid=avoid, simultaneous_open=True)
                agent.add_tcp_base(0, component, base, simultaneous_open=True)
        except PortRangeExhausted:
            raise
        except OSError as exc:
            _log.info("cannot gather TCP candidates on %s: %s", host, exc)

    def listener(self, base: Address) -> socket.socket | None:
        """The listening socket of ``base``, if it is one of ours."""
        return next((sock for known, sock in self.listeners if known == base), None)

    def close_base(self, base: Address) -> None:
        sock = self.listener(base)
        if sock is not None:
            self.listeners = tuple(entry for entry in self.listeners if entry[0] != base)
            self.loop.remove_reader(sock.fileno())
            sock.close()
        for link in [link for link in self.links.values() if link.base == base]:
            del self.links[link.connection]
            link.close()

    def _accept_ready(self, base: Address, sock: socket.socket) -> None:
        now = self.loop.time()
        accepted = False
        for _ in range(ACCEPT_BATCH):
            try:
                client, sockaddr = sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                _log.warning("ICE-TCP listener %s cannot accept: %s", base, exc)
                if exc.errno in OUT_OF_RESOURCES:
                    self._rest(base, sock)
                break
            accepted |= self._adopt(base, client, _address(sockaddr), now) is not None
        if accepted:
            self.pump()

    def _rest(self, base: Address, sock: socket.socket) -> None:
        """accept() failed for want of resources (EMFILE and its kin): the connection waiting
        in the backlog keeps the listener readable, so it stops reading for
        :data:`~stun.aio_streams.ACCEPT_RETRY_DELAY` instead of being woken at once, again and
        again (a busy loop and a warning per turn of the loop)."""
        self.loop.remove_reader(sock.fileno())

        def resume() -> None:
            if self.listener(base) is sock:
                self.loop.add_reader(sock.fileno(), self._accept_ready, base, sock)

        self.loop.call_later(ACCEPT_RETRY_DELAY, resume)

    def _link(
        self,
        sock: socket.socket,
        connection: int,
        base: Address,
        remote: Address,
        *,
        connecting: bool,
    ) -> TcpLink:
        """A new link for the agent's ``connection``, in the table of links."""
        link = TcpLink(self, sock, connection, base, remote, connecting=connecting)
        if self.links is _NO_LINKS:
            self.links = {}
        self.links[connection] = link
        return link

    def _adopt(
        self, base: Address, client: socket.socket, remote: Address, now: float
    ) -> TcpLink | None:
        """Offer a connection accepted on ``base`` to the agent: its link, or ``None`` (closed)."""
        connection = self._agent.tcp_accepted(base, remote, now)
        if connection is None:
            client.close()
            return None
        client.setblocking(False)
        link = self._link(client, connection, base, remote, connecting=False)
        self.loop.add_reader(client.fileno(), link.read_ready)
        return link

    def take(self, base: Address, client: socket.socket, remote: Address, data: bytes) -> bool:
        """A connection accepted on a shared listening socket whose first request is this
        agent's (:mod:`ice.aio_mux_tcp`), with the bytes read from it so far: offered to the
        agent as one accepted on ``base`` would be; ``False`` if the agent refused it (closed)."""
        link = self._adopt(base, client, remote, self.loop.time())
        if link is None:
            return False
        self.received(link, data)
        self.pump()
        return True

    # ================================================================== the agent's commands

    def execute(self, commands: list[TcpCommand]) -> None:
        """Carry out what the agent asked, in order."""
        for command in commands:
            if isinstance(command, WriteTcp):
                link = self.links.get(command.connection)
                if link is not None and not link.write(command.data):
                    self.dropped_writes += 1
            elif isinstance(command, OpenTcp):
                self._open(command)
            elif isinstance(command, CloseTcp):
                link = self.links.pop(command.connection, None)
                if link is not None:
                    link.close()
                    for component, path in list(self.paths.items()):
                        if path.link is link:
                            del self.paths[component]

    def _open(self, command: OpenTcp) -> None:
        local, remote = command.local, command.remote
        family = socket.AF_INET6 if ":" in local.host else socket.AF_INET
        sock = tcp_socket(family)
        try:
            _prepare(sock, family, command.simultaneous_open)
            sock.bind((local.host, local.port if command.simultaneous_open else 0))
            sock.setblocking(False)
            code = sock.connect_ex((remote.host, remote.port))
        except OSError as exc:
            code = exc.errno or errno.EINVAL
        link = self._link(sock, command.connection, local, remote, connecting=True)
        if code == 0:
            self.loop.call_soon(link.connect_ready)
        elif code in _IN_PROGRESS:
            self.loop.add_writer(sock.fileno(), link.connect_ready)
        else:
            listener = self.listener(local)
            if command.simultaneous_open and listener is not None:
                # The peer's attempt may have won the race: its connection, on the 4-tuple ours
                # wanted, waits in our listener. The agent takes it (and drops ours) first.
                self.loop.call_soon(self._accept_ready, local, listener)
            self.lost_later(link, os.strerror(code))

    # ================================================================== notifications

    def connected(self, link: TcpLink) -> None:
        if self.links.get(link.connection) is link:
            self._agent.tcp_connected(link.connection, self.loop.time())
            self.pump()

    def received(self, link: TcpLink, data: bytes) -> bool:
        """Hand bytes to the agent; whether the agent got more than application data for the
        fast path (then it must be pumped)."""
        return self._agent.receive_stream(link.connection, data, self.loop.time())

    def lost(self, link: TcpLink, reason: str) -> None:
        """The connection ended without the agent asking: tell it why."""
        link.close()
        if self.links.get(link.connection) is not link:
            return
        del self.links[link.connection]
        for component, path in list(self.paths.items()):
            if path.link is link:
                self.drop(component, self.loop.time())
        if link.connecting:
            _log.debug("ICE-TCP connection to %s failed: %s", link.remote, reason)
        self._agent.tcp_closed(link.connection, self.loop.time(), reason)
        self.pump()

    def lost_later(self, link: TcpLink, reason: str) -> None:
        """:meth:`lost`, once the call that found out (a command being carried out) returned."""
        self.loop.call_soon(self.lost, link, reason)

    def close(self) -> None:
        """Close every socket (the agent is closed: nobody is told)."""
        for link in self.links.values():
            link.close()
        self.links, self.paths = _NO_LINKS, _NO_PATHS
        for base, _ in self.listeners:
            self.close_base(base)
