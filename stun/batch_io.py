"""Datagram I/O in batches: many UDP datagrams per system call on Linux, one elsewhere.

Every UDP reader of the project (:class:`stun.aio_sockets.UdpReader`, the ICE bases) reads a
socket on readiness until it is empty and answers inline. With ``recvfrom``/``sendto`` that costs
two system calls per answered datagram, about as much CPU as the protocol work itself. On Linux,
:class:`MmsgIO` calls ``recvmmsg(2)`` and ``sendmmsg(2)`` through :mod:`ctypes` from the C library
instead: up to :data:`BATCH` datagrams per call — on receive once the socket is busy: a quiet
one (at most two datagrams a wake-up, a session's socket while it connects or keeps consent) is
read with ``recvmsg``, one datagram a call until it is empty, which costs less there
(:meth:`MmsgIO.receive`). :class:`PortableIO` is the ``recvfrom``/``sendto``
path, used elsewhere, when the symbols cannot be loaded (one log line says so) or when asked
(``batch=False``, ``--no-batch-io``). Both have the same face, :class:`DatagramIO`: ``receive()``
returns a list of ``(bytes, sockaddr)`` in the form ``socket.recvfrom`` gives them, ``send()``
queues an answer and ``flush()`` sends what is queued.

Segmentation offload (UDP GSO, Linux 4.18+). In a flush, a run of datagrams of the same size
(1 to :data:`GSO_MAX_SEGMENT` bytes, at most :data:`GSO_MAX_BYTES` in all) to the same destination
leaves as one message with a ``UDP_SEGMENT`` control message: the kernel walks the stack once and
cuts it into the datagrams (on loopback, at the receiving socket). A relay's flushes hold such
runs under load — a burst read from one client goes to one peer, one from a peer to one client.
A kernel that refuses it turns it off for that socket, and the rest goes one datagram a message.
The options, control messages and limits of both offloads are :mod:`stun.udp_offload`'s.

Receive offload (UDP GRO, Linux 5.0+). Every :class:`MmsgIO` asks the kernel (``UDP_GRO``) to
hand it a run of same-flow datagrams as one message, with the size of its segments in a
``UDP_GRO`` control message; a kernel that refuses leaves the socket as it was. A segmented
message from another GSO sender on loopback (icestack's flushes, above) then reaches the socket
whole instead of being cut into datagrams at its queue, and a NIC's GRO may coalesce what
ordinary senders send. :meth:`MmsgIO.receive` cuts each such message back into the datagrams it
was made of (every ``gso_size`` bytes, the last one shorter or equal), in order, each with the
message's source: callers never see a coalesced datagram. The portable path never asks for GRO
(``recvfrom`` would return the coalesced bytes).

Memory safety. The message headers, I/O vectors, address buffers and data buffers are allocated
once per thread (:class:`_Arena`) and reused; every datagram is copied out into its own ``bytes``
before ``receive()`` returns, and every queued answer is copied in when ``flush()`` runs, so no
buffer is shared with a caller and handlers may call ``receive``/``flush`` of other sockets. What
the kernel reports is checked before it is read: a datagram flagged ``MSG_TRUNC`` or longer than
its slot is dropped and counted (:attr:`DatagramIO.truncated`: a coalesced message counts once,
whatever it held), an address length shorter than its family's ``sockaddr`` or a family that is
neither IPv4 nor IPv6 drops the datagram. Control messages are read by
:func:`~stun.udp_offload.gro_segment_size`, a pure function of the bytes the kernel wrote
(bounded by ``msg_controllen`` and the slot) and of the message's flags: a message whose segment
size cannot be known is dropped and counted.
Addresses are converted through bounded caches (a table a peer can grow is bounded, and each
lookup is O(1)).
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import logging
import socket
import struct
import sys
import threading
from collections.abc import Callable
from typing import Any, Protocol

from .udp_offload import (
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENT,
    GSO_REFUSED,
    RECEIVE_CONTROL,
    SEND_CONTROL,
    enable_gro,
    gro_segment_of_ancillary,
    gro_segment_size,
    pack_segment_control,
)

_log = logging.getLogger("icestack.stun")

#: Datagrams per ``recvmmsg``/``sendmmsg`` call.
BATCH = 64
#: ``recvmsg`` calls a quiet socket makes in one read, one datagram each, before it counts as
#: busy and reads with ``recvmmsg`` (:meth:`MmsgIO.receive`); a truncated datagram or an ICMP
#: error skipped counts as a call.
QUIET_READS = 3
#: The largest UDP payload (no IPv6 jumbograms): a receive slot holds any datagram.
MAX_DATAGRAM = 65535
#: A send slot; a larger answer is sent on its own with ``sendto`` (in order).
SEND_SLOT = 2048
#: ``sizeof(struct sockaddr_storage)``.
_NAME_SIZE = 128
#: Addresses remembered per cache before it is emptied (peer-grown, so bounded).
ADDRESS_CACHE_SIZE = 4096
#: ICMP errors that Linux reports on a later socket call; they concern an earlier send.
ICMP_ERRNOS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH))

_MSG_TRUNC = 0x20
_MSG_DONTWAIT = 0x40

SockAddr = tuple[Any, ...]


class DatagramIO(Protocol):
    """How one UDP socket is read and written: in batches or one datagram at a time."""

    #: Datagrams dropped because they did not fit their buffer or came with an unusable address.
    truncated: int
    #: Called with how many queued datagrams the kernel refused when they were flushed.
    on_send_error: Callable[[int], None] | None
    #: The ``errno`` and destination of the last datagram the kernel refused at a flush.
    send_error: tuple[int, SockAddr] | None

    def receive(self, limit: int) -> list[tuple[bytes, SockAddr]]:
        """Up to ``limit`` datagrams waiting on the socket now (an empty list: none), and the
        rest of a coalesced one (GRO) that crosses ``limit``."""

    def send(self, data: bytes, sockaddr: SockAddr) -> None:
        """Queue ``data`` for ``sockaddr`` (the portable path sends it at once, and may raise
        what ``sendto`` raises)."""

    def flush(self) -> int:
        """Send everything queued; return how many datagrams could not be sent."""


class PortableIO:
    """``recvfrom``/``sendto``, one system call per datagram: every platform."""

    __slots__ = ("on_send_error", "send_error", "sock", "truncated")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.truncated = 0
        self.on_send_error: Callable[[int], None] | None = None
        self.send_error: tuple[int, SockAddr] | None = None

    def receive(self, limit: int) -> list[tuple[bytes, SockAddr]]:
        recvfrom = self.sock.recvfrom
        out: list[tuple[bytes, SockAddr]] = []
        for _ in range(limit):
            try:
                out.append(recvfrom(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno in ICMP_ERRNOS:
                    continue
                if out:  # the error comes back on the next call
                    break
                raise
        return out

    def send(self, data: bytes, sockaddr: SockAddr) -> None:
        self.sock.sendto(data, sockaddr)

    def flush(self) -> int:
        return 0


# --------------------------------------------------------------------------- struct layouts


class _Iovec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


class _Msghdr(ctypes.Structure):
    _fields_ = (
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    )


class _Mmsghdr(ctypes.Structure):
    _fields_ = (("hdr", _Msghdr), ("len", ctypes.c_uint))


_STRIDE = ctypes.sizeof(_Mmsghdr)
_NAMELEN_AT = _Msghdr.namelen.offset
_FLAGS_AT = _Msghdr.flags.offset
_LEN_AT = _Mmsghdr.len.offset
_CONTROLLEN_AT = _Msghdr.controllen.offset
_SIZE_T_CODE = "Q" if ctypes.sizeof(ctypes.c_size_t) == 8 else "I"
_IOV_STRIDE = ctypes.sizeof(_Iovec)
_IOV_LEN_AT = _Iovec.len.offset
#: namelen, controllen, flags and msg_len of one mmsghdr, read in one call.
_RESULT = struct.Struct(
    f"={_NAMELEN_AT}xI{_CONTROLLEN_AT - _NAMELEN_AT - 4}x{_SIZE_T_CODE}"
    f"{_FLAGS_AT - _CONTROLLEN_AT - ctypes.sizeof(ctypes.c_size_t)}xi{_LEN_AT - _FLAGS_AT - 4}xI"
)
_SIZE_T = struct.Struct("@N")
_FAMILY = struct.Struct("=H")
_IN4 = struct.Struct("=H")  # sin_family; then port and address in network order
_PORT = struct.Struct("!H")
_IN6_TAIL = struct.Struct("!I16s")  # flowinfo, address
_SCOPE = struct.Struct("=I")
_SOCKADDR_IN_SIZE = 16
_SOCKADDR_IN6_SIZE = 28
#: name, namelen, iov, iovlen, control, controllen of one message header, written per send.
_SEND_FIELDS = struct.Struct("@PIPNPN")
_SEND_FIELDS_FIT = (
    _SEND_FIELDS.size == _Msghdr.flags.offset
    and struct.calcsize("@PIP") - struct.calcsize("@P") == _Msghdr.iov.offset
    and _SEND_FIELDS.size - struct.calcsize("@N") == _Msghdr.controllen.offset
)


class _Arena:
    """One thread's buffers for both directions, allocated once: :data:`BATCH` message headers,
    I/O vectors, address buffers and control buffers each way, receive slots of
    :data:`MAX_DATAGRAM` bytes (only the pages the kernel writes are ever touched; a coalesced
    datagram fits, as the kernel coalesces at most one IP packet's worth) and send slots of
    :data:`SEND_SLOT`."""

    def __init__(self, receive_slot: int = MAX_DATAGRAM) -> None:
        self.rx = self._headers(receive_slot, RECEIVE_CONTROL)
        self.tx = self._headers(SEND_SLOT, SEND_CONTROL)
        #: Sockets with answers queued, flushed by :func:`flush_pending`.
        self.pending: list[MmsgIO] = []
        #: A :func:`flush_pending` is coming before the loop runs anything else: scheduled with
        #: ``call_soon``, or promised by a reader or timer that holds the flush
        #: (:func:`hold_flush`).
        self.flush_scheduled = False

    def schedule_flush(self) -> None:
        """Sockets have answers queued outside any reader or timer that holds the flush: flush
        them in the event loop's next iteration."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: whoever queued flushes (flush_pending)
            return
        self.flush_scheduled = True
        loop.call_soon(flush_pending)

    @staticmethod
    def _headers(slot: int, control: int) -> _Direction:
        """Buffers for one direction; a receiving one (``control`` set before the first
        ``recvmmsg``) has ``control`` bytes of control buffer in each header."""
        headers = ctypes.create_string_buffer(BATCH * _STRIDE)
        iovecs = ctypes.create_string_buffer(BATCH * _IOV_STRIDE)
        names = ctypes.create_string_buffer(BATCH * _NAME_SIZE)
        data = ctypes.create_string_buffer(BATCH * slot)
        controls = ctypes.create_string_buffer(BATCH * max(control, 1))
        message_array = (_Mmsghdr * BATCH).from_buffer(headers)
        vector_array = (_Iovec * BATCH).from_buffer(iovecs)
        for i in range(BATCH):
            vector_array[i].base = ctypes.addressof(data) + i * slot
            vector_array[i].len = slot
            hdr = message_array[i].hdr
            hdr.name = ctypes.addressof(names) + i * _NAME_SIZE
            hdr.namelen = _NAME_SIZE
            hdr.iov = ctypes.addressof(iovecs) + i * _IOV_STRIDE
            hdr.iovlen = 1
            hdr.control = ctypes.addressof(controls) + i * control
            hdr.controllen = control
        return _Direction(headers, iovecs, names, data, controls, slot, control)


class _Direction:
    """The buffers of one direction, with writable views over them."""

    __slots__ = (
        "control",
        "controls",
        "controls_view",
        "data",
        "data_view",
        "dirty",
        "headers",
        "iovecs",
        "iovecs_view",
        "names",
        "names_view",
        "pristine",
        "slot",
        "view",
    )

    def __init__(
        self,
        headers: ctypes.Array[ctypes.c_char],
        iovecs: ctypes.Array[ctypes.c_char],
        names: ctypes.Array[ctypes.c_char],
        data: ctypes.Array[ctypes.c_char],
        controls: ctypes.Array[ctypes.c_char],
        slot: int,
        control: int,
    ) -> None:
        self.headers = headers
        #: ``control`` bytes per header: a UDP_SEGMENT control message for segmented sends,
        #: what the kernel writes (UDP_GRO) on receive.
        self.controls = controls
        self.control = control
        self.controls_view = memoryview(controls).cast("B")
        self.iovecs = iovecs
        self.names = names
        self.data = data
        self.slot = slot
        self.view = memoryview(headers).cast("B")
        self.names_view = memoryview(names).cast("B")
        self.data_view = memoryview(data).cast("B")
        self.iovecs_view = memoryview(iovecs).cast("B")
        #: The headers as set up, copied back before each ``recvmmsg`` (the kernel writes
        #: ``msg_namelen``, ``msg_controllen``, ``msg_flags`` and ``msg_len``)...
        self.pristine = memoryview(bytes(self.view))
        #: ... as far as the last call could have written: the headers of the datagrams it
        #: returned and the one after (a socket of a session gets one or two a call; restoring
        #: all :data:`BATCH` headers each time costs more than the call).
        self.dirty = 0


class _Libc:
    """``recvmmsg`` and ``sendmmsg`` from the C library, typed."""

    def __init__(self, library: str | None) -> None:
        libc = ctypes.CDLL(library, use_errno=True)
        self.recvmmsg = libc.recvmmsg
        self.recvmmsg.argtypes = (
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_void_p,
        )
        self.recvmmsg.restype = ctypes.c_int
        self.sendmmsg = libc.sendmmsg
        self.sendmmsg.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int)
        self.sendmmsg.restype = ctypes.c_int


