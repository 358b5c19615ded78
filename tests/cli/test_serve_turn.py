"""``icestack serve turn`` as a subprocess: its start lines, allocations and relaying through it
over UDP, TCP and TLS, metrics, the config file, workers, SIGINT, and exit 2 for bad options."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest

from stun import Address
from stun.tls import client_context, make_self_signed
from tests.cli.test_cli import Running, icestack
from tests.net.loopback import closed_port, run
from tests.turn.aio_client import RawTurnClient
from turn.server import rest_api_password, rest_api_username

USER = ("alice", "wonderland")
SERVE = ["serve", "turn", "--user", "alice:wonderland", "--allow-loopback-peers"]
LISTENING = r"listening on (udp|tcp|tls) (\S+)$"
RELAYING = r"relaying on (\S+) ports (\d+)-(\d+)$"


def parse_address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return Address(host.strip("[]"), int(port))


def started(server: Running, listeners: int) -> dict[str, Address]:
    """The listeners a server printed, once it printed them all and its relay line."""
    found = {m.group(1): parse_address(m.group(2)) for m in server.wait_for(LISTENING, listeners)}
    server.wait_for(RELAYING, 1)
    return found


async def relay_through(
    transport: str, server: Address, username: str = USER[0], password: str = USER[1],
    cafile: Path | None = None,
) -> Address:  # fmt: skip
    """Allocate, permit a peer, bind a channel; one datagram each way. The relayed address."""
    context = client_context(cafile) if cafile else None
    client = await RawTurnClient.connect(transport, server, username, password, ssl_context=context)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        peer_address = Address(*peer.getsockname())
        (relayed,) = await client.allocate()
        await client.permit(peer_address)
        await client.bind(0x4000, peer_address)
        client.send_channel_data(0x4000, b"to the peer")
        data, source = await asyncio.wait_for(loop.sock_recvfrom(peer, 2048), 5.0)
        assert (data, Address(*source)) == (b"to the peer", relayed)
        peer.sendto(b"to the client", relayed)
        assert await client.receive() == (0x4000, b"to the client")
    await client.close()
    return relayed


async def scrape(address: Address) -> str:
    reader, writer = await asyncio.open_connection(address.host, address.port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    return response.decode()


def test_serve_turn_relays_reports_metrics_and_stops_on_sigint() -> None:
    with Running(*SERVE, "--listen", "127.0.0.1:0", "--metrics-port", "0") as server:
        listeners = started(server, 2)
        assert set(listeners) == {"udp", "tcp"}
        (metrics_line,) = server.wait_for(r"^metrics on http (\S+)$", 1)
        metrics = parse_address(metrics_line.group(1))
        assert metrics.host == "127.0.0.1"  # loopback unless told otherwise
        for transport in ("udp", "tcp"):
            relayed = run(relay_through(transport, listeners[transport]))
            assert relayed.host == "127.0.0.1"
            assert 49152 <= relayed.port <= 65535
        body = run(scrape(metrics))
        assert body.startswith("HTTP/1.1 200 OK")
        assert 'icestack_turn_relayed_packets_total{direction="to_peer"} 2' in body
        assert 'icestack_turn_relayed_packets_total{direction="to_client"} 2' in body
        # The UDP allocation lives on; the TCP one went with its connection.
        assert re.search(r"^icestack_turn_allocations 1$", body, re.M)
        assert server.interrupt() == 0
        assert server.stdout[-1] == "stopped"


def test_serve_turn_over_tls(tmp_path: Path) -> None:
    files = make_self_signed(tmp_path)
    with Running(
        *SERVE, "--listen", "127.0.0.1:0", "--no-udp", "--no-tcp",
        "--tls", str(files.certificate), str(files.private_key), "--tls-listening-port", "0",
    ) as server:  # fmt: skip
        listeners = started(server, 1)
        assert set(listeners) == {"tls"}
        run(relay_through("tls", listeners["tls"], cafile=files.certificate))
        assert server.interrupt() == 0


def test_serve_turn_reads_a_config_file(tmp_path: Path) -> None:
    low = closed_port("127.0.0.1")
    config = tmp_path / "turnserver.conf"
    config.write_text(
        "# like coturn's turnserver.conf\n"
        "listen=127.0.0.1:0\n"
        "no-tcp\n"
        "realm = example.org\n"
        "user=carol:in-the-file\n"
        "allow-loopback-peers=true\n"
        f"min-port={low}\n"
        f"max-port={low + 20}\n"
        "static-auth-secret=north\n"
    )
    # The command line adds a user to the file's (repeatable options add up).
    with Running("serve", "turn", "--config", str(config), "--user", "dave:on-the-line") as server:
        (udp,) = server.wait_for(LISTENING, 1)
        assert udp.group(1) == "udp"
        (relaying,) = server.wait_for(RELAYING, 1)
        assert relaying.groups() == ("127.0.0.1", str(low), str(low + 20))
        target = parse_address(udp.group(2))
        for user, password in (("carol", "in-the-file"), ("dave", "on-the-line")):
            relayed = run(relay_through("udp", target, user, password))
            assert low <= relayed.port <= low + 20
        username = rest_api_username("erin", time.time() + 60)
        run(relay_through("udp", target, username, rest_api_password(b"north", username)))
        assert server.interrupt() == 0


def test_serve_turn_workers_share_the_port() -> None:
    port = closed_port("127.0.0.1")
    with Running(*SERVE, "--workers", "2", "--no-tcp", "--listen", f"127.0.0.1:{port}") as server:
        lines = server.wait_for(r"^worker (\d): listening on udp 127\.0\.0\.1:(\d+)$", 2)
        assert sorted(match.group(1) for match in lines) == ["0", "1"]
        assert {int(match.group(2)) for match in lines} == {port}
        # Each client's 5-tuple stays with one worker, which holds its allocation.
        for _ in range(4):
            run(relay_through("udp", Address("127.0.0.1", port)))
        assert server.interrupt() == 0
        assert sorted(line for line in server.stdout if line.endswith("stopped")) == [
            "worker 0: stopped",
            "worker 1: stopped",
        ]


def test_serve_turn_reports_a_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        completed = icestack(*SERVE, "--listen", f"127.0.0.1:{port}")
    assert completed.returncode == 2
    assert completed.stderr.startswith(
        f"icestack: error: cannot listen on udp 127.0.0.1:{port}: the address is in use"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "127.0.0.1:0"], "authentication is required"),
        (["--user", "alice"], "--user wants NAME:PASSWORD"),
        (["--user", "a:b", "--listen", "0.0.0.0:0"], "wildcard address: say which"),
        (["--user", "a:b", "--listen", "localhost"], "--listen: not an IP address"),
        (["--user", "a:b", "--listen", "127.0.0.1:0", "--relay-ip", "192.0.2.1"], "relay address"),
        (["--user", "a:b", "--relay-ip", "127.0.0.1", "--relay-ip", "127.0.0.2"], "one relay"),
        (["--user", "a:b", "--listen", "127.0.0.1", "--min-port", "6000", "--max-port", "5000"],
         "--min-port 6000 is above --max-port 5000"),
        (["--user", "a:b", "--min-port", "0"], "must be in [1, 65535]"),
        (["--user", "a:b", "--user-quota", "0"], "must be >= 1"),
        (["--user", "a:b", "--max-bps", "lots"], "not an integer"),
        (["--user", "a:b", "--auth-failure-rate", "0"], "must be >= 1"),
        (["--user", "a:b", "--tls", "onlyonefile"], "--tls takes CERT KEY"),
        (["--user", "a:b", "--allowed-peer-ip", "10.0.0.0/33"], "--allowed-peer-ip"),
        (["--user", "a:b", "--alternate-server", "turn.example.org"], "--alternate-server"),
        (["--user", "a:b", "--no-udp", "--no-tcp"], "nothing to listen on"),
        (["--user", "a:b", "--workers", "2", "--listen", "127.0.0.1:0"], "--workers needs fixed"),
        (["--user", "a:b", "--metrics-host", "127.0.0.1"], "--metrics-host without"),
        (["--no-auth"], "unrecognized arguments: --no-auth"),
    ],
)  # fmt: skip
def test_bad_options_exit_2_with_a_message(args: list[str], message: str) -> None:
    completed = icestack("serve", "turn", *args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user=a:b\nlisten=127.0.0.1\nbogus=1\n", "line 3: unknown option 'bogus'"),
        ("user=a:b\nno-tcp=maybe\n", "line 2: no-tcp is a flag, not 'maybe'"),
        ("user=a:b\nrealm\n", "line 2: realm needs a value"),
        ("user=a:b\nmin-port=many\n", "argument --min-port: not an integer"),
        ("config=other.conf\n", "unknown option 'config'"),
    ],
)
def test_bad_config_files_exit_2_with_a_message(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "turnserver.conf"
    config.write_text(text)
    completed = icestack("serve", "turn", "--config", str(config))
    assert completed.returncode == 2
    assert message in completed.stderr
    assert completed.stderr.startswith("icestack: error: ")


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    absent = tmp_path / "absent.conf"
    completed = icestack("serve", "turn", "--config", str(absent))
    assert completed.returncode == 2
    assert completed.stderr == f"icestack: error: --config {absent}: no such file\n"
