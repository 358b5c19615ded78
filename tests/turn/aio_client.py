"""A TURN client made of our codec over real sockets (UDP, TCP, TLS), for tests of servers.

It knows the long-term credential dance (401, then 438 once) and checks the integrity of every
authenticated answer, and nothing else: no retransmission, no refresh. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import socket
import ssl
from collections.abc import Sequence
from typing import cast

from stun import (
    Address,
    Attribute,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    Username,
    long_term_key,
    make_address,
)
from stun.framing import Framing, StreamDecoder
from turn import (
    ChannelNumber,
    Data,
    RequestedTransport,
    XorPeerAddress,
    XorRelayedAddress,
    decode_channel_data,
    encode_channel_data,
)
from turn.channel import MAX_CHANNEL, RFC5766_MAX_CHANNEL

#: How long one answer or one relayed message may take before the test fails.
WAIT = 5.0


class TurnRequestFailed(AssertionError):
    """The server answered a request with an error response."""

    def __init__(self, method: int, code: int, reason: str) -> None:
        super().__init__(f"{Method(method).name} failed: {code} {reason}")
        self.code = code


class _Receiver(asyncio.DatagramProtocol, asyncio.Protocol):
    """Puts each datagram (or each frame of a stream) into the client's inbox."""

    def __init__(self, client: RawTurnClient, stream: bool) -> None:
        self.client = client
        framing = (
            Framing.STUN_OR_RFC5766_CHANNEL_DATA
            if client.max_channel == RFC5766_MAX_CHANNEL
            else Framing.STUN_OR_CHANNEL_DATA
        )
        self.decoder = StreamDecoder(framing) if stream else None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client._received(data)

    def data_received(self, data: bytes) -> None:
        assert self.decoder is not None
        for frame in self.decoder.feed(data):
            self.client._received(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.closed.set()


class RawTurnClient:
    """One TURN client (one 5-tuple) talking to ``server`` over ``transport``; channels go up to
    ``max_channel`` (RFC 5766's 0x7FFF for a server that accepts them)."""

    def __init__(self, username: str, password: str, max_channel: int = MAX_CHANNEL) -> None:
        self.username = username
        self.password = password
        self.max_channel = max_channel
        self.realm: str | None = None
        self.nonce: str | None = None
        self.stream = False
        self.closed = asyncio.Event()
        self._transport: asyncio.BaseTransport | None = None
        self._answers: dict[bytes, asyncio.Future[Message]] = {}
        #: ChannelData as (channel, data) and Data indications as (peer, data), in arrival order.
        self.inbox: asyncio.Queue[tuple[int | Address, bytes]] = asyncio.Queue()

    @classmethod
    async def connect(
        cls,
        transport: str,
        server: Address,
        username: str,
        password: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_channel: int = MAX_CHANNEL,
        sock: socket.socket | None = None,
    ) -> RawTurnClient:
        """Open the transport; a stream may start on ``sock``, a TCP socket connected already."""
        client = cls(username, password, max_channel)
        loop = asyncio.get_running_loop()
        if transport == "udp":
            client._transport, _ = await loop.create_datagram_endpoint(
                lambda: _Receiver(client, stream=False), remote_addr=server
            )
        else:
            client.stream = True
            factory = functools.partial(_Receiver, client, stream=True)
            context = ssl_context if transport == "tls" else None
            opening = (
                loop.create_connection(factory, sock=sock, ssl=context)
                if sock is not None
                else loop.create_connection(factory, server.host, server.port, ssl=context)
            )
            client._transport, _ = await asyncio.wait_for(opening, WAIT)
        return client

    @property
    def local(self) -> Address:
        assert self._transport is not None
        sockname = self._transport.get_extra_info("sockname")
        return make_address(sockname[0], sockname[1])

    def _received(self, data: bytes) -> None:
        if data and 0x40 <= data[0] <= self.max_channel >> 8:
            self.inbox.put_nowait(decode_channel_data(data, max_channel=self.max_channel))
            return
        message = Message.decode(data)
        if message.message_class is MessageClass.INDICATION and message.method == Method.DATA:
            peer, payload = message.get(XorPeerAddress), message.get(Data)
            assert peer is not None and payload is not None
            self.inbox.put_nowait((peer.address, payload.value))
            return
        future = self._answers.pop(message.transaction_id, None)
        if future is not None and not future.done():
            future.set_result(message)

    def pause_reading(self, paused: bool = True) -> None:
        """Stop (or resume) reading a stream, as a client that cannot keep up would."""
        transport = cast(asyncio.ReadTransport, self._transport)
        if paused:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def send_raw(self, data: bytes) -> None:
        transport = self._transport
        if self.stream:
            cast(asyncio.WriteTransport, transport).write(data)
        else:  # asyncio's datagram transports do not derive from DatagramTransport
            cast(asyncio.DatagramTransport, transport).sendto(data)

    async def exchange(self, request: Message, key: bytes | None = None) -> Message:
        """Send ``request`` once and wait for the answer with its transaction ID."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._answers[request.transaction_id] = future
        self.send_raw(request.encode(key=key))
        return await asyncio.wait_for(future, WAIT)

    @property
    def key(self) -> bytes:
        assert self.realm is not None
        return long_term_key(self.username, self.realm, self.password)

    async def request(self, method: int, attributes: Sequence[Attribute] = ()) -> Message:
        """An authenticated request: challenged first if no nonce is held, again after a 438;
        an error response raises :class:`TurnRequestFailed`."""
        for _ in range(3):
            tid = secrets.token_bytes(12)
            if self.nonce is None:
                answer = await self.exchange(Message(method, MessageClass.REQUEST, tid, attributes))
            else:
                assert self.realm is not None
                credentials = [Username(self.username), Realm(self.realm), Nonce(self.nonce)]
                request = Message(method, MessageClass.REQUEST, tid, [*attributes, *credentials])
                answer = await self.exchange(request, self.key)
            error = answer.error_code
            nonce, realm = answer.get(Nonce), answer.get(Realm)
            challenged = error is not None and (
                error.code == 438 or (error.code == 401 and self.nonce is None)
            )
            if challenged and nonce is not None and realm is not None:
                self.nonce, self.realm = nonce.value, realm.value
                continue
            if error is not None:
                raise TurnRequestFailed(method, error.code, error.reason)
            assert answer.check_integrity(self.key), "the answer's integrity does not check"
            return answer
        raise AssertionError(f"{Method(method).name}: still challenged after three tries")

    async def allocate(self, *attributes: Attribute) -> list[Address]:
        """Allocate; the relayed addresses."""
        answer = await self.request(Method.ALLOCATE, [RequestedTransport(), *attributes])
        return [attribute.address for attribute in answer.get_all(XorRelayedAddress)]

    async def permit(self, *peers: Address) -> None:
        await self.request(Method.CREATE_PERMISSION, [XorPeerAddress(peer) for peer in peers])

    async def bind(self, channel: int, peer: Address) -> None:
        await self.request(Method.CHANNEL_BIND, [ChannelNumber(channel), XorPeerAddress(peer)])

    async def refresh(self, *attributes: Attribute) -> Message:
        return await self.request(Method.REFRESH, list(attributes))

    def send_channel_data(self, channel: int, data: bytes) -> None:
        message = encode_channel_data(channel, data, pad=self.stream, max_channel=self.max_channel)
        self.send_raw(message)

    def send_indication(self, peer: Address, data: bytes) -> None:
        indication = Message(
            Method.SEND,
            MessageClass.INDICATION,
            secrets.token_bytes(12),
            [XorPeerAddress(peer), Data(data)],
        )
        self.send_raw(indication.encode())

    async def receive(self) -> tuple[int | Address, bytes]:
        """The next relayed message: ``(channel, data)`` or ``(peer, data)``."""
        return await asyncio.wait_for(self.inbox.get(), WAIT)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            if self.stream:
                await asyncio.wait_for(self.closed.wait(), WAIT)
