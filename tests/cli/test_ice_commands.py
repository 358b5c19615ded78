"""The ICE commands as a user runs them: ``icestack demo --sim``, ``icestack demo`` and
``icestack ice offer|answer``, as subprocesses with exit statuses, stdout and stderr.

Every run is bounded by a timeout; the simulated runs are deterministic (seeded, virtual time), so
what they print is compared with :mod:`ice.scenarios` run in this process with the same seed.
"""

from __future__ import annotations

import base64
import io
import json
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ice import Candidate, DecodeError, IceDescription
from ice.commands import SIGNAL_PREFIX, SignalingLine
from ice.demo import NO_DIRECT_PATH
from ice.demo_options import NAT_NAMES
from ice.narration import ECHO_COUNT, LiveView
from ice.netsim import NatBehavior
from ice.scenarios import two_agents_behind_nats
from stun.tls import make_self_signed
from tests.cli.test_cli import Running
from tests.net.loopback import closed_port

ICESTACK = [sys.executable, "-m", "ice.cli"]
#: Bound on any one CLI run; only a hang reaches it.
RUN_TIMEOUT = 60.0


def icestack(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``icestack ARGS`` to completion."""
    return subprocess.run(
        [*ICESTACK, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )


def summary_value(stdout: str, name: str) -> str:
    """The value of one row of the summary table."""
    match = re.search(rf"^{re.escape(name)}\s{{2,}}(.+)$", stdout, flags=re.MULTILINE)
    assert match is not None, f"no {name!r} row in:\n{stdout}"
    return match.group(1)


def log_lines(stdout: str, side: str, pattern: str) -> list[str]:
    """The live-log lines of one side (``[  0.022s] A  ...``) whose text starts with ``pattern``."""
    return re.findall(rf"^\[\s*\d+\.\d{{3}}s\] {side}  {pattern}.*$", stdout, flags=re.MULTILINE)


ADDRESS = r"(?:\d+\.\d+\.\d+\.\d+|\[[0-9a-f:]+\]):\d+"


# --------------------------------------------------------------------------- demo (loopback)


def test_loopback_demo_connects_two_agents_and_echoes_both_ways() -> None:
    completed = icestack("demo")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "\x1b" not in out and "\r" not in out  # not a terminal: no live status line
    assert summary_value(out, "result").startswith("connected in ")
    assert summary_value(out, "pair types") == "host-host (A's local-remote)"
    a_selected = re.fullmatch(
        rf"host ({ADDRESS}) -> host ({ADDRESS})", summary_value(out, "A selected")
    )
    assert a_selected is not None
    a_local, a_remote = a_selected.groups()
    assert summary_value(out, "B selected") == f"host {a_remote} -> host {a_local}"
    for side in "AB":
        assert log_lines(out, side, "candidate host ")
        assert log_lines(out, side, "pair host .*: in-progress")
        assert log_lines(out, side, "pair host .*: succeeded")
        assert len(log_lines(out, side, "selected host ")) == 1
        assert len(log_lines(out, side, rf"echo \d/{ECHO_COUNT} back in ")) == ECHO_COUNT
        assert summary_value(out, f"{side} echo rtt").endswith(
            f"({ECHO_COUNT}/{ECHO_COUNT} answered)"
        )
    assert completed.stderr == ""


def no_network(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``icestack ARGS`` in a new network namespace with loopback alone (``unshare -rn``)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare(1) and ip(8) to make a namespace without network")
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, timeout=RUN_TIMEOUT)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {probe.stderr.decode().strip()}")
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(
        ["unshare", "-rn", "sh", "-c", script, "sh", *ICESTACK, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def test_loopback_demo_needs_no_network() -> None:
    completed = no_network("demo")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert summary_value(completed.stdout, "result").startswith("connected in ")
    for side in "AB":
        assert summary_value(completed.stdout, f"{side} echo rtt").endswith(
            f"({ECHO_COUNT}/{ECHO_COUNT} answered)"
        )


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_view_draws_a_status_line_on_a_terminal_only() -> None:
    terminal, pipe = Terminal(), io.StringIO()
    for out in (terminal, pipe):
        view = LiveView(out)
        view.set_status("checking")
        view.say("A  selected")
        view.close()
    assert pipe.getvalue() == "A  selected\n"
    # Each write erases the status line, writes, and draws the status line again.
    assert terminal.getvalue() == (
        "\r\x1b[K| checking" + "\r\x1b[KA  selected\n| checking" + "\r\x1b[K"
    )


# --------------------------------------------------------------------------- demo --sim


@pytest.mark.parametrize(
    ("nat_a", "nat_b"),
    [
        ("none", "none"),
        ("full-cone", "port-restricted"),
        ("restricted", "symmetric"),
        ("symmetric", "full-cone"),
    ],
)
def test_sim_demo_connects_and_echoes(nat_a: str, nat_b: str) -> None:
    completed = icestack("demo", "--sim", f"{nat_a},{nat_b}")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    expected = two_agents_behind_nats(NatBehavior.parse(nat_a), NatBehavior.parse(nat_b), 1).run()
    assert expected.connected
    out = completed.stdout
    assert summary_value(out, "nats") == f"A {nat_a}, B {nat_b}"
    assert re.fullmatch(r"connected in \d+\.\d{3} s \(virtual\)", summary_value(out, "result"))
    assert summary_value(out, "pair types") == f"{expected.pair_types} (A's local-remote)"
    assert expected.pair_a is not None
    local, remote = expected.pair_a.local, expected.pair_a.remote
    assert summary_value(out, "A selected") == (
        f"{local.type} {local.address} -> {remote.type} {remote.address}"
    )
    for side in "AB":
        echoes = summary_value(out, f"{side} echo rtt")
        assert echoes.endswith(f"({ECHO_COUNT}/{ECHO_COUNT} answered)")
        assert re.fullmatch(r"\d+\.\d\d ms", summary_value(out, f"{side} check rtt"))
        # The live log: the side's own candidates, its selected pair, every echo.
        assert log_lines(out, side, "candidate host ")
        assert len(log_lines(out, side, "selected ")) == 1
        assert len(log_lines(out, side, rf"echo \d/{ECHO_COUNT} back in ")) == ECHO_COUNT
    assert completed.stderr == ""


def test_sim_demo_public_hosts_select_host_candidates() -> None:
    completed = icestack("demo", "--sim", "none,none")
    assert completed.returncode == 0, completed.stderr
    assert summary_value(completed.stdout, "pair types") == "host-host (A's local-remote)"
    assert "srflx" not in completed.stdout  # no NAT: the mapped address is the host's own


def test_sim_demo_symmetric_nats_fail_with_the_reason() -> None:
    completed = icestack("demo", "--sim", "symmetric,symmetric")
    assert completed.returncode == 1
    out = completed.stdout
    assert summary_value(out, "result") == "failed"
    reason = summary_value(out, "reason")
    expected = two_agents_behind_nats(NatBehavior.SYMMETRIC, NatBehavior.SYMMETRIC, 1).run()
    assert not expected.connected
    assert reason == expected.failure_reason
    assert "timed out" in reason
    assert "filtered" in summary_value(out, "network")  # the NATs dropped the checks
    assert "echo" not in out
    assert summary_value(out, "hint") == NO_DIRECT_PATH
    assert f"*  {NO_DIRECT_PATH}" in out


def test_sim_demo_with_turn_connects_the_same_nats_through_relays() -> None:
    completed = icestack("demo", "--sim", "symmetric,symmetric", "--turn")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    expected = two_agents_behind_nats(
        NatBehavior.SYMMETRIC, NatBehavior.SYMMETRIC, 1, turn=True
    ).run()
    assert expected.connected and expected.pair_types == "relay-relay"
    assert summary_value(out, "pair types") == "relay-relay (A's local-remote)"
    assert "TURN servers 192.0.2.2:3478 and 192.0.2.3:3478 (A's, B's) on the WAN" in out
    for side in "AB":
        assert log_lines(out, side, "candidate relay ")
        echoes = summary_value(out, f"{side} echo rtt")
        assert echoes.endswith(f"({ECHO_COUNT}/{ECHO_COUNT} answered)")
    assert NO_DIRECT_PATH not in out


def test_loopback_demo_with_turn_connects_relay_only_through_the_embedded_server_over_tls() -> None:
    completed = icestack("demo", "--turn")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert re.search(rf"TURN server listening on tls {ADDRESS}", out)
    assert summary_value(out, "pair types") == "relay-relay (A's local-remote)"
    assert summary_value(out, "relay") == "through the embedded TURN server over tls"
    for side in "AB":
        assert log_lines(out, side, "candidate relay ")
        assert not log_lines(out, side, "candidate host ")  # relay-only
        echoes = summary_value(out, f"{side} echo rtt")
        assert echoes.endswith(f"({ECHO_COUNT}/{ECHO_COUNT} answered)")


def test_sim_demo_is_deterministic_per_seed() -> None:
    first = icestack("demo", "--sim", "full-cone,restricted", "--seed", "7")
    again = icestack("demo", "--sim", "full-cone,restricted", "--seed", "7")
    other = icestack("demo", "--sim", "full-cone,restricted", "--seed", "8")
    assert first.returncode == again.returncode == other.returncode == 0
    assert first.stdout == again.stdout
    assert first.stdout != other.stdout  # other ports, other credentials


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("symmetric,cgnat", "unknown NAT behaviour 'cgnat'"),
        ("symmetric", "want NAT_A,NAT_B"),
        ("none,none,none", "want NAT_A,NAT_B"),
    ],
)
def test_sim_demo_bad_nat_names_exit_2_with_the_valid_ones(value: str, message: str) -> None:
    completed = icestack("demo", "--sim", value)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert ", ".join(NAT_NAMES) in completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""


def test_nat_names_are_netsims() -> None:
    assert NAT_NAMES == ("none", "full-cone", "restricted", "port-restricted", "symmetric")


# --------------------------------------------------------------------------- the signaling line

HOST = Candidate.from_sdp("1 1 udp 2130706431 192.0.2.10 50000 typ host")
SRFLX = Candidate.from_sdp(
    "2 1 udp 1694498815 198.51.100.7 61000 typ srflx raddr 192.0.2.10 rport 50000"
)
UFRAG, PWD = "abcd", "0123456789abcdefghij+/"


def line_of(document: object) -> str:
    payload = json.dumps(document).encode()
    return SIGNAL_PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def test_signaling_line_round_trip() -> None:
    description = IceDescription(ufrag=UFRAG, pwd=PWD, candidates=(HOST, SRFLX))
    line = SignalingLine("offer", description).encode()
    assert line.startswith(SIGNAL_PREFIX)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", line[len(SIGNAL_PREFIX) :])  # one pasteable word
    decoded = SignalingLine.decode(f"  {line}\n")
    assert decoded.role == "offer"
    assert decoded.description.ufrag == UFRAG
    assert decoded.description.pwd == PWD
    assert decoded.description.candidates == (HOST, SRFLX)
    assert decoded.description.end_of_candidates


def test_signaling_line_skips_candidates_it_cannot_use() -> None:
    unusable = "3 1 udp 100 turn.example.com 3478 typ relay"  # an FQDN (RFC 8839 §5.1)
    document = {
        "role": "answer",
        "ufrag": UFRAG,
        "pwd": PWD,
        "candidates": [HOST.to_sdp(), unusable],
    }
    assert SignalingLine.decode(line_of(document)).description.candidates == (HOST,)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("", "not an icestack signaling line"),
        ("candidate:1 1 udp 1 192.0.2.1 1 typ host", "not an icestack signaling line"),
        (SIGNAL_PREFIX + "@@@@", "damaged signaling line"),
        (SIGNAL_PREFIX + "eyJyb2xlIjo", "damaged signaling line"),  # cut short
        (line_of([1, 2]), "not a JSON object"),
        (line_of({"role": "boss", "ufrag": UFRAG, "pwd": PWD, "candidates": []}), "role"),
        (line_of({"role": "offer", "ufrag": 7, "pwd": PWD, "candidates": []}), "ufrag and pwd"),
        (line_of({"role": "offer", "ufrag": UFRAG, "pwd": PWD}), "candidates must be a list"),
        (line_of({"role": "offer", "ufrag": "ab", "pwd": PWD, "candidates": []}), "ice-ufrag"),
        (line_of({"role": "offer", "ufrag": UFRAG, "pwd": "short", "candidates": []}), "ice-pwd"),
        (
            line_of({"role": "offer", "ufrag": UFRAG, "pwd": PWD, "candidates": ["1 1 udp x"]}),
            "candidate",
        ),
    ],
)
def test_malformed_signaling_lines_raise_decode_error(line: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        SignalingLine.decode(line)


# --------------------------------------------------------------------------- ice offer|answer

LOOPBACK_ONLY = ["--no-stun", "--include-loopback", "--interface", "127.0.0.1", "--timeout", "10"]


class Side:
    """``icestack ice ROLE`` running, its stdout read line by line on a thread (bounded waits)."""

    def __init__(self, role: str, *options: str) -> None:
        self.process = subprocess.Popen(
            [*ICESTACK, "ice", role, *options],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def signaling_line(self) -> str:
        """The line it printed for the peer (within RUN_TIMEOUT)."""
        line = self._lines.get(timeout=RUN_TIMEOUT)
        assert line is not None and line.startswith(SIGNAL_PREFIX), self.finish()
        return line

    def paste(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line)
        self.process.stdin.close()

    def finish(self) -> tuple[int, str, str]:
        """Exit status, the rest of stdout, and stderr, once it exits (within RUN_TIMEOUT)."""
        status = self.process.wait(RUN_TIMEOUT)
        rest = []
        while (line := self._lines.get(timeout=RUN_TIMEOUT)) is not None:
            rest.append(line)
        assert self.process.stderr is not None
        return status, "".join(rest), self.process.stderr.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(RUN_TIMEOUT)
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def sides() -> Iterator[list[Side]]:
    """Every side a test starts is killed at the end if it is still running."""
    started: list[Side] = []
    try:
        yield started
    finally:
        for side in started:
            side.stop()


def start(sides: list[Side], role: str, *options: str) -> Side:
    side = Side(role, *options)
    sides.append(side)
    return side


def test_offer_and_answer_connect_on_loopback_and_report_the_same_path(sides: list[Side]) -> None:
    offer = start(sides, "offer", *LOOPBACK_ONLY)
    offer_line = offer.signaling_line()
    answer = start(sides, "answer", *LOOPBACK_ONLY)
    answer.paste(offer_line)
    answer_line = answer.signaling_line()
    offer.paste(answer_line)
    offer_status, offer_out, offer_err = offer.finish()
    answer_status, answer_out, answer_err = answer.finish()
    assert offer_status == 0, offer_out + offer_err
    assert answer_status == 0, answer_out + answer_err
    assert SignalingLine.decode(offer_line).role == "offer"
    assert SignalingLine.decode(answer_line).role == "answer"
    assert summary_value(offer_out, "role") == "offer (controlling)"
    assert summary_value(answer_out, "role") == "answer (controlled)"
    # One path, seen from both ends: each side's local address is the other's remote one.
    offer_local = summary_value(offer_out, "local").split()[1]
    offer_remote = summary_value(offer_out, "remote").split()[1]
    assert re.fullmatch(r"127\.0\.0\.1:\d+", offer_local)
    assert summary_value(answer_out, "local").split()[1] == offer_remote
    assert summary_value(answer_out, "remote").split()[1] == offer_local
    assert offer_local != offer_remote
    for out in (offer_out, answer_out):
        assert summary_value(out, "result").startswith("connected in ")
        assert summary_value(out, "echo rtt").endswith("(5/5 answered)")
        assert summary_value(out, "local").startswith("host ")
    # --no-stun and --interface: one UDP host candidate, on 127.0.0.1, the one the path uses;
    # and the TCP ones there (ICE-TCP), ranked below it.
    offered = SignalingLine.decode(offer_line).description.candidates
    assert [f"{c.type} {c.address}" for c in offered if c.transport == "udp"] == [
        f"host {offer_local}"
    ]
    assert {c.host for c in offered} == {"127.0.0.1"}
    assert max(offered, key=lambda c: c.priority).transport == "udp"


def test_offer_and_answer_connect_over_ice_tcp_with_no_udp(sides: list[Side]) -> None:
    """``--no-udp`` on one side, as on a network that blocks UDP: only TCP candidates pair, and
    the summary says the path is a TCP one."""
    offer = start(sides, "offer", *LOOPBACK_ONLY, "--no-udp")
    offer_line = offer.signaling_line()
    answer = start(sides, "answer", *LOOPBACK_ONLY)
    answer.paste(offer_line)
    offer.paste(answer.signaling_line())
    for side in (offer, answer):
        status, out, err = side.finish()
        assert status == 0, out + err
        assert summary_value(out, "path").endswith("/tcp")
        assert summary_value(out, "echo rtt").endswith("(5/5 answered)")
    offered = SignalingLine.decode(offer_line).description.candidates
    assert {c.transport for c in offered} == {"tcp"}
    assert {c.tcp_type for c in offered} == {"active", "passive"}


def test_answer_rejects_a_malformed_offer_line(sides: list[Side]) -> None:
    answer = start(sides, "answer", *LOOPBACK_ONLY)
    answer.paste("icestack1:not-quite\n")
    status, out, err = answer.finish()
    assert status == 2
    assert out == ""  # nothing was gathered or printed for the peer
    assert "icestack: error: damaged signaling line" in err
    assert "Traceback" not in err


def test_answer_rejects_an_answer_line(sides: list[Side]) -> None:
    first = start(sides, "answer", *LOOPBACK_ONLY)
    first.paste(SignalingLine("offer", IceDescription(ufrag=UFRAG, pwd=PWD)).encode() + "\n")
    answer_line = first.signaling_line()
    second = start(sides, "answer", *LOOPBACK_ONLY)
    second.paste(answer_line)
    status, _, err = second.finish()
    assert status == 2
    assert "that is an answer line" in err
    assert "`icestack ice offer`" in err


def test_offer_rejects_a_malformed_answer_line_after_printing_its_own(sides: list[Side]) -> None:
    offer = start(sides, "offer", *LOOPBACK_ONLY)
    offer.signaling_line()
    offer.paste("a=candidate:1 1 udp 1 192.0.2.1 9 typ host\n")
    status, out, err = offer.finish()
    assert status == 2
    assert out == ""
    assert "icestack: error: not an icestack signaling line" in err


def test_offer_at_end_of_input_exits_2(sides: list[Side]) -> None:
    offer = start(sides, "offer", *LOOPBACK_ONLY)
    offer.signaling_line()
    offer.paste("\n\n")  # blank lines are skipped, then the input ends
    status, _, err = offer.finish()
    assert status == 2
    assert "no answer line on stdin (end of input)" in err


def test_offer_waits_for_the_answer_only_as_long_as_told(sides: list[Side]) -> None:
    offer = start(sides, "offer", *LOOPBACK_ONLY, "--wait", "0.2")
    offer.signaling_line()  # and then nobody answers; stdin stays open
    status, out, _ = offer.finish()
    assert status == 1
    assert summary_value(out, "reason") == "the answer line timed out"


def test_answer_fails_when_the_offer_side_is_gone() -> None:
    nobody = Candidate.from_sdp(f"1 1 udp 2130706431 127.0.0.1 {closed_port('127.0.0.1')} typ host")
    offer = SignalingLine("offer", IceDescription(ufrag=UFRAG, pwd=PWD, candidates=(nobody,)))
    completed = subprocess.run(
        [*ICESTACK, "ice", "answer", *LOOPBACK_ONLY[:-1], "0.5", "--wait", "0.5"],
        input=offer.encode() + "\n",
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert completed.returncode == 1
    assert summary_value(completed.stdout, "result") == "failed"
    assert summary_value(completed.stdout, "reason").startswith("not connected within 1 s")


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_offer_and_answer_connect_relay_only_through_turn_over_tcp_and_tls(
    sides: list[Side], tmp_path: Path, transport: str
) -> None:
    """``icestack serve turn`` with no UDP listener at all: the two sides gather nothing but a
    relayed candidate each, over TCP or TLS, and connect through it."""
    files = make_self_signed(tmp_path)
    listen = ["--no-udp", "--no-tcp", "--tls", str(files.certificate), str(files.private_key),
              "--tls-listening-port", "0"] if transport == "tls" else ["--no-udp"]  # fmt: skip
    with Running(
        "serve", "turn", "--listen", "127.0.0.1:0", "--user", "alice:wonderland",
        "--allow-loopback-peers", *listen,
    ) as server:  # fmt: skip
        (listening,) = server.wait_for(r"listening on (tcp|tls) 127\.0\.0\.1:(\d+)$", 1)
        port = listening.group(2)
        uri = f"turn:127.0.0.1:{port}?transport=tcp"
        trust = []
        if transport == "tls":
            uri, trust = f"turns:127.0.0.1:{port}", ["--turn-cafile", str(files.certificate)]
        turn = ["--turn", uri, "--turn-user", "alice", "--turn-password", "wonderland",
                "--relay-only", *trust]  # fmt: skip
        offer = start(sides, "offer", *LOOPBACK_ONLY, *turn)
        offer_line = offer.signaling_line()
        answer = start(sides, "answer", *LOOPBACK_ONLY, *turn)
        answer.paste(offer_line)
        offer.paste(answer.signaling_line())
        for side in (offer, answer):
            status, out, err = side.finish()
            assert status == 0, out + err
            assert summary_value(out, "path") == "relay-relay"
            assert summary_value(out, "relay") == f"through the TURN server over {transport}"
            assert summary_value(out, "echo rtt").endswith("(5/5 answered)")
            assert f"gathering (no STUN; TURN {uri})" in err
        (candidate,) = SignalingLine.decode(offer_line).description.candidates
        assert candidate.type == "relay"  # relay-only: nothing else is signalled
        server.interrupt()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ice", "offer", "--count", "0"], "want a whole number of at least 1"),
        (["ice", "answer", "--timeout", "0"], "must be a positive number of seconds"),
        (["ice", "offer", "--stun", "[::1:3478"], "unclosed '['"),
        (["ice"], "required"),
        (["ice", "offer", "--turn", "turns:127.0.0.1?transport=udp"], "turns: over UDP means DTLS"),
        (["ice", "offer", "--turn", "stun:127.0.0.1"], "is a STUN URI: give it with --stun"),
        (["ice", "offer", "--turn", "turn:127.0.0.1"], "--turn needs --turn-user and "
         "--turn-password (or the TURN REST API --turn-secret)"),
        (["ice", "offer", "--relay-only"], "--relay-only needs a TURN server: add --turn URI"),
        (["ice", "offer", "--turn-user", "a"], "--turn-user needs a TURN server"),
        (["ice", "offer", "--turn", "turn:127.0.0.1", "--turn-secret", "s", "--relay-only",
          "--stun", "127.0.0.1"], "--stun with --relay-only: a relay-only connection asks no "
         "STUN server"),
        (["ice", "offer", "--turn", "turn:127.0.0.1", "--turn-secret", "s", "--turn-password",
          "p"], "--turn-secret makes the password itself: drop --turn-password"),
        (["ice", "offer", "--turn", "turn:127.0.0.1", "--turn-user", "a", "--turn-password", "p",
          "--turn-insecure"], "--turn-insecure is for turns: servers (TLS), and no --turn is one"),
        (["ice", "offer", "--turn", "turns:127.0.0.1", "--turn-user", "a", "--turn-password", "p",
          "--turn-cafile", "/nonexistent.pem"], "--turn-cafile '/nonexistent.pem': No such file"),
        (["ice", "offer", "--turn", "turn:no-such-host.invalid", "--turn-secret", "s"],
         "--turn turn:no-such-host.invalid: cannot resolve"),
        (["ice", "offer", "--no-udp", "--stun", "127.0.0.1"], "--stun with --no-udp"),
        (["ice", "offer", "--no-udp", "--turn", "turn:127.0.0.1", "--turn-secret", "s"],
         "--turn with --no-udp"),
        (["ice", "answer", "--no-udp", "--no-tcp"], "not allowed with argument"),
    ],
)
def test_ice_bad_options_exit_2(args: list[str], message: str) -> None:
    completed = icestack(*args)
    assert completed.returncode == 2
    assert message in completed.stderr
    assert completed.stdout == ""
