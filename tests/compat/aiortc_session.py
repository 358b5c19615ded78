"""Two aiortc peers (``tests/compat/aiortc_peer.py``) in :func:`tests.net.netns.link`'s two
namespaces, ``left`` (192.0.2.1) and ``right`` (192.0.2.2), with their descriptions relayed —
and, for relayed sessions, ``icestack serve turn`` in ``left`` with TLS on a throw-away
certificate for its address. Shared by the end-to-end tests and ``bench/aiortc_connect.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from stun.tls import make_self_signed
from tests.net.netns import LINK_IPV4, Network, link
from tests.net.test_udp_blocked_turn import wait_until_serving

TURN_HOST = LINK_IPV4["left"]
TURN_PORT = 3478
TURN_TLS_PORT = 5349
TURN_USER, TURN_PASSWORD = "e2e", "through-the-relay"
#: The bound on each line a peer owes us (its description, its result).
LINE_TIMEOUT = 30.0


@dataclass(frozen=True)
class Turn:
    """How the peers reach the TURN server: the ``turns:`` URI and the certificate to trust."""

    uri: str
    cafile: Path

    def options(self) -> list[str]:
        return ["--turn", self.uri, "--user", TURN_USER, "--password", TURN_PASSWORD,
                "--cafile", str(self.cafile)]  # fmt: skip


@contextmanager
def two_hosts() -> Iterator[Network]:
    """The link, IPv4 only (aiortc gathers no loopback address, so the peers need these)."""
    with link(ipv6=False) as net:
        yield net


@contextmanager
def turn_over_tls(net: Network) -> Iterator[Turn]:
    """``icestack serve turn`` in ``left``, TLS on :data:`TURN_TLS_PORT`, relaying between its
    own relayed addresses (documentation addresses, refused unless allowed)."""
    with TemporaryDirectory(prefix="icestack-aiortc-") as folder:
        tls = make_self_signed(Path(folder), addresses=(TURN_HOST,))
        server = net.start_python(
            "left", "-m", "ice.cli", "serve", "turn", "--listen", f"{TURN_HOST}:{TURN_PORT}",
            "--tls", str(tls.certificate), str(tls.private_key),
            "--tls-listening-port", str(TURN_TLS_PORT), "--user", f"{TURN_USER}:{TURN_PASSWORD}",
            "--allowed-peer-ip", f"{TURN_HOST}/32", name="icestack-turn",
        )  # fmt: skip
        wait_until_serving(net, server, "left", f"{TURN_HOST}:{TURN_PORT}")
        yield Turn(f"turns:{TURN_HOST}:{TURN_TLS_PORT}", tls.certificate)
        server.stop()


def run_session(
    net: Network, offer: str, answer: str, *, turn: Turn | None = None, messages: int = 1000
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One session: the ``offer`` stack's peer in ``left``, the ``answer`` one's in ``right``
    (``"icestack"`` or ``"aioice"``); both results (``aiortc_peer``'s ``result`` line)."""
    options = ["--messages", str(messages), *(turn.options() if turn else [])]
    peer = ["-m", "tests.compat.aiortc_peer"]
    with (
        net.start_python("left", *peer, offer, "offer", *options, name=f"{offer}-offer") as a,
        net.start_python("right", *peer, answer, "answer", *options, name=f"{answer}-answer") as b,
    ):
        b.write_line(a.read_until("offer ", LINE_TIMEOUT))
        a.write_line(b.read_until("answer ", LINE_TIMEOUT))
        results = []
        for side in (a, b):
            line = side.read_until("result ", LINE_TIMEOUT)
            results.append(json.loads(line.removeprefix("result ")))
        for side in (a, b):
            side.write_line("close")
        for side in (a, b):
            assert side.wait(LINE_TIMEOUT) == 0, side.describe()
    return results[0], results[1]
