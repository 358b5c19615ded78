"""asyncio layer: :class:`Outbox`, how one UDP socket of ICE — a base's, a
:class:`~ice.aio_mux.UdpMux`'s — sends: queued, and many datagrams per system call.

Theory of operation. Everything ICE sends on a UDP socket goes through the socket's outbox: data
from :meth:`~ice.aio.Connection.sendto` (:meth:`Outbox.put`, :meth:`Outbox.send`) and the agent's
checks, answers, consent and TURN traffic from the pump (:meth:`Outbox.send_nowait`). On Linux
its :class:`~stun.batch_io.MmsgIO` queues them and sends the queue with one ``sendmmsg`` when the
reader's batch ends or at the end of the event loop's iteration (:func:`~stun.batch_io.
flush_pending`), or at once when :data:`~stun.batch_io.BATCH` datagrams wait. Except the agent's
datagrams on a socket of one connection (not ``shared`` by a mux's sessions): while nothing is
queued they leave at once with ``sendto`` — such a socket sends one or two of them a batch, and
queueing one costs more than the system call it could save. One queue per
socket: datagrams leave in the order they were given, so per destination too. Elsewhere, or with
``batch_io=False``, each one is sent at once with ``sendto`` (:class:`~stun.batch_io.PortableIO`).

Errors, as they were with one ``sendto`` per datagram, except where a batch cannot say at once:

- A full send buffer (``EAGAIN``): what is queued stays queued, in order, and is sent when the
  socket is writable (``loop.add_writer``). Meanwhile :meth:`Outbox.send` waits for that — a UDP
  socket's buffer empties by itself, so the wait ends — and the agent's datagrams are dropped
  (as a full buffer dropped them before; STUN retransmits).
- ICMP errors that the kernel reports on a later send (``ECONNREFUSED``, ...): skipped; the
  datagram that met one is lost, as before.
- Any other error (a firewall's ``EPERM``, ``EMSGSIZE``, ...): on the portable path and for a
  datagram larger than a batch slot (:data:`~stun.batch_io.SEND_SLOT`), raised by the send that
  met it; for a datagram sent in a batch, that datagram is dropped and the error raised by the
  next :meth:`Outbox.put` to the same destination (the agent's datagrams are only logged).
- :meth:`Outbox.close` sends what is queued in one last flush, without waiting: datagrams the
  kernel refuses then (a full buffer) are dropped and counted (:attr:`Outbox.dropped`); a
  :meth:`Outbox.send` still waiting for room returns ``False``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from stun.batch_io import ICMP_ERRNOS, SEND_SLOT, MmsgIO, SockAddr, datagram_io

_log = logging.getLogger("icestack.ice")

__all__ = ["Outbox"]


class Outbox:
    """What one UDP socket of ICE sends, queued and sent in batches (module docstring);
    ``batch_io=False``: one ``sendto`` per datagram even where batches are available."""

    __slots__ = (
        "_at_once",
        "_fd",
        "_loop",
        "_room",
        "blocked",
        "closed",
        "dropped",
        "error",
        "io",
        "sock",
    )

    def __init__(self, sock: socket.socket, *, batch_io: bool = True, shared: bool = False) -> None:
        self.sock = sock
        #: Reads and writes many datagrams per system call where the platform can.
        self.io = datagram_io(sock, batch=batch_io)
        self.io.on_send_error = self._refused
        #: The batched I/O whose queue the agent's datagrams skip while it is empty: a socket of
        #: one connection (not ``shared`` by a mux's sessions) sends one or two of them a
        #: batch, and a ``sendto`` each costs less than queueing them (module docstring).
        self._at_once: MmsgIO | None = None
        if isinstance(self.io, MmsgIO):
            self.io.on_blocked = self._blocked
            if not shared:
                self._at_once = self.io
        #: The loop whose writer waits for room on ``_fd``, while the buffer is full (the
        #: number is kept: a socket closed meanwhile says -1).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd = -1
        #: The kernel's buffer is full: the queue waits for the socket to be writable.
        self.blocked = False
        self.closed = False
        #: Datagrams dropped: refused by the kernel (sent at once into a full buffer, or
        #: after they were queued), or left at close. Other errors of the agent's datagrams
        #: are only logged (:meth:`send_nowait`: STUN retransmits).
        self.dropped = 0
        #: What the kernel said of the last refused datagram, raised by the next :meth:`put` to
        #: its destination.
        self.error: tuple[OSError, SockAddr] | None = None
        #: Resolved when the queue is sent after a full buffer, or at close.
        self._room: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ sending

    def put(self, data: bytes, remote: SockAddr) -> bool:
        """Queue ``data`` for ``remote`` (portable path: send it) if the socket takes it now;
        ``False`` if not (its buffer is full: :meth:`send` waits). Raises the error the kernel
        gave for this datagram, or for an earlier one to ``remote`` (module docstring)."""
        if self.blocked or self.closed:
            return False
        error = self.error
        if error is not None and error[1] == remote:
            self.error = None
            raise error[0]
        try:
            if len(data) > SEND_SLOT:  # sent alone, after the queue: its error is raised here
                failed = self.io.flush()
                if failed:
                    self._refused(failed)
                if self.blocked:
                    return False
                self.sock.sendto(data, remote)
            else:
                self.io.send(data, remote)
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in ICMP_ERRNOS:
                raise
        return True

    async def send(
        self, data: bytes, remote: SockAddr, *, abandoned: Callable[[], bool] | None = None
    ) -> bool:
        """:meth:`put`, waiting for room while the socket's buffer is full; ``False`` if the
        outbox closed first, or ``abandoned()`` says its sender went away meanwhile (a
        connection closed while its mux's outbox waits: nothing is sent after its close)."""
        while abandoned is None or not abandoned():
            if self.put(data, remote):
                return True
            if self.closed:
                return False
            if not self.blocked:  # the portable path's sendto found the buffer full
                self._blocked()
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)
        return False

    def send_nowait(self, data: bytes, remote: SockAddr) -> None:
        """Send or queue one of the agent's datagrams; with the buffer full it is dropped (the
        agent retransmits what needs it), and an error is only logged."""
        if self.blocked or self.closed:
            self.dropped += 1
            return
        at_once = self._at_once
        try:
            if at_once is not None and not at_once.queue:  # nothing waits to go before it
                self.sock.sendto(data, remote)
            else:
                self.io.send(data, remote)
        except BlockingIOError:
            self.dropped += 1
        except OSError as exc:
            _log.debug("ICE datagram to %s not sent: %s", remote, exc)

    # ------------------------------------------------------------------ the kernel's answers

    def _refused(self, count: int) -> None:
        self.dropped += count
        refused = self.io.send_error
        self.io.send_error = None
        if refused is not None and refused[0] not in ICMP_ERRNOS:
            code, remote = refused
            self.error = (OSError(code, os.strerror(code)), remote)

    def _blocked(self) -> None:
        if self.blocked or self.closed:
            return
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop to wait in: the queue waits for the next flush
            return
        self.blocked = True
        self._fd = self.sock.fileno()
        self._loop.add_writer(self._fd, self._writable)

    def _unblock(self) -> None:
        self.blocked = False
        if self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._loop = None

    def _writable(self) -> None:
        failed = self.io.flush()
        if failed:
            self._refused(failed)
        if isinstance(self.io, MmsgIO) and self.io.queue:
            return  # blocked again (the writer stays) or sent in part
        self._unblock()
        self._wake()

    def _wake(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Send what is queued once, without waiting; drop what the kernel refuses; wake the
        senders waiting for room. The socket stays open (its owner closes it)."""
        if self.closed:
            return
        if self.blocked:
            self._unblock()
        if isinstance(self.io, MmsgIO):
            self.io.on_blocked = None  # from now on a full buffer drops
        self.closed = True
        failed = self.io.flush()
        if failed:
            self._refused(failed)
        self._wake()
