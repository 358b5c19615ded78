"""``icestack turn`` against coturn's turnserver on loopback: the round trip through its relay over
UDP, TCP, TLS and IPv6, and its refusals said in words.

What coturn 4.6.1 does, as these tests found it:

* It offers no PASSWORD-ALGORITHMS: RFC 5389's MD5 keys, reported as such.
* With ``--allow-loopback-peers`` (the harness's default) it relays between two allocations'
  relayed addresses on loopback; ``--denied-peer-ip`` covering them makes the permissions 403.
* With ``--use-auth-secret`` it accepts REST API credentials made from ``--static-auth-secret``
  and no longer the users of ``--user``.
* It grants TCP allocations (RFC 6062) unless ``--no-tcp-relay``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from stun.tls import CertificateFiles
from tests.cli.test_cli import icestack
from tests.cli.test_turn_probe import check_report
from tests.interop.conftest import TEST_CREDENTIALS
from tests.interop.coturn import RunningTurnserver, running_turnserver, skip_unless_installed
from tests.net.loopback import SKIP_NO_IPV6

USER = ["--user", TEST_CREDENTIALS.username, "--password", TEST_CREDENTIALS.password]
SECRET = "shared-with-the-web-service"


def probe(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = icestack("turn", *args, "--json", "--timeout", "5")
    assert result.returncode in (0, 1), result.stderr
    return result, check_report(json.loads(result.stdout))


def uri(server: RunningTurnserver, transport: str, host: str = "127.0.0.1") -> str:
    if transport == "tls":
        return f"turns:{host}:{server.tls_address(host).port}"
    shown = f"[{host}]" if ":" in host else host
    query = "?transport=tcp" if transport == "tcp" else ""
    return f"turn:{shown}:{server.port}{query}"


@pytest.fixture(scope="module", params=["denied", "rest", "quota"])
def coturn_configured(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    tls_certificate: CertificateFiles,
) -> Iterator[tuple[str, RunningTurnserver]]:
    """coturn with one setting the probe must diagnose."""
    skip_unless_installed("turnserver")
    extra = {
        "denied": ["--denied-peer-ip", "127.0.0.1"],
        "rest": ["--use-auth-secret", "--static-auth-secret", SECRET],
        "quota": ["--user-quota", "1"],
    }[request.param]
    with running_turnserver(
        tmp_path_factory.mktemp(f"coturn-{request.param}"),
        hosts=("127.0.0.1",),
        certificate=tls_certificate,
        credentials=TEST_CREDENTIALS,
        extra_arguments=extra,
    ) as server:
        yield request.param, server


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_a_round_trip_through_coturn(coturn_auth: RunningTurnserver, transport: str) -> None:
    assert coturn_auth.certificate is not None
    cafile = ["--cafile", str(coturn_auth.certificate)] if transport == "tls" else []
    result, report = probe(uri(coturn_auth, transport), *USER, *cafile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["relayed_address"]["host"] == "127.0.0.1"
    assert report["round_trips"] == 3 and report["channel"] is True
    assert report["credentials"]["realm"] == TEST_CREDENTIALS.realm
    assert report["credentials"]["password_algorithm"] == "MD5"
    assert report["credentials"]["password_algorithms_offered"] == []
    assert report["relay_transports"] == {"udp": True, "tcp": None if transport == "udp" else True}
    assert report["deleted"] is True


@SKIP_NO_IPV6
def test_a_round_trip_through_coturn_over_ipv6(coturn_auth: RunningTurnserver) -> None:
    result, report = probe(uri(coturn_auth, "udp", "::1"), *USER)
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["server"]["host"] == "::1"
    assert report["relayed_address"]["host"] == "127.0.0.1"  # IPv4 unless asked (RFC 8656 §7.2)
    result, report = probe(uri(coturn_auth, "udp", "::1"), *USER, "--relay-family", "ipv6")
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["relayed_address"]["host"] == "::1"


def test_a_wrong_password_at_coturn(coturn_auth: RunningTurnserver) -> None:
    result, report = probe(uri(coturn_auth, "udp"), "--user", "alice", "--password", "guess")
    assert result.returncode == 1
    error = report["error"]
    assert (error["step"], error["code"]) == ("allocate", 401)
    assert f"realm {TEST_CREDENTIALS.realm!r}" in error["message"]


def test_coturns_settings_are_diagnosed(coturn_configured: tuple[str, RunningTurnserver]) -> None:
    setting, server = coturn_configured
    if setting == "rest":
        result, report = probe(uri(server, "udp"), "--secret", SECRET, "--user", "probe")
        assert result.returncode == 0, result.stdout + result.stderr
        assert report["credentials"]["kind"] == "rest-api"
        result, report = probe(uri(server, "udp"), "--secret", "another-secret")
        assert (report["error"]["step"], report["error"]["code"]) == ("allocate", 401)
        assert "--secret" in report["error"]["hint"]
        return
    result, report = probe(uri(server, "udp"), *USER)
    assert result.returncode == 1
    error = report["error"]
    if setting == "denied":
        assert (error["step"], error["code"]) == ("permissions", 403)
        assert "peer policy" in error["message"] and "--denied-peer-ip" in error["hint"]
    else:
        assert (error["step"], error["code"]) == ("second allocation", 486)
        assert "--user-quota" in error["hint"]
    assert report["deleted"] is True
