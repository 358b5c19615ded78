"""RFC 5780 behaviour discovery across Linux NATs whose behaviour is known, in network namespaces
(tests/net/netns.py), with ``icestack nat`` as a user runs it:

* no NAT (``nat-b`` itself, its firewall rule taken out): endpoint-independent everything;
* Linux ``MASQUERADE`` (``host-a`` behind ``nat-a``): it keeps the source port for every
  destination (endpoint-independent mapping), conntrack lets in only answers from where a packet
  went (address-and-port-dependent filtering), and nothing hairpins;
* ``MASQUERADE --random-fully`` (``host-b`` behind ``nat-b``): a random port per destination,
  address-and-port-dependent mapping (a "symmetric NAT").

``pub`` holds two addresses, 203.0.113.1 and 203.0.113.10, where our server listens with
``--rfc5780`` (ports 3478 and 3479) and coturn with its two listening IPs (ports 3490 and 3491).
Interop, both ways: our client against coturn, and coturn's ``turnutils_natdiscovery`` against
our server, reach the same verdicts as our client against our server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from .netns import HOST_A_IPV6, STUN_IPV4, STUN_IPV6, Network, network, solo

pytestmark = pytest.mark.netns

SECOND_IPV4 = "203.0.113.10"
SECOND_IPV6 = "2001:db8:ffff::10"
OURS = f"{STUN_IPV4}:3478"
COTURN = f"{STUN_IPV4}:3490"
PROCESS_TIMEOUT = 30.0
#: Each behaviour test waits this long for its answer (three sends).
TEST_TIMEOUT = "0.5"
#: nat-b's mapping lifetime, seconds; and the longest wait of the lifetime test (its bracket is a
#: quarter of that wide: three waits, 2 + 1 + 0.5 s).
LIFETIME = 1
LIFETIME_MAX = "2"
#: Why nat-b's mapping lifetime could not be shortened, if it could not (the lifetime test skips).
SHORT_LIFETIME_MISSING: list[str] = []


def _iptables(net: Network, role: str, *arguments: str) -> None:
    net.run(role, "iptables", *arguments)


def _coturn_answers(net: Network) -> bool:
    """Whether coturn answers a Binding request (``turnutils_stunclient`` waits for its answer
    without end: bounded here by ``timeout``)."""
    completed = subprocess.run(
        ["ip", "netns", "exec", net.namespace("nat-b"), "timeout", "0.5",
         "turnutils_stunclient", "-p", "3490", STUN_IPV4],
        capture_output=True, timeout=PROCESS_TIMEOUT, check=False,
    )  # fmt: skip
    return completed.returncode == 0


@pytest.fixture(scope="module")
def nat_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Network]:
    """The network of tests/net/netns.py with a second address on ``pub``, our RFC 5780 server
    there, coturn too when installed, ``nat-b`` without its firewall rule and masquerading with
    random ports."""
    with network(ipv4=True, ipv6=True) as net:
        net.run("pub", "ip", "address", "add", f"{SECOND_IPV4}/24", "dev", "br0")
        net.run("pub", "ip", "address", "add", f"{SECOND_IPV6}/64", "dev", "br0", "nodad")
        _iptables(net, "nat-b", "-F", "INPUT")
        # a mapping of nat-b lives this long after its last packet (conntrack's UDP timeout for
        # a flow that had a reply; per namespace): short, for the lifetime test
        timeout = f"net.netfilter.nf_conntrack_udp_timeout={LIFETIME}"
        try:
            net.run("nat-b", "sysctl", "-q", "-w", timeout)
        except subprocess.CalledProcessError as exc:
            SHORT_LIFETIME_MISSING.append(f"cannot set {timeout} in a namespace: {exc.stderr!r}")
        _iptables(net, "nat-b", "-t", "nat", "-F", "POSTROUTING")
        _iptables(net, "nat-b", "-t", "nat", "-A", "POSTROUTING", "-s", "198.51.100.64/26",
                  "-o", "wan0", "-j", "MASQUERADE", "--random-fully")  # fmt: skip
        server = net.start_python(
            "pub", "-m", "ice.cli", "serve", "stun", "--rfc5780",
            "--listen", f"{STUN_IPV4}:3478", "--listen", f"{SECOND_IPV4}:3478", name="ours",
        )  # fmt: skip
        server6 = net.start_python(
            "pub", "-m", "ice.cli", "serve", "stun", "--rfc5780",
            "--listen", f"[{STUN_IPV6}]:3478", "--listen", f"[{SECOND_IPV6}]:3478", name="ours6",
        )  # fmt: skip
        for _ in range(4):
            assert server.read_line(PROCESS_TIMEOUT).startswith("listening on udp ")
            assert server6.read_line(PROCESS_TIMEOUT).startswith("listening on udp ")
        if shutil.which("turnserver"):
            workdir = tmp_path_factory.mktemp("coturn")
            net.start(
                "pub", "turnserver", "-n", "--no-cli", "--no-dtls", "--no-tls", "--no-auth",
                "-L", STUN_IPV4, "-L", SECOND_IPV4, "-p", "3490",
                "--pidfile", str(workdir / "pid"), "--userdb", str(workdir / "db.sqlite"),
                "--log-file", str(workdir / "log"), "--no-stdout-log", name="coturn",
            )  # fmt: skip
            for _ in range(20):  # until it answers (bounded)
                if _coturn_answers(net):
                    break
        yield net


def _nat_command(*arguments: str) -> list[str]:
    """``icestack nat ARGUMENTS --json`` with the module's short test timeout."""
    return [sys.executable, "-m", "ice.cli", "nat", *arguments, "--json", "--timeout", TEST_TIMEOUT]


