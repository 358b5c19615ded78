"""``icestack demo``, ``stun`` and ``serve stun`` as a user runs them: subprocesses, exit statuses,
stdout and stderr, and the ``--json`` document checked against docs/cli.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest

from stun import Address, new_transaction_id
from stun._version import DEFAULT_SOFTWARE, __version__
from stun.address import make_address
from stun.aio import Listener, StunServer
from stun.tls import CertificateFiles, make_self_signed, server_context
from tests.net.loopback import IPV6, binding_request, closed_port, mapped_address

ICESTACK = [sys.executable, "-m", "ice.cli"]
#: Bound on any one CLI run; only a hang reaches it.
RUN_TIMEOUT = 30.0
CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def icestack(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``icestack ARGS`` to completion."""
    return subprocess.run(
        [*ICESTACK, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )


# --------------------------------------------------------------------------- the --json schema


def _documented_json() -> tuple[set[str], set[str]]:
    """The keys of the ``--json`` table in docs/cli.md, and the feature strings it lists."""
    text = CLI_DOC.read_text()
    start = text.index("### `--json`")
    end = text.find("\n## ", start)  # the section ends where the next command's begins
    section = text[start : end if end != -1 else len(text)]
    rows = re.findall(r"^\| `(\w+)` \| (.*)$", section, flags=re.MULTILINE)
    keys = {key for key, _ in rows}
    features_row = next(rest for key, rest in rows if key == "features")
    return keys, set(re.findall(r'`"([^"`]+)"`', features_row))


DOCUMENTED_KEYS, DOCUMENTED_FEATURES = _documented_json()


def _check_address(value: Any) -> None:
    assert isinstance(value, dict)
    assert set(value) == {"host", "port"}
    assert isinstance(value["host"], str)
    assert isinstance(value["port"], int)
    assert make_address(value["host"], value["port"]) == (value["host"], value["port"])  # canonical


def check_report(report: Any) -> dict[str, Any]:
    """Hold one ``icestack stun --json`` document to every type docs/cli.md promises."""
    assert isinstance(report, dict)
    assert set(report) == DOCUMENTED_KEYS  # a new key must be documented too
    assert isinstance(report["ok"], bool)
    assert isinstance(report["target"], str)
    assert report["transport"] in ("udp", "tcp", "tls")
    for key in ("server", "mapped_address", "response_origin", "other_address"):
        if report[key] is not None:
            _check_address(report[key])
    rtt = report["rtt_ms"]
    assert rtt is None or (isinstance(rtt, int | float) and not isinstance(rtt, bool) and rtt >= 0)
    assert report["software"] is None or isinstance(report["software"], str)
    assert isinstance(report["features"], list)
    assert set(report["features"]) <= DOCUMENTED_FEATURES
    error = report["error"]
    if report["ok"]:
        assert error is None
        assert report["server"] is not None
        assert report["mapped_address"] is not None
        assert rtt is not None
    else:
        assert isinstance(error, dict)
        assert set(error) == {"type", "message", "hint", "code"}
        assert isinstance(error["type"], str)
        assert isinstance(error["message"], str)
        assert error["hint"] is None or isinstance(error["hint"], str)
        assert error["code"] is None or isinstance(error["code"], int)
        assert report["mapped_address"] is None
        assert rtt is None
        assert report["features"] == []
    return report


def probe_json(*args: str, status: int) -> dict[str, Any]:
    """Run ``icestack stun ARGS --json``, check its exit status and schema, return the document."""
    completed = icestack("stun", *args, "--json")
    assert completed.returncode == status, completed.stderr
    return check_report(json.loads(completed.stdout))


def test_the_schema_parser_found_the_table() -> None:
    assert {"ok", "mapped_address", "features", "error"} <= DOCUMENTED_KEYS
    assert "FINGERPRINT" in DOCUMENTED_FEATURES


# --------------------------------------------------------------------------- a server to probe


@dataclass(frozen=True)
class BackgroundServer:
    """A StunServer on its own thread and event loop, with one listener per transport."""

    udp: Address
    tcp: Address
    tls: Address
    tls_files: CertificateFiles


@pytest.fixture(scope="module")
def stun_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    files = make_self_signed(tmp_path_factory.mktemp("cli-tls"))
    ready: queue.Queue[list[Listener] | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop: asyncio.Future[None] = loop.create_future()

    async def serve() -> None:
        try:
            async with StunServer() as server:
                context = server_context(files.certificate, files.private_key)
                await server.listen("udp", "127.0.0.1")
                await server.listen("tcp", "127.0.0.1")
                await server.listen("tls", "127.0.0.1", ssl_context=context)
                ready.put(server.listeners)
                await stop
        except BaseException as exc:
            ready.put(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        started = ready.get(timeout=10)
        if isinstance(started, BaseException):
            raise started
        udp, tcp, tls = (listener.address for listener in started)
        yield BackgroundServer(udp, tcp, tls, files)
    finally:
        loop.call_soon_threadsafe(stop.set_result, None)
        thread.join(10)
        loop.close()


# --------------------------------------------------------------------------- a server that runs


class Running:
    """``icestack ARGS`` running in the background; its stdout is read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*ICESTACK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _next_line(self, timeout: float) -> str | None:
        line = self._lines.get(timeout=timeout)
        if line is not None:
            self.stdout.append(line)
        return line

    def wait_for(self, pattern: str, count: int, timeout: float = 15.0) -> list[re.Match[str]]:
        """The first ``count`` stdout lines that match ``pattern``, read within ``timeout``."""
        matches: list[re.Match[str]] = []
        while len(matches) < count:
            line = self._next_line(timeout)
            if line is None:
                raise AssertionError(f"exited before {count} of {pattern!r}: {self.stderr()}")
            if match := re.search(pattern, line):
                matches.append(match)
        return matches

    def interrupt(self) -> int:
        """Send SIGINT (as Ctrl-C would) to this process only and wait for it to exit."""
        os.kill(self.process.pid, signal.SIGINT)
        status = self.process.wait(RUN_TIMEOUT)
        while self._next_line(RUN_TIMEOUT) is not None:
            pass
        return status

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            # SIGTERM lets a --workers parent stop its own workers; then make sure.
            children = _children(self.process.pid)
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


LISTENING = r"listening on (udp|tcp|tls) (\S+)$"


def _listeners(process: Running, count: int) -> dict[str, Address]:
    listeners = {}
    for match in process.wait_for(LISTENING, count):
        host, _, port = match.group(2).rpartition(":")
        listeners[match.group(1)] = Address(host.strip("[]"), int(port))
    return listeners


def _free_udp_port() -> int:
    return closed_port("127.0.0.1", socket.SOCK_DGRAM)


# --------------------------------------------------------------------------- icestack demo


def test_demo_answers_every_probe() -> None:
    """The demo's first section; tests/cli/test_ice_commands.py checks its ICE section."""
    completed = icestack("demo")
    assert completed.returncode == 0, completed.stderr
    expected = 6 if IPV6 else 3
    assert len(re.findall(r"^\s+listening on ", completed.stdout, flags=re.MULTILINE)) == expected
    assert re.search(rf"^probes\s+{expected}$", completed.stdout, flags=re.MULTILINE)
    assert re.search(rf"^answered\s+{expected}$", completed.stdout, flags=re.MULTILINE)
    assert "failed:" not in completed.stdout  # how a probe that got no answer shows


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "icestack"
    if not script.exists():
        pytest.skip(f"no console script at {script}: the package is not installed in this venv")
    completed = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert completed.returncode == 0
    assert completed.stdout.strip() == f"icestack {__version__}"


# --------------------------------------------------------------------------- icestack stun


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_stun_json_over_each_transport(stun_server: BackgroundServer, transport: str) -> None:
    server: Address = getattr(stun_server, transport)
    options = {
        "udp": [],
        "tcp": ["--tcp"],
        "tls": ["--tls", "--cafile", str(stun_server.tls_files.certificate)],
    }[transport]
    report = probe_json(f"127.0.0.1:{server.port}", *options, status=0)
    assert report["ok"] is True
    assert report["target"] == f"127.0.0.1:{server.port}"
    assert report["transport"] == transport
    assert report["server"] == {"host": "127.0.0.1", "port": server.port}
    assert report["mapped_address"]["host"] == "127.0.0.1"
    assert report["mapped_address"]["port"] > 0
    assert report["software"] == DEFAULT_SOFTWARE
    assert "XOR-MAPPED-ADDRESS (RFC 5389/8489)" in report["features"]
    assert "FINGERPRINT" in report["features"]
    assert report["response_origin"] is None
    assert report["other_address"] is None


def test_stun_table_output(stun_server: BackgroundServer) -> None:
    completed = icestack("stun", f"127.0.0.1:{stun_server.udp.port}")
    assert completed.returncode == 0, completed.stderr
    assert re.search(r"^mapped address\s+127\.0\.0\.1:\d+$", completed.stdout, flags=re.MULTILINE)
    assert re.search(rf"^software\s+{re.escape(DEFAULT_SOFTWARE)}$", completed.stdout, re.M)


def test_stun_tls_verification(stun_server: BackgroundServer) -> None:
    target = f"127.0.0.1:{stun_server.tls.port}"
    refused = probe_json(target, "--tls", status=1)  # the system CAs never signed it
    assert refused["ok"] is False
    assert refused["error"]["type"] == "SSLCertVerificationError"
    assert refused["error"]["message"].startswith("the TLS certificate of 127.0.0.1:")
    assert "--cafile" in refused["error"]["hint"]
    assert refused["error"]["code"] is None
    insecure = probe_json(target, "--tls", "--insecure", status=0)
    assert insecure["ok"] is True


def test_stun_timeout_on_a_closed_port() -> None:
    port = closed_port("127.0.0.1")
    report = probe_json(f"127.0.0.1:{port}", "--timeout", "0.5", status=1)
    assert report["ok"] is False
    assert report["target"] == f"127.0.0.1:{port}"
    assert report["server"] is None
    assert report["error"]["type"] == "TransactionTimeout"
    assert report["error"]["code"] is None
    assert "7 request(s)" in report["error"]["message"]  # the whole RFC schedule, scaled


def test_stun_table_output_on_failure() -> None:
    completed = icestack("stun", f"127.0.0.1:{closed_port('127.0.0.1')}", "--timeout", "0.2")
    assert completed.returncode == 1
    assert re.search(r"^error\s+no response from 127\.0\.0\.1:\d+ after 7", completed.stdout, re.M)
    assert re.search(r"^hint\s+nothing answers STUN there", completed.stdout, re.M)
    assert "TransactionTimeout" not in completed.stdout + completed.stderr


def test_stun_targets_before_between_and_after_options(stun_server: BackgroundServer) -> None:
    """Targets may follow options (argparse's subcommands refused `stun HOST --opt HOST2`)."""
    first = f"127.0.0.1:{stun_server.udp.port}"
    second = f"127.0.0.1:{closed_port('127.0.0.1')}"
    completed = icestack("stun", first, "--timeout", "0.3", second, "--json")
    assert completed.returncode == 0, completed.stderr  # 0: at least one server answered
    reports = json.loads(completed.stdout)["servers"]
    assert [report["target"] for report in reports] == [first, second]
    assert [report["ok"] for report in reports] == [True, False]


# --------------------------------------------------------------------------- icestack serve stun


def test_serve_prints_its_listeners_answers_and_stops_on_sigint() -> None:
    with Running("serve", "stun", "--listen", "127.0.0.1:0", "--tcp") as server:
        listeners = _listeners(server, 2)
        assert set(listeners) == {"udp", "tcp"}
        for transport, address in listeners.items():
            options = ["--tcp"] if transport == "tcp" else []
            report = probe_json(f"127.0.0.1:{address.port}", *options, status=0)
            assert report["server"] == {"host": "127.0.0.1", "port": address.port}
        assert server.interrupt() == 0
        assert server.stdout[-1] == "stopped"


def test_serve_tls_with_a_self_signed_certificate_warns() -> None:
    with Running("serve", "stun", "--listen", "127.0.0.1:0", "--tls", "--tls-port", "0") as server:
        listeners = _listeners(server, 2)
        assert set(listeners) == {"udp", "tls"}
        report = probe_json(f"127.0.0.1:{listeners['tls'].port}", "--tls", "--insecure", status=0)
        assert report["transport"] == "tls"
        assert server.interrupt() == 0
        assert "self-signed certificate" in server.stderr()


def test_serve_long_term_authentication() -> None:
    with Running(
        "serve", "stun", "--listen", "127.0.0.1:0", "--auth", "long-term",
        "--user", "alice:wonderland", "--realm", "icestack.test",
    ) as server:  # fmt: skip
        target = f"127.0.0.1:{_listeners(server, 1)['udp'].port}"
        good = probe_json(target, "--user", "alice", "--password", "wonderland", status=0)
        assert "MESSAGE-INTEGRITY-SHA256 (RFC 8489)" in good["features"]
        bad = probe_json(target, "--user", "alice", "--password", "nope", status=1)
        assert bad["error"]["type"] == "ErrorResponse"
        assert bad["error"]["code"] == 401
        assert bad["error"]["message"] == "the server answered 401 Unauthenticated"
        assert bad["error"]["hint"] == (
            "it refused the username and password: check --user, --password and that they are "
            "credentials of realm 'icestack.test'"
        )
        anonymous = probe_json(target, status=1)
        assert anonymous["error"]["code"] == 401
        assert anonymous["error"]["hint"] == (
            "it wants long-term credentials of realm 'icestack.test': pass --user and --password"
        )
        assert server.interrupt() == 0


def test_serve_workers_share_one_port() -> None:
    port = _free_udp_port()
    with Running("serve", "stun", "--workers", "2", "--listen", f"127.0.0.1:{port}") as server:
        lines = server.wait_for(r"^worker (\d): listening on udp 127\.0\.0\.1:(\d+)$", 2)
        assert sorted(match.group(1) for match in lines) == ["0", "1"]
        assert {int(match.group(2)) for match in lines} == {port}
        # The kernel spreads source addresses over the workers; every one of them is answered.
        for _ in range(40):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5)
                sock.bind(("127.0.0.1", 0))
                tid = new_transaction_id()
                sock.sendto(binding_request(tid), ("127.0.0.1", port))
                answer = sock.recv(65536)
                assert mapped_address(answer, tid) == Address(*sock.getsockname())
        report = probe_json(f"127.0.0.1:{port}", status=0)
        assert report["server"] == {"host": "127.0.0.1", "port": port}
        assert server.interrupt() == 0
        assert sorted(line for line in server.stdout if line.endswith("stopped")) == [
            "worker 0: stopped",
            "worker 1: stopped",
        ]
    # Every worker is gone: the port can be bound again without SO_REUSEPORT.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", port))


def test_serve_reports_a_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        completed = icestack("serve", "stun", "--listen", f"127.0.0.1:{port}")
    assert completed.returncode == 2
    assert completed.stderr == (
        f"icestack: error: cannot listen on udp 127.0.0.1:{port}: the address is in use: "
        "another server listens there (stop it, or pick another port)\n"
    )


# --------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "stun", "--auth", "long-term"], "--auth long-term needs at least one --user"),
        (["serve", "stun", "--auth", "short-term"], "--auth short-term needs at least one --user"),
        (["serve", "stun", "--user", "alice:pw"], "--user given without --auth"),
        (["serve", "stun", "--auth", "long-term", "--user", "alice"], "--user wants NAME:PASSWORD"),
        (["serve", "stun", "--tls", "onlyonefile"], "--tls takes CERT KEY"),
        (["serve", "stun", "--workers", "0"], "--workers must be at least 1"),
        (["serve", "stun", "--workers", "2", "--listen", "127.0.0.1:0"], "--workers needs fixed"),
        (["serve", "stun", "--listen", "127.0.0.1:99999"], "bad port"),
        (["serve", "stun", "--auth", "maybe"], "invalid choice"),
        (["stun", "127.0.0.1:9", "--timeout", "0"], "must be a positive number of seconds"),
        (["stun", "127.0.0.1:9", "--timeout", "soon"], "not a number of seconds"),
        (["stun", "127.0.0.1:9", "--tcp", "--tls"], "not allowed with argument"),
        (["stun", "127.0.0.1:9", "--user", "alice"], "--user needs --password"),
        (["stun", "[::1:9"], "unclosed '['"),
        ([], "required"),
    ],
)
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    completed = icestack(*args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""


# ------------------------------------------------------------------------- icestack stun: targets


def test_stun_and_stuns_uris(stun_server: BackgroundServer) -> None:
    """RFC 7064 URIs: ``stun:`` is UDP (or TCP with --tcp), ``stuns:`` is TLS."""
    udp = probe_json(f"stun:127.0.0.1:{stun_server.udp.port}", status=0)
    assert (udp["transport"], udp["target"]) == ("udp", f"127.0.0.1:{stun_server.udp.port}")
    tcp = probe_json(f"stun:127.0.0.1:{stun_server.tcp.port}", "--tcp", status=0)
    assert tcp["transport"] == "tcp"
    cafile = str(stun_server.tls_files.certificate)
    tls = probe_json(f"stuns:127.0.0.1:{stun_server.tls.port}", "--cafile", cafile, status=0)
    assert tls["transport"] == "tls"
    assert tls["server"] == {"host": "127.0.0.1", "port": stun_server.tls.port}


def test_stun_by_name_says_what_it_resolved(stun_server: BackgroundServer) -> None:
    completed = icestack("stun", f"localhost:{stun_server.udp.port}", "-4")
    assert completed.returncode == 0, completed.stderr
    assert f"probing localhost:{stun_server.udp.port} (127.0.0.1) over udp" in completed.stderr


# ------------------------------------------------------------------------ icestack stun: progress


def test_stun_says_what_it_probes_at_once_and_shows_every_retransmission() -> None:
    """Against a silent port the probe takes its whole schedule; it says what it does as it goes
    (the lines are read while it still runs), then explains the failure."""
    port = closed_port("127.0.0.1")
    process = subprocess.Popen(
        [*ICESTACK, "stun", f"127.0.0.1:{port}", "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        first = [process.stderr.readline() for _ in range(3)]
        assert process.poll() is None  # still waiting: the lines came as it went
    finally:
        process.kill()
        process.communicate(timeout=RUN_TIMEOUT)
    stamp = r"\[ *\d+\.\d{3}s\] "
    assert re.fullmatch(rf"{stamp}probing 127\.0\.0\.1:{port} over udp\n", first[0])
    sent = "request sent; up to 7 sends over 60 s until an answer comes"
    assert re.fullmatch(rf"{stamp}{sent}\n", first[1])
    assert re.fullmatch(rf"{stamp}no answer yet: sent again \(2 of 7\)\n", first[2])


def test_stun_progress_over_a_whole_schedule() -> None:
    port = closed_port("127.0.0.1")
    completed = icestack("stun", f"127.0.0.1:{port}", "--timeout", "0.3")
    assert completed.returncode == 1
    steps = [line.partition("] ")[2] for line in completed.stderr.splitlines()]
    assert steps[:2] == [
        f"probing 127.0.0.1:{port} over udp",
        "request sent; up to 7 sends over 0.3 s until an answer comes",
    ]
    assert steps[2:8] == [f"no answer yet: sent again ({n} of 7)" for n in range(2, 8)]
    assert steps[8].startswith(f"failed: no response from 127.0.0.1:{port} after 7 request(s)")
    assert len(steps) == 9


# ------------------------------------------------------------------------ icestack stun: failures


@contextlib.contextmanager
def tcp_server_that(reset: bool) -> Iterator[int]:
    """A TCP port whose server accepts one connection, reads what comes and closes it: with a
    reset (SO_LINGER 0), or with a FIN."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def serve() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.recv(100)
                if reset:
                    connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(RUN_TIMEOUT)


@pytest.mark.parametrize(
    ("how", "message", "hint"),
    [
        ("refused", "refused the TCP connection: nothing listens on that port",
         "check the port, and that the server runs with TCP enabled"),
        ("closed", "closed the TCP connection without answering",
         "it may not speak STUN on this port, or it expects TLS (--tls)"),
        ("reset", "closed the TCP connection without answering",
         "it may not speak STUN on this port, or it expects TLS (--tls)"),
    ],
)  # fmt: skip
def test_stun_over_tcp_says_what_the_connection_did(how: str, message: str, hint: str) -> None:
    with contextlib.ExitStack() as stack:
        if how == "refused":
            port = closed_port("127.0.0.1", socket.SOCK_STREAM)
        else:
            port = stack.enter_context(tcp_server_that(reset=how == "reset"))
        report = probe_json(f"127.0.0.1:{port}", "--tcp", status=1)
    assert report["error"]["message"] == f"127.0.0.1:{port} {message}"
    assert report["error"]["hint"] == hint
    assert "Error" not in report["error"]["message"]  # no class names
