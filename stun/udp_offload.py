"""UDP segmentation and receive offload on Linux (udp(7)): the socket option, the control
messages and the limits :mod:`stun.batch_io` uses to send a run of equal-sized datagrams as one
message (GSO, ``UDP_SEGMENT``, Linux 4.18+) and to take a run the kernel coalesced as one message
(GRO, ``UDP_GRO``, Linux 5.0+), cut back into its datagrams by the reader.

The control messages are ``struct cmsghdr`` (length, level, type) followed by the value, each
aligned to ``size_t``. What the kernel writes on receive is read by :func:`gro_segment_size`, a
pure function of those bytes and of the message's flags, so that it can be fuzzed: every length
is checked against the bytes there are before anything behind it is read.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct

#: ``SOL_UDP``: the level of both options and both control messages.
SOL_UDP = 17
#: The ``cmsg_type`` of the segment size of a send (a module constant, so a test can make the
#: kernel refuse it and see the fallback).
UDP_SEGMENT = 103
#: The socket option that lets the kernel coalesce, and the ``cmsg_type`` of the segment size
#: of a coalesced datagram (an ``int``: ``udp_cmsg_recv`` in the kernel). A module constant, so
#: a test can make the kernel refuse it.
UDP_GRO = 104
#: ``msg_flags``: the control buffer was too small for what the kernel had to say.
MSG_CTRUNC = 0x08
_CMSG_HEADER = struct.Struct("@Nii")
_SEGMENT_SIZE = struct.Struct("@H")
_GRO_SIZE = struct.Struct("@i")
_CMSG_ALIGN = ctypes.sizeof(ctypes.c_size_t)
_HAS_CMSG = hasattr(socket, "CMSG_SPACE")
#: Bytes per message header for a send's UDP_SEGMENT control message (0: none on this platform).
SEND_CONTROL = socket.CMSG_SPACE(_SEGMENT_SIZE.size) if _HAS_CMSG else 0
_SEND_CONTROL_LENGTH = socket.CMSG_LEN(_SEGMENT_SIZE.size) if _HAS_CMSG else 0
#: Bytes per message header for what the kernel writes on receive: the UDP_GRO control message,
#: with room to spare (0: none on this platform).
RECEIVE_CONTROL = socket.CMSG_SPACE(_GRO_SIZE.size) * 2 if _HAS_CMSG else 0
#: The largest datagram sent segmented: what fits a 1500-byte path over IPv6 with room to spare
#: (the kernel refuses a segment larger than the route's MTU).
GSO_MAX_SEGMENT = 1400
#: The most bytes one segmented message carries (below the 64 KiB of one IP packet).
GSO_MAX_BYTES = 65000
#: Errors that say the kernel cannot segment this message: GSO is then off for the socket.
GSO_REFUSED = frozenset((errno.EINVAL, errno.EIO, errno.EOPNOTSUPP, errno.ENOPROTOOPT))


def pack_segment_control(buffer: memoryview, at: int, size: int) -> None:
    """Write at ``at`` of ``buffer`` the UDP_SEGMENT control message of ``size``-byte segments
    (:data:`SEND_CONTROL` bytes)."""
    _CMSG_HEADER.pack_into(buffer, at, _SEND_CONTROL_LENGTH, SOL_UDP, UDP_SEGMENT)
    _SEGMENT_SIZE.pack_into(buffer, at + _CMSG_HEADER.size, size)


def gro_segment_size(control: bytes, flags: int) -> int | None:
    """The segment size of a received datagram from its control messages (``control``: the
    bytes the kernel wrote, ``msg_controllen`` of them at most) and ``msg_flags``: 0 for a plain
    datagram, the ``UDP_GRO`` size for a coalesced one, ``None`` when it cannot be known (a
    malformed or cut control message, ``MSG_CTRUNC`` without a UDP_GRO one, a size below 1):
    the datagram is then dropped, never delivered as one."""
    header = _CMSG_HEADER.size
    at = 0
    while at + header <= len(control):
        length, level, kind = _CMSG_HEADER.unpack_from(control, at)
        if length < header or at + length > len(control):
            return None
        if level == SOL_UDP and kind == UDP_GRO:
            if length - header < _GRO_SIZE.size:
                return None
            size: int = _GRO_SIZE.unpack_from(control, at + header)[0]
            return size if size > 0 else None
        at += (length + _CMSG_ALIGN - 1) // _CMSG_ALIGN * _CMSG_ALIGN
    return None if flags & MSG_CTRUNC else 0


def gro_segment_of_ancillary(ancillary: list[tuple[int, int, bytes]], flags: int) -> int | None:
    """:func:`gro_segment_size` of a message read with ``socket.recvmsg``, whose control
    messages Python has already cut apart (``ancillary``: its ``(level, type, data)`` list)."""
    for level, kind, value in ancillary:
        if level == SOL_UDP and kind == UDP_GRO:
            if len(value) < _GRO_SIZE.size:
                return None
            size: int = _GRO_SIZE.unpack_from(value)[0]
            return size if size > 0 else None
    return None if flags & MSG_CTRUNC else 0


def enable_gro(sock: socket.socket) -> bool:
    """Ask the kernel to coalesce ``sock``'s same-flow datagrams (``UDP_GRO``); whether it
    agreed (an older kernel, another platform or socket type: no, and nothing changes)."""
    if not RECEIVE_CONTROL:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except (OSError, ValueError):
        return False
    return True
