"""When UDP is blocked: two hosts behind NATs whose routers drop ALL UDP they would forward —
between the peers, and between each peer and the TURN server — connect through a TURN server on
the public side over TCP and over TLS, with ``icestack ice offer|answer`` (the lines relayed by
the test), through coturn and through our own server. The negative control: the same server
offered over UDP only gives no path at all, which proves the block.

Network namespaces from :mod:`tests.net.netns` (documentation addresses only), root needed
(skipped with the reason otherwise). Every process is bounded and stopped by its PID.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stun.tls import CertificateFiles, make_self_signed
from tests.interop.coturn import LongTermCredentials, turnserver_arguments

from .netns import STUN_IPV4, NamespaceProcess, Network, network

pytestmark = pytest.mark.netns

#: The TURN server's address on the public side, and its ports.
SERVER = STUN_IPV4
PORT, TLS_PORT = 3478, 5349
USER, PASSWORD = "alice", "through-the-firewall"
#: The public side's default gateway: an address of its own network that nothing answers for.
DEAD_GATEWAY = "203.0.113.254"
#: Bound on one process's run: generous, so that only a hang reaches it.
PROCESS_TIMEOUT = 30.0
#: How long each side may take to gather and to connect (gathering_timeout is 5 s).
CLI_TIMEOUT = "10"


def block_udp(net: Network) -> None:
    """Every UDP datagram either NAT router would forward is dropped, both ways: no UDP between
    the hosts, nor between a host and the public side.

    The public side also gets a default route, to a gateway that is not there, as a server on
    the Internet has one: a relay's datagram to a peer's private host candidate then leaves and
    is lost on the way, instead of failing to send at once (ENETUNREACH) — after which, in our
    runs, coturn 4.6.1 relayed nothing more from that allocation, to any peer."""
    for router in ("nat-a", "nat-b"):
        net.run(router, "iptables", "-I", "FORWARD", "-p", "udp", "-j", "DROP")
    net.run("pub", "ip", "route", "add", "default", "via", DEAD_GATEWAY)


def dropped_udp(net: Network) -> int:
    """Packets the UDP rules of both routers dropped so far."""
    total = 0
    for router in ("nat-a", "nat-b"):
        listing = net.run(router, "iptables", "-L", "FORWARD", "-v", "-x", "-n")
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[2] == "DROP" and fields[3] in ("udp", "17"):
                total += int(fields[0])
    return total


@dataclass(frozen=True)
class Blocked:
    """The network with UDP blocked, and the certificate its TURN servers present."""

    net: Network
    tls: CertificateFiles


@pytest.fixture(scope="module")
def blocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blocked]:
    with network(ipv4=True, ipv6=False) as net:
        block_udp(net)
        folder = tmp_path_factory.mktemp("udp-blocked-tls")
        yield Blocked(net, make_self_signed(folder, addresses=(SERVER,)))


def wait_until_serving(
    net: Network, server: NamespaceProcess, role: str = "pub", address: str = f"{SERVER}:{PORT}"
) -> None:
    """Until the server answers a STUN Binding request at ``address`` from its own namespace
    (``role``; UDP is blocked only on the routers) — each probe bounded; the server's own stderr
    if it never does."""
    for _ in range(50):
        try:
            net.run(role, sys.executable, "-m", "ice.cli", "stun", address, "--timeout", "0.5",
                    timeout=5)  # fmt: skip
            return
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            continue  # not yet: try again
    raise AssertionError(f"the TURN server never answered: {server.describe()}")


def our_server(blocked: Blocked) -> NamespaceProcess:
    """``icestack serve turn`` in ``pub``: UDP, TCP and TLS; the relayed addresses of its own
    clients are peers it relays to (they are its own addresses)."""
    net = blocked.net
    server = net.start_python(
        "pub", "-m", "ice.cli", "serve", "turn", "--listen", f"{SERVER}:{PORT}",
        "--tls", str(blocked.tls.certificate), str(blocked.tls.private_key),
        "--tls-listening-port", str(TLS_PORT), "--user", f"{USER}:{PASSWORD}",
        "--allowed-peer-ip", f"{SERVER}/32", name="icestack-turn",
    )  # fmt: skip
    wait_until_serving(net, server)
    return server


def coturn(blocked: Blocked, workdir: Path) -> NamespaceProcess:
    """coturn's turnserver in ``pub``: UDP, TCP and TLS, one long-term credential."""
    if shutil.which("turnserver") is None:
        pytest.skip("turnserver not installed (Debian package coturn; .ci/run installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    arguments = turnserver_arguments(
        workdir,
        hosts=[SERVER],
        port=PORT,
        tls_port=TLS_PORT,
        certificate=blocked.tls,
        credentials=LongTermCredentials(username=USER, password=PASSWORD, realm="icestack"),
    )
    server = blocked.net.start("pub", *arguments, name="coturn")
    wait_until_serving(blocked.net, server)
    return server


