"""Helpers for tests on real loopback sockets: hosts to use, bounded waits, raw STUN exchanges."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from stun import Address, Message, MessageClass, Method, XorMappedAddress, new_transaction_id
from stun.aio import ipv6_loopback_available

T = TypeVar("T")

#: The bound on any one test's event loop: generous, so that only a hang can reach it.
TEST_TIMEOUT = 20.0


IPV6 = ipv6_loopback_available()
SKIP_NO_IPV6 = pytest.mark.skipif(not IPV6, reason="IPv6 loopback (::1) is not available here")

#: Both loopback hosts as parameters; the IPv6 one skips itself where ::1 cannot be bound.
LOOPBACK_HOSTS = [
    pytest.param("127.0.0.1", id="ipv4"),
    pytest.param("::1", id="ipv6", marks=SKIP_NO_IPV6),
]


def run(coroutine: Coroutine[Any, Any, T], timeout: float = TEST_TIMEOUT) -> T:
    """Run ``coroutine`` on a fresh event loop, failing (not hanging) after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coroutine, timeout))


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, polling; raise TimeoutError after ``timeout`` seconds."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def binding_request(transaction_id: bytes | None = None) -> bytes:
    """A plain Binding request with FINGERPRINT, as our client would send without credentials."""
    tid = transaction_id or new_transaction_id()
    return Message(Method.BINDING, MessageClass.REQUEST, tid).encode(fingerprint=True)


def mapped_address(response: bytes, transaction_id: bytes) -> Address:
    """The XOR-MAPPED-ADDRESS of a Binding success response to ``transaction_id``."""
    message = Message.decode(response)
    assert message.message_class is MessageClass.SUCCESS_RESPONSE
    assert message.transaction_id == transaction_id
    assert message.check_fingerprint()
    attribute = message.get(XorMappedAddress)
    assert attribute is not None
    return attribute.address


def udp_socket(host: str) -> socket.socket:
    """A non-blocking UDP socket bound to an ephemeral port on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


#: Where the kernel hands out ports for binds to port 0 when it cannot tell us.
_DEFAULT_EPHEMERAL = (32768, 60999)
#: How many ports below the ephemeral range :func:`closed_port` draws from.
_BELOW_EPHEMERAL = 12000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL[0]


def closed_port(host: str, kind: int = socket.SOCK_DGRAM) -> int:
    """A port on ``host`` that was free a moment ago and that nothing listens on now.

    It is drawn below the kernel's ephemeral range: a parallel test's bind to port 0 is never
    handed it before the caller starts a server on it (a port the kernel had just handed us
    was, now and then, taken by another test's socket in between, which then answered)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    high = _ephemeral_low()
    low = max(1024, high - _BELOW_EPHEMERAL)
    for _ in range(100 if high - low >= 1000 else 0):
        port = random.randrange(low, high)
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        return port
    with socket.socket(family, kind) as sock:
        sock.bind((host, 0))
        ephemeral: int = sock.getsockname()[1]
    return ephemeral


def twin_port(host: str, attempts: int = 50) -> int:
    """A port number on ``host`` free for both TCP and UDP a moment ago, for a server that
    listens on both with one number: a port the kernel picks for one transport may be held on
    the other by a parallel test."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(attempts):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
        return port
    raise OSError(f"no port free for both TCP and UDP on {host} in {attempts} tries")


def free_port_pair(hosts: tuple[str, ...] = ("127.0.0.1", "127.0.0.2")) -> int:
    """A port P with P and P + 1 free over UDP and TCP on every one of ``hosts`` a moment ago:
    for an RFC 5780 server, whose alternate port is P + 1."""
    for _ in range(50):
        port = closed_port(hosts[0])
        if port >= 65535:
            continue
        try:
            for host in hosts:
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    for candidate in (port, port + 1):
                        with socket.socket(socket.AF_INET, kind) as check:
                            check.bind((host, candidate))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of ports on loopback")


async def udp_exchange(sock: socket.socket, data: bytes, server: Address) -> bytes:
    """Send one datagram from ``sock`` and return the first datagram that comes back."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendto(sock, data, server)
    answer, _ = await loop.sock_recvfrom(sock, 65536)
    return answer


def open_fds() -> int:
    """How many file descriptors this process holds (Linux: ``/proc/self/fd``)."""
    return len(os.listdir("/proc/self/fd"))


def own_udp_ports() -> set[int]:
    """The local ports of this process's UDP sockets, IPv4 and IPv6 (Linux: ``/proc``)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/self/net/udp", "/proc/self/net/udp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


#: Why the /proc helpers above cannot run here, if they cannot.
NO_PROC = None if os.path.isdir("/proc/self/fd") else "no /proc/self/fd (not Linux)"


def still_open(sock: socket.socket) -> bool:
    """Whether nothing, not even an EOF or a reset, has come on the TCP socket ``sock`` yet: its
    peer keeps it open. Never blocks, whatever the socket's timeout."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(timeout)
    return False
