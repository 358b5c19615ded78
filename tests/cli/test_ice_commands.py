"""The ICE commands as a user runs them: ``icestack demo --sim``, ``icestack demo`` and
``icestack ice offer|answer``, as subprocesses with exit statuses, stdout and stderr.

Every run is bounded by a timeout; the simulated runs are deterministic (seeded, virtual time), so
what they print is compared with :mod:`ice.scenarios` run in this process with the same seed.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import pytest

from ice import Candidate, DecodeError, IceDescription
from ice.commands import ECHO_COUNT, NAT_NAMES, SIGNAL_PREFIX, SignalingLine
from ice.netsim import NatBehavior
from ice.scenarios import two_agents_behind_nats

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
        assert echoes.endswith(f"({ECHO_COUNT}/{ECHO_COUNT} echoes)")
        assert re.fullmatch(r"\d+\.\d ms", summary_value(out, f"{side} check rtt"))
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
    document = {"role": "answer", "ufrag": UFRAG, "pwd": PWD,
                "candidates": [HOST.to_sdp(), unusable]}  # fmt: skip
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
