""":func:`stun.explain.explain`: each error a STUN client meets, said in words with a hint, and
never by its class name."""

from __future__ import annotations

import errno
import ssl

import pytest

from stun import (
    ConnectStep,
    ConnectTimeout,
    ErrorResponse,
    IntegrityError,
    Message,
    MessageClass,
    Method,
    ServerUnreachable,
    TransactionTimeout,
)
from stun.attributes import Realm
from stun.errors import DecodeError
from stun.explain import explain
from turn.explain import Situation, explain_turn

TARGET = "192.0.2.1:3478"


def challenge(code: int, realm: str | None = "example.org") -> ErrorResponse:
    attributes = [Realm(realm)] if realm is not None else []
    response = Message(Method.BINDING, MessageClass.ERROR_RESPONSE, bytes(12), attributes)
    return ErrorResponse(code, "Unauthenticated" if code == 401 else "Reason", response)


@pytest.mark.parametrize(
    ("error", "transport", "what", "hint"),
    [
        (challenge(401), "udp", "the server answered 401 Unauthenticated",
         "it wants long-term credentials of realm 'example.org': pass --user and --password"),
        (challenge(401, None), "udp", "the server answered 401 Unauthenticated",
         "it wants long-term credentials: pass --user and --password"),
        (challenge(420), "udp", "the server answered 420 Reason",
         "it requires an attribute this client does not know"),
        (challenge(500), "udp", "the server answered 500 Reason",
         "the server has a problem of its own; try again later"),
        (TransactionTimeout(f"no response from {TARGET} after 7 request(s) in 39.5 s"), "udp",
         f"no response from {TARGET} after 7 request(s) in 39.5 s", "nothing answers STUN there"),
        (TransactionTimeout(f"connection to {TARGET} closed"), "tls",
         f"{TARGET} closed the TLS connection without answering",
         "it may not speak STUN on this port"),
        (TransactionTimeout(f"no response from {TARGET} after 1 request(s) in 39.5 s"), "tcp",
         f"no response from {TARGET} after 1 request(s) in 39.5 s",
         "the server accepted the TCP connection but never answered"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed"), "tcp",
         f"{TARGET} refused the TCP connection: nothing listens on that port",
         "check the port, and that the server runs with TCP enabled"),
        (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "tcp",
         f"{TARGET} reset the TCP connection", "or it expects TLS (--tls)"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "udp", f"no route to {TARGET}",
         "try the other address family (-4 or -6)"),
        (TimeoutError(), "tcp", f"no answer to the TCP connection attempt to {TARGET}",
         "a firewall may drop it"),
        (IntegrityError("every response failed its integrity check"), "udp",
         f"the answers from {TARGET} failed their integrity check", "check --password"),
        (DecodeError("attribute XOR-MAPPED-ADDRESS: bad family 3"), "udp",
         f"{TARGET} answered with something that is not usable STUN: attribute "
         "XOR-MAPPED-ADDRESS: bad family 3", "check that this is the STUN port"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "tls",
         f"the TLS handshake with {TARGET} failed", "STUN over TLS is usually port 5349"),
        (ConnectTimeout("resolving 'stun.example.net' took longer than 2 s", ConnectStep.RESOLVING),
         "udp", "resolving 'stun.example.net' took longer than 2 s", "reach its DNS servers"),
        (ConnectTimeout(f"no answer to the TCP connection attempt to {TARGET} within 2 s",
                        ConnectStep.TCP), "tls",
         f"no answer to the TCP connection attempt to {TARGET} within 2 s", "a firewall may drop"),
        (ConnectTimeout(f"{TARGET} accepted the TCP connection but the TLS handshake did not "
                        "finish within 2 s", ConnectStep.TLS), "tls",
         f"{TARGET} accepted the TCP connection but the TLS handshake did not finish",
         "check that this port speaks TLS"),
        (ServerUnreachable(TARGET, OSError(errno.ENETUNREACH, "Network is unreachable")), "udp",
         f"network unreachable from this host: cannot send to {TARGET} (Network is unreachable)",
         "this host has no route there"),
    ],
)  # fmt: skip
def test_explanations(error: Exception, transport: str, what: str, hint: str) -> None:
    explanation = explain(error, target=TARGET, transport=transport)
    assert explanation.what.startswith(what)
    assert explanation.hint is not None and hint in explanation.hint
    assert type(error).__name__ not in str(explanation)


def test_a_401_with_credentials_is_about_the_credentials() -> None:
    explanation = explain(challenge(401), target=TARGET, transport="udp", with_credentials=True)
    assert explanation.hint == (
        "it refused the username and password: check --user, --password and that they are "
        "credentials of realm 'example.org'"
    )


# --------------------------------------------------------------------------- turn.explain


def turn_error(code: int, reason: str = "Reason", realm: str | None = "r") -> ErrorResponse:
    attributes = [Realm(realm)] if realm is not None else []
    response = Message(Method.ALLOCATE, MessageClass.ERROR_RESPONSE, bytes(12), attributes)
    return ErrorResponse(code, reason, response)


@pytest.mark.parametrize(
    ("error", "step", "what", "hint"),
    [
        (turn_error(437, "Allocation Mismatch"), "allocate",
         "allocate: the server answered 437 Allocation Mismatch: it holds no allocation",
         "try again"),
        (turn_error(441), "permissions", "the credentials of this request different",
         "a proxy altering messages"),
        (turn_error(442), "tcp relays", "it does not relay this transport", "--no-tcp-relay"),
        (turn_error(486), "second allocation", "as many allocations as the server allows",
         "--user-quota"),
        (turn_error(508, "Insufficient Capacity\x00\x00\x00"), "allocate",
         "allocate: the server answered 508 Insufficient Capacity: the server has no capacity",
         "--total-quota"),
        (turn_error(401, realm=None), "allocate", "401 Reason without a REALM",
         "long-term credential mechanism"),
        (turn_error(403), "permissions", "its peer policy refuses to relay to",
         "--allow-loopback-peers"),
        (TimeoutError(f"no answer from {TARGET} within 10 s"), "relay",
         f"relay: no answer from {TARGET} within 10 s", "?transport=tcp or turns:"),
    ],
)  # fmt: skip
def test_turn_explanations(error: Exception, step: str, what: str, hint: str) -> None:
    explanation = explain_turn(error, Situation(step=step, target=TARGET, transport="udp"))
    assert what in explanation.what and explanation.what.startswith(f"{step}: ")
    assert explanation.hint is not None and hint in explanation.hint
    assert "\x00" not in str(explanation)


def test_a_turn_timeout_over_a_stream_says_the_server_took_the_connection() -> None:
    error = TimeoutError(f"no answer from {TARGET} within 10 s")
    explanation = explain_turn(error, Situation(step="allocate", target=TARGET, transport="tls"))
    assert explanation.hint is not None and "took the TLS connection" in explanation.hint
    situation = Situation(step="connect", target=TARGET, transport="tcp")
    connect = explain_turn(TimeoutError(), situation)
    assert connect.what == f"connect: no answer to the TCP connection attempt to {TARGET}"


def test_a_connect_timeout_in_a_later_step_is_about_connecting() -> None:
    error = ConnectTimeout(f"the TCP connection to {TARGET} took longer than 10 s", ConnectStep.TCP)
    situation = Situation(step="second allocation", target=TARGET, transport="tcp")
    explanation = explain_turn(error, situation)
    assert explanation.what.startswith("second allocation: the TCP connection")
    assert explanation.hint is not None and "a firewall may drop it" in explanation.hint
