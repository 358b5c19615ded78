"""``icestack serve stun --rfc5780``, ``icestack nat`` and ``icestack stun`` with several targets as
a user runs them: subprocesses on loopback (127.0.0.1 and 127.0.0.2 are two addresses of this
host), exit statuses, one-line errors, and the ``--json`` documents checked against docs/cli.md."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from ice.cli import main
from stun.address import Address
from stun.behavior import BehaviorAddresses
from stun.cli import listener_endpoints
from tests.cli.test_cli import CLI_DOC, Running, icestack
from tests.net.loopback import free_port_pair

TIMEOUT = "0.5"


def _documented_keys(heading: str) -> set[str]:
    """The keys of the table under ``heading`` in docs/cli.md."""
    text = CLI_DOC.read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    section = text[start : end if end != -1 else len(text)]
    return set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def rfc5780_server() -> Iterator[int]:
    """``serve stun --rfc5780`` on both loopback addresses, over UDP and TCP, with two workers
    (which must carry all four sockets each): its primary port."""
    for attempt in range(3):  # a port free a moment ago may be taken by a parallel test
        port = free_port_pair()
        with Running(
            "serve", "stun", "--rfc5780", "--tcp", "--workers", "2",
            "--listen", f"127.0.0.1:{port}", "--listen", f"127.0.0.2:{port}",
        ) as server:  # fmt: skip
            try:
                lines = server.wait_for(r"^worker \d: listening on (udp|tcp) (\S+)$", 16)
            except AssertionError:
                if attempt == 2:
                    raise
                continue
            assert {m.group(2) for m in lines} == {
                f"{host}:{p}" for host in ("127.0.0.1", "127.0.0.2") for p in (port, port + 1)
            }
            yield port
            return


def test_the_schema_tables_are_found() -> None:
    assert {"mapping", "filtering", "mapped_address", "reason"} <= _documented_keys(
        "### `icestack nat --json`"
    )
    assert {"servers", "answered"} <= _documented_keys("## `icestack stun` with several targets")


def test_nat_json_against_our_server(rfc5780_server: int) -> None:
    port = rfc5780_server
    completed = icestack("nat", f"127.0.0.1:{port}", "--json", "--timeout", TIMEOUT)
    assert completed.returncode == 0, completed.stderr
    report: dict[str, Any] = json.loads(completed.stdout)
    assert set(report) == _documented_keys("### `icestack nat --json`")
    assert report["nat"] is False  # loopback: the mapped address is our own
    assert report["mapping"] == report["filtering"] == "endpoint-independent"
    assert report["hairpinning"] is None and "no NAT" in report["reason"]["hairpinning"]
    assert report["other_address"] == {"host": "127.0.0.2", "port": port + 1}
    assert report["mapped_address"] == report["local_address"]
    assert report["lifetime"] is None and report["reason"]["lifetime"] is None
    assert any("filtering test II" in line for line in report["evidence"]["filtering"])
    assert "test I: Binding request" in completed.stderr  # progress, on stderr


def test_nat_table_ends_with_what_it_means_for_ice(rfc5780_server: int) -> None:
    port = rfc5780_server
    completed = icestack("nat", f"127.0.0.1:{port}", "--tcp", "--timeout", TIMEOUT)
    assert completed.returncode == 0, completed.stderr
    assert "mapping         endpoint-independent" in completed.stdout
    assert "filtering       undetermined: filtering is tested over UDP" in completed.stdout
    tail = completed.stdout.rstrip().split("\n\n")[-1]
    assert tail.startswith("what it means for ICE:")
    assert "endpoint-independent mapping" in tail.splitlines()[-1]


def test_nat_with_several_targets_compares_their_verdicts(rfc5780_server: int) -> None:
    port = rfc5780_server
    targets = [f"127.0.0.1:{port}", f"127.0.0.2:{port + 1}"]
    completed = icestack("nat", *targets, "--timeout", TIMEOUT)
    assert completed.returncode == 0, completed.stderr
    *rows, blank, verdict = completed.stdout.splitlines()
    assert [row.split()[0] for row in rows] == targets
    assert all("mapping endpoint-independent; filtering endpoint-independent" in r for r in rows)
    assert (blank, verdict) == ("", "the servers' verdicts agree")
    assert f"127.0.0.2:{port + 1}: test I: Binding request" in completed.stderr


def test_stun_with_several_targets_is_one_table_and_one_json(rfc5780_server: int) -> None:
    port = rfc5780_server
    targets = [f"127.0.0.1:{port}", f"127.0.0.2:{port + 1}", "no-such-host.invalid"]
    completed = icestack("stun", *targets, "--json", "--timeout", "1")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert set(document) == _documented_keys("## `icestack stun` with several targets")
    assert (document["answered"], document["probed"]) == (2, 3)
    first, second, unresolved = document["servers"]
    assert first["other_address"] == {"host": "127.0.0.2", "port": port + 1}
    assert second["other_address"] == {"host": "127.0.0.1", "port": port}  # §7.4
    assert not unresolved["ok"] and "cannot resolve" in unresolved["error"]["message"]
    table = icestack("stun", *targets[:2], "--tcp", "--timeout", "1")
    assert table.returncode == 0, table.stderr
    header, *rows, summary = table.stdout.splitlines()
    assert header.split()[:3] == ["server", "over", "answer"]
    assert all(" tcp " in row and "yes, other address" in row for row in rows)
    assert summary == "2 of 2 answered"


@pytest.mark.parametrize(
    "args",
    [
        ["stun", "one.invalid", "two.invalid"],
        ["nat", "one.invalid"],
    ],
)
def test_names_that_do_not_resolve_fail_fast_in_one_line(args: list[str]) -> None:
    completed = icestack(*args, "--timeout", "1")
    assert completed.returncode == 2
    assert completed.stdout == ""
    errors = [line for line in completed.stderr.splitlines() if line.startswith("icestack:")]
    assert len(errors) == 1 and "resolve" in errors[0]
    assert "Traceback" not in completed.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "stun", "--rfc5780", "--listen", "127.0.0.1:3478"], "two --listen addresses"),
        (["serve", "stun", "--alt-port", "5000"], "--alt-port without --rfc5780"),
        (["serve", "stun", "--rfc5780", "--listen", "127.0.0.1:3478", "--listen", "[::1]:3478"],
         "one family"),
        (["serve", "stun", "--auth-discovery-only"], "--auth-discovery-only needs --auth"),
        (["nat", "127.0.0.1", "--lifetime", "--tcp"], "--lifetime is a UDP test"),
        (["stun", "--public", "127.0.0.1"], "--public probes the built-in list"),
        (["nat", "stuns:127.0.0.1"], "icestack nat tests over UDP, or TCP"),
    ],
)  # fmt: skip
def test_bad_options_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """In this process (each is refused before any socket opens): ``main`` as the console
    script calls it; the subprocess runs above show the same path end to end."""
    handler = signal.getsignal(signal.SIGTERM)
    try:
        assert main(args) == 2
    finally:
        signal.signal(signal.SIGTERM, handler)
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith("icestack: error: ")
    assert captured.out == ""


def test_four_sockets_share_one_tls_listener_per_ip() -> None:
    behavior = BehaviorAddresses(
        primary=Address("192.0.2.1", 3478), alternate=Address("192.0.2.2", 3479)
    )
    endpoints = listener_endpoints(behavior.sockets, udp=True, tcp=False, tls_port=5349)
    assert sorted(e for e in endpoints if e[0] == "tls") == [
        ("tls", "192.0.2.1", 5349),
        ("tls", "192.0.2.2", 5349),
    ]
    assert len(endpoints) == 6
