"""stun.aio on real loopback sockets: our StunClient against our StunServer over UDP, TCP and TLS,
IPv4 and IPv6, with and without credentials, and the ways a probe can fail.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import pytest

from stun import (
    Address,
    AlternateServer,
    ErrorResponse,
    Integrity,
    Message,
    MessageClass,
    Method,
    Outcome,
    Realm,
    TransactionTimeout,
    Username,
    new_transaction_id,
)
from stun._version import DEFAULT_SOFTWARE
from stun.aio import StunClient, StunServer, Transport, binding
from stun.client import ClientConfig, Credentials
from stun.integrity import short_term_key
from stun.server import LongTermCredentials, ServerConfig, ShortTermCredentials
from stun.tls import CertificateFiles, client_context, server_context
from stun.transaction import TransactionConfig

from .loopback import (
    LOOPBACK_HOSTS,
    binding_request,
    closed_port,
    mapped_address,
    run,
    udp_exchange,
    udp_socket,
    until,
)

TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp", "tls")

#: A schedule that gives up fast: sends at 0 and 50 ms, times out 100 ms later.
FAST_TIMEOUT = TransactionConfig(initial_rto=0.05, max_requests=2, final_wait=2, reliable_timeout=1)


async def _listen(
    server: StunServer, transport: Transport, host: str, tls_files: CertificateFiles
) -> Address:
    context = (
        server_context(tls_files.certificate, tls_files.private_key) if transport == "tls" else None
    )
    listener = await server.listen(transport, host, 0, ssl_context=context)
    assert listener.transport == transport
    return listener.address


# --------------------------------------------------------------------------- basic binding


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_binding_over_each_transport(
    transport: Transport, host: str, tls_files: CertificateFiles
) -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            address = await _listen(server, transport, host, tls_files)
            result = await binding(
                host,
                address.port,
                transport=transport,
                ssl_context=client_context(tls_files.certificate),
            )
            assert result.server == address
            assert result.mapped_address is not None
            assert result.mapped_address.host == host
            assert result.mapped_address.port > 0
            assert result.software == DEFAULT_SOFTWARE
            assert "XOR-MAPPED-ADDRESS (RFC 5389/8489)" in result.features
            assert "FINGERPRINT" in result.features
            assert server.server.stats[Outcome.ANSWERED] == 1

    run(scenario())


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_udp_mapped_address_is_the_source_socket(host: str) -> None:
    """The server reflects exactly the address a request came from (RFC 8489 §6.3.1.1)."""

    async def scenario() -> None:
        async with StunServer() as server:
            listener = await server.listen("udp", host, 0)
            with udp_socket(host) as sock:
                tid = new_transaction_id()
                answer = await udp_exchange(sock, binding_request(tid), listener.address)
                assert mapped_address(answer, tid) == Address(*sock.getsockname()[:2])

    run(scenario())


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_stream_mapped_address_is_the_connection_source(
    transport: Transport, host: str, tls_files: CertificateFiles
) -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            address = await _listen(server, transport, host, tls_files)
            context = client_context(tls_files.certificate) if transport == "tls" else None
            reader, writer = await asyncio.open_connection(address.host, address.port, ssl=context)
            try:
                tid = new_transaction_id()
                writer.write(binding_request(tid))
                header = await reader.readexactly(20)
                body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
                source = writer.get_extra_info("sockname")
                assert mapped_address(header + body, tid) == Address(source[0], source[1])
            finally:
                writer.close()

    run(scenario())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_many_concurrent_requests_on_one_client(transport: Transport) -> None:
    """More requests than max_outstanding: the rest queue, and every one is answered."""

    async def scenario() -> None:
        async with StunServer() as server:
            listener = await server.listen(transport, "127.0.0.1", 0)
            async with await StunClient.connect(
                "127.0.0.1", listener.address.port, transport=transport
            ) as client:
                results = await asyncio.gather(*(client.binding() for _ in range(300)))
            mapped = {result.mapped_address for result in results}
            assert len(mapped) == 1  # one socket, one reflexive address
            assert server.server.stats[Outcome.ANSWERED] >= 300

    run(scenario())


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_long_term_credentials_end_to_end(transport: Transport) -> None:
    credentials = LongTermCredentials.from_passwords("icestack.test", {"alice": "wonderland"})

    async def scenario() -> None:
        config = ServerConfig(authentication=credentials)
        async with StunServer(config) as server:
            port = (await server.listen(transport, "127.0.0.1", 0)).address.port
            good = Credentials(username="alice", password="wonderland")
            async with await StunClient.connect(
                "127.0.0.1", port, transport=transport, credentials=good
            ) as client:
                first = await client.binding()
                second = await client.binding()  # reuses the cached nonce: no new challenge
            for result in (first, second):
                assert result.mapped_address is not None
                assert result.mapped_address.host == "127.0.0.1"
                assert result.software == DEFAULT_SOFTWARE
                # The server offered SHA-256 first (RFC 8489 §9.2.4), so the answer uses it.
                assert "MESSAGE-INTEGRITY-SHA256 (RFC 8489)" in result.features
            stats = server.server.stats
            assert stats[Outcome.CHALLENGED] == 1
            assert stats[Outcome.ANSWERED] == 2

            bad = Credentials(username="alice", password="looking-glass")
            with pytest.raises(ErrorResponse) as wrong_password:
                await binding("127.0.0.1", port, transport=transport, credentials=bad)
            assert wrong_password.value.code == 401
            assert stats[Outcome.BAD_INTEGRITY] == 1

            with pytest.raises(ErrorResponse) as no_credentials:
                await binding("127.0.0.1", port, transport=transport)
            assert no_credentials.value.code == 401
            response = no_credentials.value.response
            assert response is not None
            realm = response.get(Realm)
            assert realm is not None
            assert realm.value == "icestack.test"
            assert stats[Outcome.ANSWERED] == 2

    run(scenario())


def test_short_term_server_rejects_unauthenticated_and_wrong_keys() -> None:
    """RFC 8489 §9.1.3: no USERNAME or integrity → 400; bad user or key → 401; good key → 200."""
    keys = ShortTermCredentials.from_passwords({"ufrag:peer": "password"})

    async def scenario() -> None:
        async with StunServer(ServerConfig(authentication=keys)) as server:
            listener = await server.listen("udp", "127.0.0.1", 0)
            with pytest.raises(ErrorResponse) as unauthenticated:
                await binding("127.0.0.1", listener.address.port)
            assert unauthenticated.value.code == 400

            def request(username: str, password: str) -> tuple[bytes, bytes]:
                tid = new_transaction_id()
                message = Message(Method.BINDING, MessageClass.REQUEST, tid, [Username(username)])
                key = short_term_key(password)
                return tid, message.encode(key=key, integrity=Integrity.SHA1, fingerprint=True)

            with udp_socket("127.0.0.1") as sock:
                cases = [
                    ("ufrag:peer", "wrong", 401),
                    ("stranger", "password", 401),
                    ("ufrag:peer", "password", None),
                ]
                for username, password, code in cases:
                    tid, data = request(username, password)
                    answer = Message.decode(await udp_exchange(sock, data, listener.address))
                    assert answer.transaction_id == tid
                    if code is None:
                        assert answer.message_class is MessageClass.SUCCESS_RESPONSE
                        assert answer.check_integrity(short_term_key(password))
                    else:
                        assert answer.message_class is MessageClass.ERROR_RESPONSE
                        assert answer.error_code is not None
                        assert answer.error_code.code == code
            stats = server.server.stats
            assert stats[Outcome.INCOMPLETE_CREDENTIALS] == 1
            assert stats[Outcome.BAD_INTEGRITY] == 1
            assert stats[Outcome.UNKNOWN_USER] == 1
            assert stats[Outcome.ANSWERED] == 1

    run(scenario())


# --------------------------------------------------------------------------- TLS


def test_tls_client_refuses_an_unverified_certificate(tls_files: CertificateFiles) -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            address = await _listen(server, "tls", "127.0.0.1", tls_files)
            # The default context trusts the system CAs only, which never signed this certificate.
            with pytest.raises(ssl.SSLCertVerificationError):
                await binding("127.0.0.1", address.port, transport="tls")
            # Trusting the certificate is not enough when it does not name the host asked for.
            with pytest.raises(ssl.SSLCertVerificationError):
                await binding(
                    "127.0.0.1",
                    address.port,
                    transport="tls",
                    ssl_context=client_context(tls_files.certificate),
                    server_hostname="stun.example.net",
                )
            assert server.server.stats[Outcome.ANSWERED] == 0
            insecure = client_context(verify=False)
            result = await binding("127.0.0.1", address.port, transport="tls", ssl_context=insecure)
            assert result.mapped_address is not None

    run(scenario())


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("host", LOOPBACK_HOSTS)
def test_udp_request_to_a_closed_port_times_out(host: str) -> None:
    async def scenario() -> None:
        config = ClientConfig(transaction=FAST_TIMEOUT)
        with pytest.raises(TransactionTimeout) as timeout:
            await binding(host, closed_port(host), config=config)
        assert "after 2 request(s)" in str(timeout.value)

    run(scenario())


def test_tcp_connection_to_a_closed_port_is_refused() -> None:
    async def scenario() -> None:
        with pytest.raises(ConnectionRefusedError):
            port = closed_port("127.0.0.1", socket.SOCK_STREAM)
            await binding("127.0.0.1", port, transport="tcp")

    run(scenario())


def test_tcp_connection_closed_by_the_server_fails_the_request() -> None:
    """RFC 8489 §6.2.2: a transaction whose connection closes has failed — at once, not after Ti."""

    async def scenario() -> None:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            writer.close()

        hangup_server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        port = hangup_server.sockets[0].getsockname()[1]
        async with (
            hangup_server,
            await StunClient.connect("127.0.0.1", port, transport="tcp") as client,
        ):
            # Ti stays at its 39.5 s default: only the closed connection can end this in time.
            with pytest.raises(TransactionTimeout, match="closed"):
                await asyncio.wait_for(client.binding(), 10)
            # A later request opens a new connection (§6.2.2), which this server closes too.
            with pytest.raises(TransactionTimeout, match="closed"):
                await asyncio.wait_for(client.binding(), 10)

    run(scenario())


def test_tcp_client_reconnects_after_the_server_closed_an_idle_connection() -> None:
    """RFC 8489 §6.2.2: when an idle connection no longer works, the client opens a new one."""

    async def scenario() -> None:
        async with StunServer(idle_timeout=0.2) as server:
            listener = await server.listen("tcp", "127.0.0.1", 0)
            async with await StunClient.connect(
                "127.0.0.1", listener.address.port, transport="tcp"
            ) as client:
                first = await client.binding()
                await until(lambda: server.connection_count == 0 and not client.connected)
                second = await client.binding()
                assert server.connection_count == 1
            assert first.mapped_address != second.mapped_address  # a new source port
            assert server.server.stats[Outcome.ANSWERED] == 2

    run(scenario())


# --------------------------------------------------------------------------- ALTERNATE-SERVER


def _try_alternate(request: bytes, alternate: Address) -> bytes:
    """A 300 Try Alternate answer to ``request`` pointing at ``alternate`` (RFC 8489 §10)."""
    message = Message.decode(request)
    return message.error_response(300, attributes=[AlternateServer(alternate)]).encode(
        fingerprint=True
    )


def test_udp_client_follows_alternate_server() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        async with StunServer() as server:
            real = (await server.listen("udp", "127.0.0.1", 0)).address
            with udp_socket("127.0.0.1") as redirector:
                redirect_address = Address(*redirector.getsockname())
                async with await StunClient.connect("127.0.0.1", redirect_address.port) as client:
                    probe = asyncio.ensure_future(client.binding())
                    request, source = await loop.sock_recvfrom(redirector, 65536)
                    await loop.sock_sendto(redirector, _try_alternate(request, real), source)
                    result = await probe
                    assert client.server == real
            assert result.server == real
            assert result.mapped_address == Address(source[0], source[1])
            assert server.server.stats[Outcome.ANSWERED] == 1

    run(scenario())


def test_tcp_client_follows_alternate_server_to_a_new_connection() -> None:
    async def scenario() -> None:
        async with StunServer() as server:
            real = (await server.listen("tcp", "127.0.0.1", 0)).address

            async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                header = await reader.readexactly(20)
                body = await reader.readexactly(int.from_bytes(header[2:4], "big"))
                writer.write(_try_alternate(header + body, real))
                await writer.drain()
                await reader.read()  # until the client hangs up
                writer.close()

            redirector = await asyncio.start_server(redirect, "127.0.0.1", 0)
            port = redirector.sockets[0].getsockname()[1]
            async with (
                redirector,
                await StunClient.connect("127.0.0.1", port, transport="tcp") as client,
            ):
                result = await client.binding()
                again = await client.binding()  # stays on the new connection
            assert result.server == real
            assert again.server == real
            assert result.mapped_address == again.mapped_address
            assert server.server.stats[Outcome.ANSWERED] == 2

    run(scenario())
