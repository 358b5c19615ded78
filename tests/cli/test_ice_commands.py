"""The ICE commands as a user runs them: ``icestack demo --sim``, ``icestack demo`` and
``icestack ice offer|answer``, as subprocesses with exit statuses, stdout and stderr.

Every run is bounded by a timeout; the simulated runs are deterministic (seeded, virtual time), so
what they print is compared with :mod:`ice.scenarios` run in this process with the same seed.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ice.commands import ECHO_COUNT, NAT_NAMES
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