EXPECTED = {
    # role: (behind a NAT, mapping, filtering, hairpinning)
    "nat-b": (False, "endpoint-independent", "endpoint-independent", None),
    "host-a": (True, "endpoint-independent", "address-and-port-dependent", False),
    "host-b": (True, "address-and-port-dependent", "address-and-port-dependent", False),
}
#: coturn's tool, per NAT, and what it adds: on ``nat-b`` (no NAT) it is told its local address
#: (bound to the wildcard it cannot tell "no NAT") and pads every request to 1500 bytes (``-P``),
#: which our server answers unauthenticated with answers no larger; behind MASQUERADE it also
#: tests hairpinning (``-H``), in a second run: every unanswered test costs it seconds.
NATDISCOVERY = {
    "nat-b": [["-m", "-f", "-P", "-L", "203.0.113.3"]],
    "host-a": [["-m", "-f"], ["-H"]],
}


@pytest.fixture(scope="module")
def runs(nat_net: Network) -> dict[str, str]:
    """Every run of the module, all at once (each waits mostly for answers that do not come,
    which is how filtering is measured): its stdout by name."""
    commands: dict[str, tuple[str, list[str]]] = {}
    if not SHORT_LIFETIME_MISSING:
        lifetime = _nat_command(OURS, "--lifetime", "--lifetime-max", LIFETIME_MAX)
        commands["lifetime@host-b"] = ("host-b", lifetime)
    commands.update({f"ours@{role}": (role, _nat_command(OURS)) for role in EXPECTED})
    commands["ours-ipv6@host-a"] = ("host-a", _nat_command(f"[{STUN_IPV6}]:3478"))
    if shutil.which("turnutils_stunclient") and _coturn_answers(nat_net):
        commands["coturn@host-a"] = ("host-a", _nat_command(COTURN))
        commands["both@host-a"] = ("host-a", _nat_command(OURS, COTURN))
        commands["coturn-alternate@nat-b"] = ("nat-b", _nat_command(f"{SECOND_IPV4}:3490"))
        commands["coturn-tcp@host-a"] = ("host-a", _nat_command(COTURN, "--tcp"))
    if shutil.which("turnutils_natdiscovery"):
        for role, runs in NATDISCOVERY.items():
            for number, options in enumerate(runs):
                commands[f"natdiscovery{number}@{role}"] = (
                    role, ["turnutils_natdiscovery", *options, "-p", "3478", STUN_IPV4],
                )  # fmt: skip
    # The longest first: the lifetime test waits 3.5 s on top of the rest.
    started = {
        name: nat_net.start(role, *argv, name=name) for name, (role, argv) in commands.items()
    }
    outputs = {}
    for name, process in started.items():
        status = process.wait(PROCESS_TIMEOUT)
        outputs[name] = "\n".join(process.remaining_output())
        assert status == 0, f"{process.describe()}\n{outputs[name]}"
    return outputs


def report_of(runs: dict[str, str], name: str) -> dict[str, Any]:
    if name not in runs:
        pytest.skip("coturn (turnserver) is not installed or did not start")
    report: dict[str, Any] = json.loads(runs[name])
    return report


@pytest.mark.parametrize("role", list(EXPECTED), ids=["none", "masquerade", "random-fully"])
def test_our_client_tells_each_linux_nat_with_our_server(runs: dict[str, str], role: str) -> None:
    report = report_of(runs, f"ours@{role}")
    nat, mapping, filtering, hairpinning = EXPECTED[role]
    assert (report["nat"], report["mapping"], report["filtering"]) == (nat, mapping, filtering)
    assert report["hairpinning"] is hairpinning, report["reason"]
    assert report["other_address"] == {"host": SECOND_IPV4, "port": 3479}
    assert report["evidence"]["mapping"] and report["ice"]


def test_over_ipv6_routed_without_nat(runs: dict[str, str]) -> None:
    """The same server on two IPv6 addresses; IPv6 goes through nat-a routed, not translated."""
    report = report_of(runs, "ours-ipv6@host-a")
    assert report["local_address"]["host"] == report["mapped_address"]["host"] == HOST_A_IPV6
    assert report["nat"] is False
    assert report["mapping"] == report["filtering"] == "endpoint-independent"
    assert report["other_address"] == {"host": SECOND_IPV6, "port": 3479}


