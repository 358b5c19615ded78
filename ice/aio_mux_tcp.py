"""asyncio layer of the mux's TCP side: :class:`MuxListener`, one listening TCP socket whose
connections belong to the ICE sessions of a :class:`~ice.aio_mux.Mux` — the passive ICE-TCP
candidates (RFC 6544) of every session on one port.

Theory of operation. The listener accepts on readiness (at most
:data:`~ice.tcp_sockets.ACCEPT_BATCH` a wake-up) and reads each new connection on readiness
until the sans-IO :class:`~ice.mux_tcp.TcpMuxTable` decides from its first RFC 4571 frame: it
is closed (counted), or it is handed, with the bytes read so far, to the
:class:`~ice.tcp_sockets.TcpSockets` of the session it was routed to
(:meth:`~ice.tcp_sockets.TcpSockets.take`), whose agent then sees it exactly as a connection
accepted on a listening socket of its own, on the mux's address. From there the session reads,
writes and closes it; a session that closes closes its connections at once. One
``loop.call_at`` at the table's next deadline closes the connections that stayed silent.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from stun.address import Address, normalize_host
from stun.aio_streams import AcceptLoop
from stun.limits import source_key

from .base_sockets import BaseSocket
from .mux_tcp import Dropped, TcpMuxTable
from .tcp import FIRST_FRAME_LIMIT
from .tcp_sockets import ACCEPT_BATCH, TcpSockets

__all__ = ["MuxListener"]

_log = logging.getLogger("icestack.ice")

#: What one read of a connection that is not routed yet takes at most (a first frame).
_FIRST_READ = 2 + FIRST_FRAME_LIMIT


class MuxListener:
    """The listening socket ``sock`` of a mux and the connections it accepted that no session
    has yet (module docstring); ``sessions`` tells each session's TCP side."""

    __slots__ = ("_acceptor", "_loop", "_remotes", "_timer", "local", "sessions", "sock", "table")

    def __init__(
        self,
        sock: socket.socket,
        table: TcpMuxTable[socket.socket, BaseSocket],
        sessions: dict[BaseSocket, TcpSockets],
    ) -> None:
        self.sock = sock
        self.table = table
        self.sessions = sessions
        host, port = sock.getsockname()[:2]
        #: The address of every session's passive TCP candidate.
        self.local = Address(normalize_host(host), port)
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Accepts in batches; rests a while when the process is out of file descriptors.
        self._acceptor: AcceptLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Waiting connections by socket, with the address they came from.
        self._remotes: dict[socket.socket, Address] = {}

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Accept from now on (``loop`` is the running loop)."""
        self._loop = loop
        self._acceptor = AcceptLoop(
            self.sock,
            self._accepted,
            per_event=ACCEPT_BATCH,
            after=self._arm,
            on_failure=self._accept_failed,
        )

    def _accept_failed(self, exc: OSError) -> None:
        _log.warning("mux TCP listener %s cannot accept: %s", self.local, exc)

    def _accepted(self, client: socket.socket, sockaddr: tuple[Any, ...]) -> None:
        loop = self._loop
        assert loop is not None
        client.setblocking(False)
        remote = Address(normalize_host(sockaddr[0]), sockaddr[1])
        closing = self.table.accepted(client, loop.time(), source_key(remote.host))
        if closing is client:  # its source has its share waiting already
            client.close()
            return
        if closing is not None:
            self._close(closing)
        self._remotes[client] = remote
        loop.add_reader(client.fileno(), self._read_ready, client)

    def _read_ready(self, client: socket.socket) -> None:
        try:
            data = client.recv(_FIRST_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.table.closed(client)
            self._close(client)
            return
        verdict = self.table.received(client, data)
        if verdict is None:
            return
        if isinstance(verdict, Dropped):
            self._close(client)
            return
        assert self._loop is not None
        self._loop.remove_reader(client.fileno())
        remote = self._remotes.pop(client)
        tcp = self.sessions.get(verdict.session)
        if tcp is None:
            self.table.refused()
            client.close()
        elif not tcp.take(self.local, client, remote, verdict.data):
            self.table.refused()  # the session closed it

    def _arm(self) -> None:
        """One timer at the table's next deadline."""
        deadline = self.table.get_timer()
        if self._timer is not None:
            if deadline is not None and self._timer.when() <= deadline:
                return
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        assert self._loop is not None
        for client in self.table.handle_timer(self._loop.time()):
            self._close(client)
        self._arm()

    def _close(self, client: socket.socket) -> None:
        """Close a connection no session has."""
        self._remotes.pop(client, None)
        if self._loop is not None and client.fileno() >= 0:
            self._loop.remove_reader(client.fileno())
        client.close()

    def close(self) -> None:
        """Stop accepting; close the connections no session has."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for client in list(self._remotes):
            self._close(client)
        if self._acceptor is not None:
            self._acceptor.close()
        else:
            self.sock.close()