def _load_libc(library: str | None = None) -> _Libc | None:
    """The C library's (or ``library``'s) batch calls, or ``None`` after one log line saying why."""
    if not sys.platform.startswith("linux"):
        _log.info("batched UDP I/O needs Linux (this is %s): using recvfrom/sendto", sys.platform)
        return None
    try:
        return _Libc(library)
    except (OSError, AttributeError) as exc:
        _log.warning("batched UDP I/O unavailable (%s): using recvfrom/sendto", exc)
        return None


_libc: _Libc | None = None
_libc_loaded = False


class _ThreadArena(threading.local):
    """The thread's :class:`_Arena`: ``_arenas.arena`` is an attribute read, ``None`` until
    :func:`_arena` makes it."""

    arena: _Arena | None = None


_arenas = _ThreadArena()


def _arena() -> _Arena:
    arena = _arenas.arena
    if arena is None:
        arena = _arenas.arena = _Arena()
    return arena


def batch_available() -> bool:
    """Whether ``recvmmsg``/``sendmmsg`` can be used here (loaded once; logged once if not)."""
    global _libc, _libc_loaded
    if not _libc_loaded:
        _libc_loaded = True
        _libc = _load_libc()
    return _libc is not None


# --------------------------------------------------------------------------- addresses

_received_names: dict[bytes, SockAddr] = {}
_packed_names: dict[SockAddr, bytes] = {}