def run_ice_cli(net: Network, *options: str) -> list[dict[str, str]]:
    """``icestack ice offer`` in host-a and ``answer`` in host-b with ``options``, their lines
    relayed; both reports (``name  value`` rows), whatever their exit status."""
    common = ("--no-stun", "--timeout", CLI_TIMEOUT, "--wait", CLI_TIMEOUT, "--count", "3")
    with (
        net.start_python("host-a", "-m", "ice.cli", "ice", "offer", *common, *options,
                         name="offer") as offer,
        net.start_python("host-b", "-m", "ice.cli", "ice", "answer", *common, *options,
                         name="answer") as answer,
    ):  # fmt: skip
        answer.write_line(offer.read_until("icestack1:", PROCESS_TIMEOUT))
        offer.write_line(answer.read_until("icestack1:", PROCESS_TIMEOUT))
        reports = []
        for process in (offer, answer):
            status = process.wait(PROCESS_TIMEOUT)
            rows = (re.split(r"\s{2,}", line, maxsplit=1) for line in process.remaining_output())
            report = {row[0]: row[1] for row in rows if len(row) == 2}
            report["status"] = str(status)
            report["stderr"] = process.stderr
            reports.append(report)
    return reports


def turn_options(blocked: Blocked, transport: str) -> list[str]:
    uri = {
        "udp": f"turn:{SERVER}:{PORT}",
        "tcp": f"turn:{SERVER}:{PORT}?transport=tcp",
        "tls": f"turns:{SERVER}:{TLS_PORT}",
    }[transport]
    options = ["--turn", uri, "--turn-user", USER, "--turn-password", PASSWORD]
    if transport == "tls":
        options += ["--turn-cafile", str(blocked.tls.certificate)]
    return options


@pytest.fixture(scope="module", params=["icestack", "coturn"])
def turn_server(
    request: pytest.FixtureRequest, blocked: Blocked, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Our server or coturn, running in ``pub`` for the tests of this module; its name."""
    if request.param == "icestack":
        server = our_server(blocked)
    else:
        server = coturn(blocked, tmp_path_factory.mktemp("coturn-udp-blocked"))
    with server:
        yield request.param


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_ice_connects_through_turn_over_tcp_and_tls_when_udp_is_blocked(
    blocked: Blocked, turn_server: str, transport: str
) -> None:
    """Host candidates are signalled too (not relay-only): their checks are dropped, and ICE
    finds the one path left, relay to relay through the server."""
    before = dropped_udp(blocked.net)
    offer, answer = run_ice_cli(blocked.net, *turn_options(blocked, transport))
    for report in (offer, answer):
        assert report["status"] == "0", report
        assert report["path"] == "relay-relay"
        assert report["relay"] == f"through the TURN server over {transport}"
        assert report["local"].startswith(f"relay {SERVER}:")
        assert report["remote"].startswith(f"relay {SERVER}:")
        assert report["echo rtt"].endswith("(3/3 answered)"), report["echo rtt"]
    assert dropped_udp(blocked.net) > before  # the host pairs' checks met the block


# The block is the firewall's, whichever server sits behind it: one server proves it (and the
# failure takes a whole gathering and connect timeout).
@pytest.mark.parametrize("turn_server", ["icestack"], indirect=True)
def test_negative_control_turn_over_udp_gives_no_path(blocked: Blocked, turn_server: str) -> None:
    """The same server over UDP: the Allocate never arrives, and no pair works — the block is
    real, and the connections above went over TCP and TLS only."""
    offer, answer = run_ice_cli(blocked.net, *turn_options(blocked, "udp"))
    for report in (offer, answer):
        assert report["status"] == "1", report
        assert report["result"] == "failed", report
