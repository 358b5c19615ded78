"""A lean ICE client for load tests: many controlling "agents" per process at the cost of a socket
and a few dict entries each, so that one client process can drive 10,000 server sessions on a
2-core machine (bench/mux_scale.py).

Each :class:`LeanSession` has one UDP socket on 127.0.0.1 and one remote candidate, the server's.
It does what a full controlling agent does on a path that works, and nothing else: a Binding
request with USERNAME, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE (aggressive nomination, RFC 5245
§8.1.1.2, which RFC 8445 still allows a peer to meet), MESSAGE-INTEGRITY and FINGERPRINT,
retransmitted every 500 ms up to 7 times; it answers the server's checks (a full ICE server such as
aioice checks back, RFC 8445 §7.3.1.4) with a signed success response; once connected it sends a
consent check every 4-6 s (RFC 7675 §5.1) and counts the answers. No candidate gathering, no
check list, no timer per session: one loop timer walks all sessions. For benchmarks only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import Iterable

from stun.address import Address
from stun.attributes import IceControlling, Priority, UseCandidate, Username, XorMappedAddress
from stun.message import Message, MessageClass, Method, new_transaction_id

HOST = "127.0.0.1"
RETRANSMIT = 0.5
MAX_REQUESTS = 7
CONSENT_INTERVAL = 5.0
#: How often the one timer walks the sessions.
TICK = 0.2
_PRIORITY = (110 << 24) | (65535 << 8) | 255  # a peer-reflexive candidate's, component 1


class LeanSession:
    """One controlling session towards one server candidate (module docstring)."""

    __slots__ = (
        "answered",
        "connected",
        "local_password",
        "local_username",
        "next_send",
        "remote",
        "remote_password",
        "remote_username",
        "requests",
        "sock",
        "tie_breaker",
        "transactions",
    )

    def __init__(self, ufrag: str, pwd: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((HOST, 0))
        self.local_username = ufrag
        self.local_password = pwd
        self.remote_username = ""
        self.remote_password = b""
        self.remote: tuple[str, int] = ("", 0)
        self.tie_breaker = random.getrandbits(64)
        self.transactions: set[bytes] = set()
        self.connected = False
        #: Consent checks answered since connecting.
        self.answered = 0
        self.requests = 0
        self.next_send = 0.0

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def check(self) -> None:
        """Send a check (the nominating one until connected, then a consent check)."""
        attributes = [
            Username(f"{self.remote_username}:{self.local_username}"),
            Priority(_PRIORITY),
            IceControlling(self.tie_breaker),
        ]
        if not self.connected:
            attributes.append(UseCandidate())
        transaction_id = new_transaction_id()
        request = Message(Method.BINDING, MessageClass.REQUEST, transaction_id, attributes)
        self.transactions.add(transaction_id)
        self.requests += 1
        data = request.encode(key=self.remote_password, fingerprint=True)
        with contextlib.suppress(OSError):
            self.sock.sendto(data, self.remote)

    def read(self) -> None:
        """Read what arrived: answers to our checks, the server's checks."""
        while True:
            try:
                data, source = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            try:
                message = Message.decode(data)
            except Exception:
                continue
            if message.message_class is MessageClass.REQUEST:
                if message.check_integrity(self.local_password.encode()):
                    address = Address(source[0], source[1])
                    answer = message.success_response([XorMappedAddress(address)])
                    key = self.local_password.encode()
                    self.sock.sendto(answer.encode(key=key, fingerprint=True), source)
            elif message.transaction_id in self.transactions:
                self.transactions.discard(message.transaction_id)
                if message.message_class is MessageClass.SUCCESS_RESPONSE and (
                    message.check_integrity(self.remote_password)
                ):
                    if self.connected:
                        self.answered += 1
                    else:
                        self.next_send += CONSENT_INTERVAL
                    self.connected = True
                    self.requests = 0
                    self.transactions.clear()

    def close(self) -> None:
        self.sock.close()


class LeanClients:
    """Many :class:`LeanSession` s on one loop, driven by one timer."""

    def __init__(self) -> None:
        self.sessions: list[LeanSession] = []
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, count: int) -> list[LeanSession]:
        made = [
            LeanSession(f"lean{random.getrandbits(40):010x}", f"{random.getrandbits(128):032x}")
            for _ in range(count)
        ]
        for session in made:
            self._loop.add_reader(session.sock.fileno(), session.read)
        self.sessions += made
        return made

    def start(
        self, sessions: Iterable[LeanSession], remotes: Iterable[tuple[str, str, str, int]]
    ) -> None:
        """Set each session's server (ufrag, pwd, host, port) and send its first check."""
        now = self._loop.time()
        for session, (ufrag, pwd, host, port) in zip(sessions, remotes, strict=True):
            session.remote_username, session.remote_password = ufrag, pwd.encode()
            session.remote = (host, port)
            session.check()
            session.next_send = now + RETRANSMIT
        if self._timer is None:
            self._timer = self._loop.call_later(TICK, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        for session in self.sessions:
            if not session.remote_username or now < session.next_send:
                continue
            if session.connected:
                session.check()
                session.next_send = now + CONSENT_INTERVAL * (0.8 + 0.4 * random.random())
            elif session.requests < MAX_REQUESTS:
                session.check()
                session.next_send = now + RETRANSMIT
        self._timer = self._loop.call_later(TICK, self._tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for session in self.sessions:
            self._loop.remove_reader(session.sock.fileno())
            session.close()
        self.sessions.clear()