def _host6(raw: bytes, scope_id: int) -> str:
    host = socket.inet_ntop(socket.AF_INET6, raw)
    if scope_id:  # as recvfrom shows a scoped address: fe80::1%eth0
        try:
            host += "%" + socket.if_indextoname(scope_id)
        except OSError:
            host += f"%{scope_id}"
    return host


def parse_sockaddr(name: bytes) -> SockAddr | None:
    """The ``recvfrom``-style address of a ``sockaddr`` the kernel filled, or ``None`` if its
    length does not hold its family's address or the family is neither IPv4 nor IPv6."""
    if len(name) < 2:
        return None
    family = _FAMILY.unpack_from(name)[0]
    if family == socket.AF_INET and len(name) >= _SOCKADDR_IN_SIZE:
        return (socket.inet_ntop(socket.AF_INET, name[4:8]), _PORT.unpack_from(name, 2)[0])
    if family == socket.AF_INET6 and len(name) >= _SOCKADDR_IN6_SIZE:
        port = _PORT.unpack_from(name, 2)[0]
        flowinfo, raw = _IN6_TAIL.unpack_from(name, 4)
        scope_id = _SCOPE.unpack_from(name, 24)[0]
        return (_host6(raw, scope_id), port, flowinfo, scope_id)
    return None


