"""``icestack serve turn -v`` (and ``--log-file``): one line per session event, as coturn's
``--verbose`` — the allocation, its permission and channel, refusals with the reason and what to
change, and the deletion."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from stun import Address
from tests.cli.test_cli import Running
from tests.cli.test_serve_turn import LISTENING, RELAYING, parse_address
from tests.net.loopback import run
from tests.turn.aio_client import RawTurnClient, TurnRequestFailed
from turn import Lifetime

#: The one loopback address the server admits as a peer; 127.0.0.2 it refuses.
ALLOWED = "127.0.0.1"
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "


async def session(server: Address) -> None:
    """Allocate, permit and bind an admitted peer, be refused another and a second allocation
    (the quota is 1), then delete the allocation."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((ALLOWED, 0))
        peer = Address(*sock.getsockname())
    alice = await RawTurnClient.connect("udp", server, "alice", "wonderland")
    second = await RawTurnClient.connect("udp", server, "alice", "wonderland")
    try:
        await alice.allocate()
        await alice.permit(peer)
        await alice.bind(0x4001, peer)
        with pytest.raises(TurnRequestFailed) as refused:
            await alice.permit(Address("127.0.0.2", 9))
        assert refused.value.code == 403
        with pytest.raises(TurnRequestFailed) as over_quota:
            await second.allocate()
        assert over_quota.value.code == 486
        await alice.refresh(Lifetime(0))
    finally:
        await alice.close()
        await second.close()


@pytest.mark.parametrize("to_file", [True, False], ids=["log-file", "stderr"])
def test_verbose_logs_every_session_event(tmp_path: Path, to_file: bool) -> None:
    log = tmp_path / "turn.log"
    options = ["--log-file", str(log)] if to_file else []
    with Running(
        "serve", "turn", "-v", *options, "--user", "alice:wonderland", "--listen", "127.0.0.1:0",
        "--no-tcp", "--allowed-peer-ip", ALLOWED, "--user-quota", "1",
    ) as server:  # fmt: skip
        (listening,) = server.wait_for(LISTENING, 1)
        server.wait_for(RELAYING, 1)
        run(session(parse_address(listening.group(2))))
        assert server.interrupt() == 0
        stderr = server.stderr()
    text = log.read_text() if to_file else stderr
    if to_file:
        assert "allocated" not in stderr
    who = r"udp 127\.0\.0\.1:\d+ 'alice'"
    expected = [
        rf"{who}: allocated 127\.0\.0\.1:\d+ for 600 s",
        rf"{who}: permission for {ALLOWED}",
        rf"{who}: channel 0x4001 bound to {ALLOWED}:\d+",
        rf"{who}: CreatePermission refused 403: the peer address is refused by policy "
        r"\(peer 127\.0\.0\.2: (?i:loopback).*\); allow_loopback_peers "
        r"\(serve turn --allow-loopback-peers\) admits loopback peers",
        rf"{who}: Allocate refused 486: the user holds as many allocations as allowed "
        r"\(user_quota 1\); raise user_quota \(serve turn --user-quota\) to allow more",
        rf"{who}: deleted 127\.0\.0\.1:\d+: the client sent a Refresh with LIFETIME 0",
    ]
    session_lines = [line for line in text.splitlines() if "'alice'" in line]
    assert len(session_lines) == len(expected), text
    for line, pattern in zip(session_lines, expected, strict=True):
        assert re.fullmatch(STAMP + pattern + r".*", line), line


def test_without_verbose_no_session_lines() -> None:
    with Running(
        "serve", "turn", "--user", "alice:wonderland", "--listen", "127.0.0.1:0", "--no-tcp",
        "--allowed-peer-ip", ALLOWED, "--user-quota", "1",
    ) as server:  # fmt: skip
        (listening,) = server.wait_for(LISTENING, 1)
        server.wait_for(RELAYING, 1)
        run(session(parse_address(listening.group(2))))
        assert server.interrupt() == 0
        assert server.stderr() == ""
