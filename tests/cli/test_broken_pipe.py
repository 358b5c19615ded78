"""A command whose output pipe is closed by its reader (``icestack stun --json | head -c1``) ends
quietly with status 141, as a tool SIGPIPE ends; a server whose stdout is gone serves on.

Each command gets a pipe whose reading end is closed before it starts, so that its first write
fails — no race with a reader that closes later. Its stderr is a pipe the test reads, or closed
as well.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from stun import make_address
from stun.cli_messages import BROKEN_PIPE_STATUS
from tests.cli.test_cli import ICESTACK, RUN_TIMEOUT, BackgroundServer
from tests.cli.test_cli import stun_server as stun_server  # the fixture
from tests.net.loopback import binding_request, closed_port, mapped_address


@contextmanager
def closed_pipe() -> Iterator[int]:
    """The writing end of a pipe whose reading end is already closed."""
    reading, writing = os.pipe()
    os.close(reading)
    try:
        yield writing
    finally:
        os.close(writing)


def run_into_closed_stdout(*args: str, stderr_closed: bool = False) -> tuple[int, str]:
    """Run ``icestack ARGS`` to completion with stdout (and stderr) a closed pipe; return the
    exit status and what it wrote on stderr."""
    with closed_pipe() as stdout:
        completed = subprocess.run(
            [*ICESTACK, *args], stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=stdout if stderr_closed else subprocess.PIPE, text=True,
            timeout=RUN_TIMEOUT, check=False,
        )  # fmt: skip
    return completed.returncode, completed.stderr or ""


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--sim", "none,none"],
        ["demo"],
        ["ice", "offer", "--no-stun", "--include-loopback", "--interface", "127.0.0.1",
         "--wait", "1"],
    ],
    ids=["demo --sim", "demo", "ice offer"],
)  # fmt: skip
def test_a_command_ends_quietly_when_its_stdout_is_closed(args: list[str]) -> None:
    assert BROKEN_PIPE_STATUS == 128 + signal.SIGPIPE == 141  # what a shell shows for SIGPIPE
    status, stderr = run_into_closed_stdout(*args)
    assert status == BROKEN_PIPE_STATUS, stderr
    assert "Traceback" not in stderr
    assert "Error" not in stderr and "Exception ignored" not in stderr, stderr


def test_stun_json_into_a_closed_pipe(stun_server: BackgroundServer) -> None:
    status, stderr = run_into_closed_stdout("stun", str(stun_server.udp), "--json")
    assert status == BROKEN_PIPE_STATUS, stderr
    assert "Traceback" not in stderr
    assert f"probing {stun_server.udp} over udp" in stderr  # the progress went on to stderr


def test_stdout_and_stderr_both_closed(stun_server: BackgroundServer) -> None:
    status, _ = run_into_closed_stdout("stun", str(stun_server.udp), stderr_closed=True)
    assert status == BROKEN_PIPE_STATUS


def answered(port: int) -> bool:
    """Whether a Binding request to 127.0.0.1:port is answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.settimeout(0.5)
        request = binding_request(b"closed-pipe!")
        client.sendto(request, ("127.0.0.1", port))
        data, _ = client.recvfrom(2048)
        return mapped_address(data, b"closed-pipe!") == make_address(*client.getsockname())


SERVERS = {
    "stun": ["serve", "stun"],
    "turn": ["serve", "turn", "--user", "alice:wonderland", "--no-tcp"],
}


@pytest.mark.parametrize("server", SERVERS)
@pytest.mark.parametrize("stderr_closed", [False, True], ids=["stderr open", "stderr closed"])
def test_a_server_whose_stdout_is_closed_serves_on(server: str, stderr_closed: bool) -> None:
    """The server died at start, writing its first 'listening on' line; now it serves, says once
    on stderr that its status lines are dropped, and stops cleanly on SIGTERM."""
    port = closed_port("127.0.0.1", socket.SOCK_DGRAM)
    with closed_pipe() as stdout:
        process = subprocess.Popen(
            [*ICESTACK, *SERVERS[server], "--listen", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=stdout,
            stderr=stdout if stderr_closed else subprocess.PIPE, text=True,
        )  # fmt: skip
    try:
        assert answered_soon(port, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=RUN_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(RUN_TIMEOUT)
    assert process.returncode == 0, stderr
    if not stderr_closed:
        assert stderr.splitlines() == [
            "icestack: warning: stdout is closed (broken pipe): serving on; status lines are "
            "dropped"
        ]


def answered_soon(port: int, process: subprocess.Popen[str]) -> bool:
    """Whether the server answers, once it is up (it says nothing we could wait for: its
    'listening on' line went nowhere). Bounded tries, each a request and half a second."""
    for _ in range(40):
        if process.poll() is not None:
            return False
        try:
            return answered(port)
        except (ConnectionRefusedError, TimeoutError):
            continue
    return False
