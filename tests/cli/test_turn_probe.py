"""``icestack turn`` as a user runs it, against ``icestack serve turn`` on loopback: the round trip
through the relay over UDP, TCP and TLS, the ``--json`` document checked against docs/cli.md,
each failure named by its step and said in words (untrusted certificate, wrong password, wrong
REST API secret, the user's quota, nothing listening), and exit 2 for bad options."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from stun.address import make_address
from stun.tls import CertificateFiles, make_self_signed
from tests.cli.test_cli import CLI_DOC, Running, icestack
from tests.cli.test_serve_turn import started
from tests.net.loopback import closed_port
from turn.probe import unreachable_relay

SERVE = ["serve", "turn", "--listen", "127.0.0.1:0", "--realm", "example.org"]
USER = ["--user", "alice", "--password", "wonderland"]
NORMAL_STEPS = ["connect", "allocate", "second allocation", "permissions", "relay"]


def _documented_keys() -> set[str]:
    text = CLI_DOC.read_text()
    start = text.index("### `icestack turn --json`")
    section = text[start : text.index("\n## ", start)]
    return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


DOCUMENTED_KEYS = _documented_keys()


def _check_address(value: Any) -> None:
    assert isinstance(value, dict) and set(value) == {"host", "port"}
    assert make_address(value["host"], value["port"]) == (value["host"], value["port"])


def check_report(report: Any) -> dict[str, Any]:
    """Hold one ``icestack turn --json`` document to every type docs/cli.md promises."""
    assert isinstance(report, dict)
    assert set(report) == DOCUMENTED_KEYS  # a new key must be documented too
    assert isinstance(report["ok"], bool)
    assert report["transport"] in ("udp", "tcp", "tls")
    _check_address(report["server"])
    for key in ("relayed_address", "mapped_address"):
        if report[key] is not None:
            _check_address(report[key])
    credentials = report["credentials"]
    assert set(credentials) == {
        "kind", "username", "realm", "password_algorithm", "password_algorithms_offered",
        "userhash",
    }  # fmt: skip
    assert credentials["kind"] in ("long-term", "rest-api")
    assert credentials["password_algorithm"] in ("MD5", "SHA-256", None)
    assert isinstance(report["round_trips"], int) and isinstance(report["lost"], int)
    assert set(report["relay_transports"]) == {"udp", "tcp"}
    for step in report["steps"]:
        assert set(step) == {"name", "ok", "ms"} and step["ms"] >= 0
    assert all(isinstance(note, str) for note in report["notes"])
    if report["error"] is not None:
        assert set(report["error"]) == {"step", "type", "message", "hint", "code"}
        assert report["error"]["step"] in {step["name"] for step in report["steps"]}
    return report


def probe(*args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """``icestack turn ARGS --json``: the run and its checked report."""
    result = icestack("turn", *args, "--json")
    assert result.returncode in (0, 1), result.stderr
    return result, check_report(json.loads(result.stdout))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_self_signed(tmp_path_factory.mktemp("probe-tls"))


@pytest.fixture(scope="module")
def server(certificate: CertificateFiles) -> Iterator[dict[str, str]]:
    """One server for most tests: long-term users and a REST API secret, over UDP, TCP and TLS,
    with its default peer policy (which refuses loopback peers but for relayed addresses)."""
    tls = ["--tls", str(certificate.certificate), str(certificate.private_key)]
    with Running(
        *SERVE, "--user", "alice:wonderland", "--static-auth-secret", "north-wind",
        *tls, "--tls-listening-port", "0",
    ) as running:  # fmt: skip
        listeners = started(running, 3)
        yield {
            "udp": f"turn:127.0.0.1:{listeners['udp'].port}",
            "tcp": f"turn:127.0.0.1:{listeners['tcp'].port}?transport=tcp",
            "tls": f"turns:127.0.0.1:{listeners['tls'].port}",
        }


def test_a_round_trip_through_the_relay_over_udp(server: dict[str, str]) -> None:
    result, report = probe(server["udp"], *USER)
    assert result.returncode == 0, result.stderr
    assert report["ok"] and report["error"] is None
    assert report["relayed_address"]["host"] == "127.0.0.1"
    assert report["mapped_address"]["host"] == "127.0.0.1"
    assert report["lifetime_s"] == 600
    assert report["relay_rtt_ms"] > 0 and report["round_trips"] == 3 and report["lost"] == 0
    assert report["channel"] is True
    assert report["relay_transports"] == {"udp": True, "tcp": None}
    assert report["deleted"] is True
    assert [step["name"] for step in report["steps"]] == [*NORMAL_STEPS, "delete"]
    assert report["credentials"] == {
        "kind": "long-term", "username": "alice", "realm": "example.org",
        "password_algorithm": "SHA-256", "password_algorithms_offered": ["SHA-256", "MD5"],
        "userhash": False,
    }  # fmt: skip
    assert re.search(r"^\[ *[\d.]+s\] round trip 3: [\d.]+ ms through the relay$", result.stderr,
                     re.M)  # fmt: skip
    assert "the TURN server works" in result.stderr


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_a_round_trip_over_a_stream_also_checks_tcp_relays(
    server: dict[str, str], certificate: CertificateFiles, transport: str
) -> None:
    cafile = ["--cafile", str(certificate.certificate)] if transport == "tls" else []
    result, report = probe(server[transport], *USER, *cafile)
    assert result.returncode == 0, result.stderr
    assert report["transport"] == transport
    assert report["relay_transports"] == {"udp": True, "tcp": True}
    assert [step["name"] for step in report["steps"]] == [*NORMAL_STEPS, "tcp relays", "delete"]
    assert "connected over " + transport in result.stderr


def test_the_table_says_it_in_rows(server: dict[str, str]) -> None:
    result = icestack("turn", server["udp"], *USER)
    assert result.returncode == 0, result.stderr
    rows = dict(re.findall(r"^(\w[\w ]*?)  +(.*)$", result.stdout, re.M))
    assert rows["credentials"].startswith("long-term, user 'alice'; realm 'example.org'")
    assert re.fullmatch(r"127\.0\.0\.1:\d+, for 600 s", rows["relayed address"])
    assert re.match(r"[\d.]+ ms \(median of 3 round trips, 0 lost", rows["relay rtt"])
    assert rows["deleted"] == "yes"


def test_an_untrusted_certificate_fails_the_connect_with_the_hint(server: dict[str, str]) -> None:
    result, report = probe(server["tls"], *USER)
    assert result.returncode == 1
    error = report["error"]
    assert error["step"] == "connect" and error["type"] == "SSLCertVerificationError"
    assert "not trusted" in error["message"]
    assert "--cafile" in error["hint"] and "--insecure" in error["hint"]
    assert report["relayed_address"] is None and report["deleted"] is None
    insecure, report = probe(server["tls"], *USER, "--insecure")
    assert insecure.returncode == 0 and report["ok"]


def test_a_wrong_password_is_a_401_about_the_credentials(server: dict[str, str]) -> None:
    result, report = probe(server["udp"], "--user", "alice", "--password", "guess")
    assert result.returncode == 1
    error = report["error"]
    assert (error["step"], error["code"]) == ("allocate", 401)
    assert "refused the username and password for realm 'example.org'" in error["message"]
    assert "--password" in error["hint"]
    assert "failed: allocate: the server answered 401" in result.stderr


def test_rest_api_credentials_from_the_secret(server: dict[str, str]) -> None:
    result, report = probe(server["udp"], "--secret", "north-wind", "--user", "probe")
    assert result.returncode == 0, result.stderr
    credentials = report["credentials"]
    assert credentials["kind"] == "rest-api"
    assert re.fullmatch(r"\d{10}:probe", credentials["username"])
    wrong, report = probe(server["udp"], "--secret", "south-wind")
    assert wrong.returncode == 1
    error = report["error"]
    assert (error["step"], error["code"]) == ("allocate", 401)
    assert "REST API credentials" in error["message"] and "--secret" in error["hint"]


def test_the_users_quota_stops_the_second_allocation() -> None:
    with Running(*SERVE, "--user", "alice:wonderland", "--user-quota", "1") as running:
        udp = started(running, 2)["udp"]
        result, report = probe(f"turn:127.0.0.1:{udp.port}", *USER)
    assert result.returncode == 1
    error = report["error"]
    assert (error["step"], error["code"]) == ("second allocation", 486)
    assert "--user-quota" in error["hint"]
    assert report["relayed_address"] is not None and report["deleted"] is True


def test_a_server_without_tcp_relays_is_reported_not_failed() -> None:
    with Running(*SERVE, "--user", "alice:wonderland", "--no-tcp-relay") as running:
        tcp = started(running, 2)["tcp"]
        result, report = probe(f"turn:127.0.0.1:{tcp.port}?transport=tcp", *USER)
    assert result.returncode == 0, result.stderr
    assert report["relay_transports"] == {"udp": True, "tcp": False}
    (tcp_step,) = [step for step in report["steps"] if step["name"] == "tcp relays"]
    assert tcp_step["ok"] is False


def test_nothing_listening_is_said_per_transport() -> None:
    port = closed_port("127.0.0.1")
    result, report = probe(f"turn:127.0.0.1:{port}", *USER, "--timeout", "1")
    assert result.returncode == 1
    assert report["error"]["step"] == "allocate"
    assert "no answer to Allocate" in report["error"]["message"]
    assert "?transport=tcp or turns:" in report["error"]["hint"]
    result, report = probe(f"turn:127.0.0.1:{port}?transport=tcp", *USER, "--timeout", "1")
    assert result.returncode == 1
    assert report["error"]["step"] == "connect"
    assert "refused the TCP connection" in report["error"]["message"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stun:127.0.0.1", *USER], "is a STUN URI"),
        (["turn:127.0.0.1"], "a TURN server always asks for credentials"),
        (["turn:127.0.0.1", "--user", "alice"], "--password missing"),
        (["turn:127.0.0.1", *USER, "--cafile", "ca.pem"], "--cafile is for TURN over TLS"),
        (["turn:[::1", *USER], "'[' without ']'"),
        (["turn:127.0.0.1?transport=sctp", *USER], "transport 'sctp' is not supported"),
        (["turn:127.0.0.1", "--secret", "s", "--password", "p"], "drop --password"),
        (["turn:127.0.0.1", *USER, "--ttl", "60"], "--ttl is for credentials made from --secret"),
        (["turns:127.0.0.1", *USER, "--cafile", "/nonexistent/ca.pem"], "no such file"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = icestack("turn", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("icestack") and "error:" in line and message in line



def test_a_redirect_is_followed_and_noted(server: dict[str, str]) -> None:
    alternate = server["udp"].removeprefix("turn:")
    with Running(*SERVE, "--user", "alice:wonderland", "--alternate-server", alternate) as running:
        udp = started(running, 2)["udp"]
        result, report = probe(f"turn:127.0.0.1:{udp.port}", *USER)
    assert result.returncode == 0, result.stderr
    (note,) = report["notes"]
    assert note == f"the server sent the allocation on to {alternate} (300 Try Alternate)"


def test_a_private_relayed_address_of_a_public_server_is_noted() -> None:
    """What a server behind a NAT announces when nobody told it its public address (no traffic
    goes anywhere: the addresses are only judged)."""
    public = make_address("1.2.3.4", 3478)
    note = unreachable_relay(make_address("10.0.0.5", 50000), public)
    assert note is not None and "10.0.0.5:50000" in note and "--external-ip" in note
    assert unreachable_relay(make_address("1.2.3.4", 50000), public) is None
    local = make_address("127.0.0.1", 3478)  # a server on loopback: nothing to say
    assert unreachable_relay(make_address("127.0.0.1", 50000), local) is None