def pack_sockaddr(sockaddr: SockAddr) -> bytes | None:
    """The ``sockaddr_in``/``sockaddr_in6`` of a numeric address tuple, or ``None`` for anything
    else (a name to resolve, a scoped IPv6 text address, a bad port): ``sendto`` handles those."""
    host, port = sockaddr[0], sockaddr[1]
    if not isinstance(host, str) or not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        return None
    try:
        if ":" not in host:
            raw = socket.inet_pton(socket.AF_INET, host)
            return _IN4.pack(socket.AF_INET) + _PORT.pack(port) + raw + bytes(8)
        raw = socket.inet_pton(socket.AF_INET6, host)
    except (OSError, ValueError):
        return None
    flowinfo = sockaddr[2] if len(sockaddr) > 2 else 0
    scope_id = sockaddr[3] if len(sockaddr) > 3 else 0
    if not (isinstance(flowinfo, int) and isinstance(scope_id, int)):
        return None
    if not (0 <= flowinfo < 1 << 20 and 0 <= scope_id < 1 << 32):
        return None
    return (
        _FAMILY.pack(socket.AF_INET6)
        + _PORT.pack(port)
        + _IN6_TAIL.pack(flowinfo, raw)
        + _SCOPE.pack(scope_id)
    )


# --------------------------------------------------------------------------- batched I/O


