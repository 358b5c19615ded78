"""The coturn harness works: coturn answers our codec's requests on every transport it serves.

Plain blocking sockets with timeouts, so that a failure here points at the harness (or coturn),
never at icestack's own clients.
"""

from __future__ import annotations

import socket
import struct

import pytest

from stun import (
    ErrorCode,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    UnknownAttribute,
    XorMappedAddress,
    make_address,
    new_transaction_id,
)
from stun.tls import client_context
from tests.interop.conftest import TEST_CREDENTIALS
from tests.interop.coturn import (
    RunningTurnserver,
    binding_request,
    loopback_hosts,
    run_stunclient,
    skip_unless_installed,
    udp_request,
)

TIMEOUT = 5.0
#: REQUESTED-TRANSPORT (RFC 8656 §18.7) asking for UDP: protocol 17 and three reserved bytes.
#: Spelled as raw bytes because the TURN attributes are not registered with the codec here.
REQUESTED_TRANSPORT_UDP = UnknownAttribute(0x0019, bytes([17, 0, 0, 0]))


@pytest.mark.parametrize("host", loopback_hosts())
def test_udp_binding_maps_our_own_address(coturn: RunningTurnserver, host: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        request = binding_request()
        response = udp_request(s, coturn.address(host), request, TIMEOUT)
        ours = make_address(*s.getsockname()[:2])
    assert (response.method, response.message_class) == (
        Method.BINDING,
        MessageClass.SUCCESS_RESPONSE,
    )
    assert response.get(XorMappedAddress) == XorMappedAddress(ours)


def _read_message(stream: socket.socket) -> Message:
    """Read exactly one STUN message from a stream (20-byte header, then its length field)."""
    data = b""
    needed = 20
    while len(data) < needed:
        chunk = stream.recv(needed - len(data))
        assert chunk, "coturn closed the connection"
        data += chunk
        if len(data) == 20:
            needed += struct.unpack_from("!H", data, 2)[0]
    return Message.decode(data)


@pytest.mark.parametrize("use_tls", [False, True], ids=["tcp", "tls"])
def test_stream_binding_maps_our_own_address(coturn: RunningTurnserver, use_tls: bool) -> None:
    server = coturn.tls_address() if use_tls else coturn.address()
    with socket.create_connection(server, timeout=TIMEOUT) as plain:
        stream = plain
        if use_tls:
            assert coturn.certificate is not None
            context = client_context(coturn.certificate)
            stream = context.wrap_socket(plain, server_hostname=server.host)
        request = binding_request()
        stream.sendall(request.encode())
        response = _read_message(stream)
        ours = make_address(*stream.getsockname()[:2])
    assert response.transaction_id == request.transaction_id
    assert response.message_class is MessageClass.SUCCESS_RESPONSE
    assert response.get(XorMappedAddress) == XorMappedAddress(ours)


def test_allocate_without_credentials_is_challenged(coturn_auth: RunningTurnserver) -> None:
    """RFC 8656 §7.2 / RFC 8489 §9.2.4: a request with no credentials gets 401, REALM, NONCE."""
    request = Message(
        Method.ALLOCATE, MessageClass.REQUEST, new_transaction_id(), [REQUESTED_TRANSPORT_UDP]
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        response = udp_request(s, coturn_auth.address(), request, TIMEOUT)
    assert response.message_class is MessageClass.ERROR_RESPONSE
    error = response.get(ErrorCode)
    assert error is not None and error.code == 401
    assert response.get(Realm) == Realm(TEST_CREDENTIALS.realm)
    nonce = response.get(Nonce)
    assert nonce is not None and nonce.value


def test_stunclient_reports_the_mapped_address(coturn: RunningTurnserver) -> None:
    skip_unless_installed("turnutils_stunclient")
    result = run_stunclient(coturn.address())
    assert result.returncode == 0, result.output
    assert result.mapped_addresses, result.output
    assert {address.host for address in result.mapped_addresses} == {"127.0.0.1"}