def test_the_binding_lifetime_of_a_linux_nat_is_bracketed(runs: dict[str, str]) -> None:
    if SHORT_LIFETIME_MISSING:
        pytest.skip(SHORT_LIFETIME_MISSING[0])
    report = report_of(runs, "lifetime@host-b")
    assert report["lifetime"] is not None, report["reason"]["lifetime"]
    alive, expired = report["lifetime"]["alive_after"], report["lifetime"]["expired_after"]
    assert expired is not None
    assert alive < LIFETIME + 0.5 and expired > LIFETIME - 0.5
    assert expired - alive <= float(LIFETIME_MAX) / 4
    assert any("alive after" in line for line in report["evidence"]["lifetime"])


def test_the_tcp_mapping_through_masquerade(runs: dict[str, str]) -> None:
    # Over TCP, serve stun needs --tcp: our server has none here, coturn has.
    report = report_of(runs, "coturn-tcp@host-a")
    assert report["transport"] == "tcp"
    assert report["mapping"] == "endpoint-independent"
    assert report["filtering"] is None and "TCP" in report["reason"]["filtering"]


@pytest.mark.interop
def test_our_client_against_coturn_reaches_the_same_verdicts(runs: dict[str, str]) -> None:
    report = report_of(runs, "coturn@host-a")
    nat, mapping, filtering, _ = EXPECTED["host-a"]
    assert (report["nat"], report["mapping"], report["filtering"]) == (nat, mapping, filtering)
    # coturn's OTHER-ADDRESS for a request to its primary address is right (RFC 5780 §7.4)
    assert report["other_address"] == {"host": SECOND_IPV4, "port": 3491}


@pytest.mark.interop
def test_several_servers_at_once_and_whether_they_agree(runs: dict[str, str]) -> None:
    """The code path of ``icestack nat --public``, with local stand-ins for the public servers."""
    document = report_of(runs, "both@host-a")
    ours, coturn = document["servers"]
    assert (ours["target"], coturn["target"]) == (OURS, COTURN)
    assert ours["error"] is coturn["error"] is None
    assert ours["mapping"] == coturn["mapping"] == "endpoint-independent"
    assert document["agree"] is True


@pytest.mark.interop
def test_coturns_other_address_at_its_alternate_ip_is_refused_with_the_reason(
    runs: dict[str, str],
) -> None:
    """coturn departs from RFC 5780 §7.4 for a request to its alternate IP: its OTHER-ADDRESS
    names that same IP (with the other port), where the RFC says the other IP and port. We
    follow the RFC: the tests cannot run against that address, and the report says why."""
    report = report_of(runs, "coturn-alternate@nat-b")
    assert report["other_address"] == {"host": SECOND_IPV4, "port": 3491}
    assert report["mapping"] is None and report["filtering"] is None
    assert "does not differ" in report["reason"]["mapping"]
    assert "RFC 5780 §7.4" in report["reason"]["mapping"]


COTURN_WORDS = {
    "endpoint-independent": "Endpoint Independent",
    "address-dependent": "Address Dependent",
    "address-and-port-dependent": "Address and Port Dependent",
}


@pytest.mark.interop
@pytest.mark.parametrize("role", list(NATDISCOVERY), ids=["none-padded", "masquerade-hairpin"])
def test_turnutils_natdiscovery_against_our_server_agrees(runs: dict[str, str], role: str) -> None:
    if shutil.which("turnutils_natdiscovery") is None:
        pytest.skip("turnutils_natdiscovery (coturn) is not installed")
    output = "\n".join(runs[f"natdiscovery{n}@{role}"] for n in range(len(NATDISCOVERY[role])))
    nat, mapping, filtering, hairpinning = EXPECTED[role]
    if nat:
        assert f"NAT with {COTURN_WORDS[mapping]} Mapping!" in output, output
    else:
        assert "No NAT! (Endpoint Independent Mapping)" in output, output
    assert f"NAT with {COTURN_WORDS[filtering]} Filtering!" in output, output
    # §7.4: OTHER-ADDRESS is the other IP and the other port of the address the request reached
    # (coturn's own server gets this wrong for requests to its alternate IP; we follow the RFC)
    assert f"Other addr: : {SECOND_IPV4}:3479" in output
    if role == "host-a":
        assert "Hairpinning Behavior Discovery" in output
        assert ("successful hairpinning" in output) is hairpinning


def test_no_route_to_the_server_is_one_line_and_status_1() -> None:
    """A host with no network: not a bad option (status 2) but a run the network failed."""
    with solo() as net:
        completed = subprocess.run(
            ["ip", "netns", "exec", net.namespace("solo"), *_nat_command(OURS)],
            capture_output=True, text=True, timeout=PROCESS_TIMEOUT, check=False,
        )  # fmt: skip
    assert completed.returncode == 1
    assert completed.stdout == ""
    errors = [line for line in completed.stderr.splitlines() if line.startswith("icestack:")]
    assert len(errors) == 1 and "network unreachable" in errors[0], completed.stderr
    assert "Traceback" not in completed.stderr