class _Blocked(Exception):
    """The kernel's send buffer is full (``EAGAIN``) at queue entry ``at``, after ``failed``
    datagrams of the batch were dropped."""

    def __init__(self, at: int, failed: int = 0) -> None:
        self.at = at
        self.failed = failed


class MmsgIO:
    """``recvmmsg``/``sendmmsg`` on one socket, through the thread's :class:`_Arena`.

    At most :data:`BATCH` answers wait: the one that fills the queue flushes it at once. When the
    kernel's send buffer is full (``EAGAIN``) the queued answers are dropped and counted — unless
    ``on_blocked`` is set: then they stay queued, in order, and it is called, to flush again once
    the socket is writable (the ICE data path waits so, :mod:`ice.outbox`)."""

    __slots__ = (
        "arena",
        "busy",
        "coalesced",
        "fd",
        "gro",
        "gso",
        "on_blocked",
        "on_send_error",
        "pending",
        "queue",
        "segmented",
        "send_error",
        "sock",
        "truncated",
    )

    def __init__(
        self, sock: socket.socket, *, receive_slot: int | None = None, gro: bool = True
    ) -> None:
        if not batch_available():
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg are not available here")
        self.sock = sock
        #: Buffers of its own when ``receive_slot`` says how large a datagram it takes (the
        #: thread's shared ones take any); a longer one is dropped as truncated, and so is a
        #: coalesced one longer than it (``gro=False`` keeps the kernel from coalescing).
        self.arena = None if receive_slot is None else _Arena(receive_slot)
        self.fd = sock.fileno()
        #: Answers waiting for :meth:`flush`: the bytes, and the packed address or ``None``
        #: for one that goes out alone through ``sendto``.
        self.queue: list[tuple[bytes, bytes | None, SockAddr]] = []
        self.truncated = 0
        self.on_send_error: Callable[[int], None] | None = None
        self.on_blocked: Callable[[], None] | None = None
        self.send_error: tuple[int, SockAddr] | None = None
        #: Whether the thread's arena lists this socket among those to flush.
        self.pending = False
        #: Whether runs of equal-sized datagrams to one destination go as one segmented message
        #: (UDP_SEGMENT); off where the platform's headers do not fit, and for good once the
        #: kernel refuses one.
        self.gso = _SEND_FIELDS_FIT and SEND_CONTROL > 0
        #: Datagrams that left inside segmented messages (for tests and benchmarks).
        self.segmented = 0
        #: Whether the kernel hands this socket coalesced datagrams (UDP_GRO), asked unless
        #: ``gro`` is false: :meth:`receive` cuts them apart.
        self.gro = gro and enable_gro(sock)
        #: Datagrams that arrived inside coalesced messages (for tests and benchmarks).
        self.coalesced = 0
        #: Whether the last read found :data:`QUIET_READS` datagrams or more: the next one
        #: reads with ``recvmmsg`` from the start (:meth:`receive`).
        self.busy = False

    def receive(self, limit: int) -> list[tuple[bytes, SockAddr]]:
        """Up to ``limit`` datagrams (the protocol's). A quiet socket — a session's while it
        connects or keeps consent: one or two datagrams a wake-up — is read one ``recvmsg`` a
        datagram until it is empty: with thousands of sockets served, that costs less than a
        ``recvmmsg`` through :mod:`ctypes`, whose Python side touches more memory that has left
        the CPU's caches by then. A read that finds :data:`QUIET_READS` datagrams counts the
        socket busy: the rest, and its next reads, go through ``recvmmsg``, until one finds
        fewer. Both read the same datagrams, cut apart and checked alike."""
        if self.busy:
            batch = self._receive_batches(limit)
            if len(batch) < QUIET_READS:
                self.busy = False
            return batch
        out: list[tuple[bytes, SockAddr]] = []
        recvmsg = self.sock.recvmsg
        slot = MAX_DATAGRAM if self.arena is None else self.arena.rx.slot
        icmp_retries = 0
        for _ in range(QUIET_READS if limit > QUIET_READS else limit):
            try:
                data, ancillary, flags, sockaddr = recvmsg(slot, RECEIVE_CONTROL)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:
                if exc.errno in ICMP_ERRNOS and icmp_retries < limit:
                    icmp_retries += 1
                    continue
                if out:  # the error comes back on the next call
                    return out
                raise
            if ancillary or flags:  # MSG_TRUNC; control messages, or MSG_CTRUNC: coalesced?
                segment = None if flags & _MSG_TRUNC else gro_segment_of_ancillary(ancillary, flags)
                if segment is None:
                    self.truncated += 1
                    continue
                if segment and len(data) > segment:
                    self._cut_apart(data, 0, len(data), segment, sockaddr, out)
                    if len(out) >= QUIET_READS:  # a run of datagrams: busy
                        break
                    continue
            out.append((data, sockaddr))
        room = limit - len(out)
        if room > 0:  # QUIET_READS messages, and maybe more waiting: busy
            self.busy = True
            out += self._receive_batches(room)
        return out

    def _cut_apart(
        self,
        data: Any,
        start: int,
        length: int,
        segment: int,
        sockaddr: SockAddr,
        out: list[tuple[bytes, SockAddr]],
    ) -> None:
        """Append the datagrams of a coalesced message (``length`` bytes of ``data`` from
        ``start``; every ``segment`` bytes, the last one shorter or equal) to ``out``."""
        end = start + length
        for at in range(start, end, segment):
            out.append((data[at : min(at + segment, end)], sockaddr))
        self.coalesced += -(-length // segment)

    def _receive_batches(self, limit: int) -> list[tuple[bytes, SockAddr]]:
        """Up to ``limit`` datagrams through ``recvmmsg``, :data:`BATCH` a call."""
        assert _libc is not None
        rx = (self.arena or _arenas.arena or _arena()).rx
        view = rx.view
        # Slices of a c_char array are bytes copies (typeshed says list[bytes]).
        names: Any = rx.names
        data: Any = rx.data
        controls: Any = rx.controls
        control = rx.control
        slot = rx.slot
        unpack = _RESULT.unpack_from
        cache = _received_names
        out: list[tuple[bytes, SockAddr]] = []
        icmp_retries = 0
        room = limit
        while room > 0:
            end = rx.dirty * _STRIDE
            view[:end] = rx.pristine[:end]
            count = _libc.recvmmsg(
                self.fd, rx.headers, BATCH if room > BATCH else room, _MSG_DONTWAIT, None
            )
            rx.dirty = count + 1 if 0 <= count < BATCH else BATCH
            if count < 0:
                error = ctypes.get_errno()
                if error in ICMP_ERRNOS and icmp_retries < limit:
                    icmp_retries += 1
                    continue
                if error in (errno.EAGAIN, errno.EINTR) or out:
                    break
                raise OSError(error, f"recvmmsg: {errno.errorcode.get(error, error)}")
            if count > BATCH:  # never, per recvmmsg(2); checked before any header is read
                raise OSError(errno.EIO, f"recvmmsg returned {count} of {BATCH}")
            for i in range(count):
                namelen, controllen, flags, length = unpack(view, i * _STRIDE)
                if flags & _MSG_TRUNC or length > slot or namelen > _NAME_SIZE:
                    self.truncated += 1
                    continue
                start = i * _NAME_SIZE
                name = names[start : start + namelen]
                sockaddr = cache.get(name)
                if sockaddr is None:
                    sockaddr = parse_sockaddr(name)
                    if sockaddr is None:
                        self.truncated += 1
                        continue
                    if len(cache) >= ADDRESS_CACHE_SIZE:
                        cache.clear()
                    cache[name] = sockaddr
                start = i * slot
                if controllen or flags:  # control messages, or MSG_CTRUNC: coalesced (GRO)?
                    at = i * control
                    segment = gro_segment_size(controls[at : at + min(controllen, control)], flags)
                    if segment is None:
                        self.truncated += 1
                        continue
                    if segment and length > segment:
                        self._cut_apart(data, start, length, segment, sockaddr, out)
                        continue
                out.append((data[start : start + length], sockaddr))
            if count < BATCH:
                break
            room = limit - len(out)
        return out

    def send(self, data: bytes, sockaddr: SockAddr) -> None:
        name = _packed_names.get(sockaddr)
        if name is None:
            name = pack_sockaddr(sockaddr)
            if name is not None:
                if len(_packed_names) >= ADDRESS_CACHE_SIZE:
                    _packed_names.clear()
                _packed_names[sockaddr] = name
            elif not self.queue:  # what sendto makes of it, raised at the call
                self.sock.sendto(data, sockaddr)
                return
        if not self.pending:  # flushed at the end of the reader's batch, or by the loop
            self.pending = True
            arena = _arenas.arena or _arena()
            arena.pending.append(self)
            if not arena.flush_scheduled:
                arena.schedule_flush()
        queue = self.queue
        queue.append((data, name, sockaddr))
        if len(queue) >= BATCH:
            failed = self.flush()
            if failed and self.on_send_error is not None:
                self.on_send_error(failed)

    def flush(self) -> int:
        queue = self.queue
        if not queue:
            return 0
        self.queue = []
        if self.sock.fileno() != self.fd:  # closed since: its number may be another socket's
            return len(queue)
        failed = 0
        done = 0  # queue[:done] went to the kernel or was dropped
        pending: list[tuple[bytes, bytes, SockAddr]] = []
        try:
            if len(queue) == 1:  # the usual flush of a session's socket: one datagram
                data, _, sockaddr = queue[0]
                return self._send_alone(data, sockaddr, 0)
            for data, name, sockaddr in queue:
                if name is not None and len(data) <= SEND_SLOT:
                    pending.append((data, name, sockaddr))
                    if len(pending) == BATCH:
                        failed += self._send_batch(pending, done)
                        done += len(pending)
                        pending = []
                    continue
                failed += self._send_batch(pending, done)
                done += len(pending)
                pending = []
                failed += self._send_alone(data, sockaddr, done)
                done += 1
            failed += self._send_batch(pending, done)
        except _Blocked as blocked:
            failed += blocked.failed
            self.queue = queue[blocked.at :] + self.queue
            assert self.on_blocked is not None
            self.on_blocked()
        return failed

    def _send_alone(self, data: bytes, sockaddr: SockAddr, at: int) -> int:
        """``sendto`` for one datagram (queue entry ``at``): 0 if it went, 1 if it was dropped;
        :class:`_Blocked` on a full buffer with ``on_blocked`` set."""
        try:
            self.sock.sendto(data, sockaddr)
        except BlockingIOError:
            if self.on_blocked is not None:
                raise _Blocked(at) from None
            return 1
        except OSError as exc:
            self.send_error = (exc.errno or errno.EINVAL, sockaddr)
            return 1
        except (ValueError, TypeError, OverflowError):
            self.send_error = (errno.EINVAL, sockaddr)
            return 1
        return 0

    def _send_batch(self, pending: list[tuple[bytes, bytes, SockAddr]], at: int) -> int:
        """Send up to :data:`BATCH` datagrams (``pending`` starts at queue entry ``at``); a
        datagram the kernel refuses is dropped, or on a full buffer with ``on_blocked`` set the
        rest stays queued (:class:`_Blocked`).

        One datagram goes through ``sendto`` (cheaper than filling a header for ``sendmmsg``: a
        relayed address usually has one per batch). Otherwise each is copied into its slot, and
        consecutive ones of the same size (1 to :data:`GSO_MAX_SEGMENT` bytes) to the same
        destination share one message header whose I/O vectors are their slots, with a
        UDP_SEGMENT control message of their size, while :attr:`gso` is on.
        """
        if not pending:
            return 0
        if len(pending) == 1:
            return self._send_alone(pending[0][0], pending[0][2], at)
        assert _libc is not None and len(pending) <= BATCH
        tx = _arena().tx
        names_view, data_view = tx.names_view, tx.data_view
        slot = tx.slot
        iovecs = tx.iovecs_view
        gso = self.gso
        #: (first datagram, how many) of each message header.
        messages: list[tuple[int, int]] = []
        previous_name = b""
        size = total = -1
        for i, (data, name, _) in enumerate(pending):
            length = len(data)
            start = i * slot
            data_view[start : start + length] = data
            _SIZE_T.pack_into(iovecs, i * _IOV_STRIDE + _IOV_LEN_AT, length)
            if gso and length == size and name == previous_name and total + length <= GSO_MAX_BYTES:
                first, count = messages[-1]
                messages[-1] = (first, count + 1)
                total += length
                continue
            start = i * _NAME_SIZE
            names_view[start : start + len(name)] = name
            messages.append((i, 1))
            previous_name = name
            size = length if 0 < length <= GSO_MAX_SEGMENT else -1
            total = length
        self._write_headers(tx, pending, messages)
        failed = 0
        done = 0
        base = ctypes.addressof(tx.headers)
        while done < len(messages):
            sent = _libc.sendmmsg(self.fd, base + done * _STRIDE, len(messages) - done, 0)
            if sent < 0:
                error = ctypes.get_errno()
                if error == errno.EINTR:
                    continue
                first, count = messages[done]
                if error == errno.EAGAIN:
                    if self.on_blocked is not None:
                        raise _Blocked(at + first, failed)
                    # A full buffer refuses the rest too: drop it, not one system call each.
                    self.send_error = (error, pending[first][2])
                    failed += sum(count for _, count in messages[done:])
                    break
                if count > 1 and error in GSO_REFUSED:
                    # The kernel cannot segment here: send the rest one datagram a message.
                    self.gso = False
                    _log.info(
                        "UDP segmentation offload refused (%s): not used on fd %d",
                        errno.errorcode.get(error, error),
                        self.fd,
                    )
                    return failed + self._send_batch(pending[first:], at + first)
                # Refused (full buffer, ICMP error): dropped.
                self.send_error = (error, pending[first][2])
                failed += count
                done += 1
                continue
            if sent == 0:  # nothing moved and no error: drop the rest rather than spin
                failed += sum(count for _, count in messages[done:])
                break
            sent = min(sent, len(messages) - done)
            self.segmented += sum(count for _, count in messages[done : done + sent] if count > 1)
            done += sent
        return failed

    @staticmethod
    def _write_headers(
        tx: _Direction,
        pending: list[tuple[bytes, bytes, SockAddr]],
        messages: list[tuple[int, int]],
    ) -> None:
        """One message header per ``(first, count)``: the first datagram's address, its
        ``count`` I/O vectors, and a UDP_SEGMENT control message when ``count`` is above one."""
        view, controls = tx.view, tx.controls_view
        names_at = ctypes.addressof(tx.names)
        iovecs_at = ctypes.addressof(tx.iovecs)
        controls_at = ctypes.addressof(tx.controls)
        pack_fields = _SEND_FIELDS.pack_into
        for header, (first, count) in enumerate(messages):
            if count > 1:
                at = header * SEND_CONTROL
                pack_segment_control(controls, at, len(pending[first][0]))
                control, control_length = controls_at + at, SEND_CONTROL
            else:
                control = control_length = 0
            pack_fields(
                view,
                header * _STRIDE,
                names_at + first * _NAME_SIZE,
                len(pending[first][1]),
                iovecs_at + first * _IOV_STRIDE,
                count,
                control,
                control_length,
            )


def hold_flush() -> None:
    """The caller calls :func:`flush_pending` before it returns to the event loop (a reader
    after its batch, a timer after its callbacks): sends queued meanwhile schedule no flush of
    their own, one event-loop callback per batch saved. Call it right before a ``try`` whose
    ``finally`` flushes. Before the thread's first queued send (which makes its buffers) it
    holds nothing: that send schedules its own flush, which finds nothing left to send."""
    arena = _arenas.arena
    if arena is not None:
        arena.flush_scheduled = True


def flush_pending() -> None:
    """Send what every socket of this thread has queued (the readers and timers that held the
    flush call it after their batch, :func:`hold_flush`)."""
    arena = _arenas.arena
    if arena is None:
        return
    arena.flush_scheduled = False
    pending = arena.pending
    while pending:
        io = pending.pop()
        io.pending = False
        failed = io.flush()
        if failed and io.on_send_error is not None:
            io.on_send_error(failed)


def datagram_io(sock: socket.socket, *, batch: bool = True) -> DatagramIO:
    """The I/O for ``sock``: batched if asked for and available, else portable."""
    if batch and batch_available():
        return MmsgIO(sock)
    return PortableIO(sock)
