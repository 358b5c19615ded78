"""The limit options of ``icestack serve stun`` and ``serve turn`` (docs/cli.md): they reach the
server, and a value that is wrong or would have no effect is one line and exit 2."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import Running, _listeners, icestack
from tests.net.loopback import binding_request, still_open

SERVE_STUN = ["serve", "stun", "--listen", "127.0.0.1:0"]
SERVE_TURN = ["serve", "turn", "--user", "alice:pw", "--listen", "127.0.0.1:0"]


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return sock


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (EOF or reset) within the socket's timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def answered(sock: socket.socket) -> bool:
    sock.sendall(binding_request())
    return len(sock.recv(4096)) >= 20


@pytest.mark.parametrize("command", [SERVE_STUN, SERVE_TURN], ids=["stun", "turn"])
def test_the_limit_options_reach_the_server(command: list[str], tmp_path: Path) -> None:
    """One connection per source, three seconds to speak: a second connection from the source is
    closed at once while the first is still open; the first is closed at its deadline; another
    source is served. The first refusal is logged."""
    options = ["--max-connections-per-source", "1", "--first-message-timeout", "3"]
    log_file = tmp_path / "log"
    transport = ["--tcp"] if command is SERVE_STUN else ["--no-udp", "--log-file", str(log_file)]
    with Running(*command, *transport, *options) as server:
        port = _listeners(server, 2 if command is SERVE_STUN else 1)["tcp"].port
        first = connect_from("127.0.0.2", port)
        second = connect_from("127.0.0.2", port)
        assert closed_by_server(second)
        assert still_open(first)
        other = connect_from("127.0.0.3", port)
        assert answered(other)
        assert closed_by_server(first)  # its deadline, within the socket's 10 s timeout
        for sock in (first, second, other):
            sock.close()
        assert server.interrupt() == 0
        log = server.stderr() if command is SERVE_STUN else log_file.read_text()
    assert "refused a connection from 127.0.0.2" in log
    assert "max_connections_per_source" in log


def test_serve_turn_reads_max_allocate_timeout_from_a_config_file(tmp_path: Path) -> None:
    """coturn's max-allocate-timeout: a connection that keeps asking for Binding answers but
    never allocates is closed when it runs out."""
    config = tmp_path / "turnserver.conf"
    config.write_text("max-allocate-timeout=1\n")
    with Running(*SERVE_TURN, "--no-udp", "--config", str(config)) as server:
        port = _listeners(server, 1)["tcp"].port
        sock = connect_from("127.0.0.1", port)
        for _ in range(100):  # 10 s at most; the server closes it after 1 s
            try:
                sock.sendall(binding_request())
                if not sock.recv(4096):
                    break
            except OSError:  # reset
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the connection outlived max-allocate-timeout")
        sock.close()
        assert server.interrupt() == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*SERVE_STUN, "--tcp", "--max-connections", "0"], "must be >= 1"),
        ([*SERVE_STUN, "--max-connections", "5"], "--max-connections has no effect without a TCP"),
        ([*SERVE_STUN, "--tcp", "--max-tls-handshakes", "5"], "no effect without --tls"),
        ([*SERVE_STUN, "--tcp", "--tls-handshake-timeout", "1"], "no effect without --tls"),
        ([*SERVE_STUN, "--tcp", "--first-message-timeout", "0"], "positive number of seconds"),
        ([*SERVE_STUN, "--auth-failure-rate", "5"], "no effect without --auth"),
        ([*SERVE_TURN, "--max-tls-handshakes", "5"], "no effect without --tls"),
        ([*SERVE_TURN, "--no-tcp", "--first-message-timeout", "5"], "no effect without a TCP"),
        ([*SERVE_TURN, "--max-connections-per-source", "none"], "not an integer"),
        ([*SERVE_TURN, "--max-allocate-timeout", "soon"], "not a number of seconds"),
    ],
)  # fmt: skip
def test_bad_limit_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    completed = icestack(*args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert completed.stderr.startswith("icestack") and ": error: " in completed.stderr
    assert "Traceback" not in completed.stderr
