"""``pytest -m public`` on a machine without a network skips, saying why, instead of failing.

The opt-in public probes (tests/net/test_public_stun.py) run here with ``ICESTACK_PUBLIC_STUN=1``
inside a network namespace of their own (``unshare --net``: no interface but a down loopback, so
no DNS and no route, and not one packet leaves), wherever this suite runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stun.public_servers import PUBLIC_SERVERS

ROOT = Path(__file__).resolve().parents[2]


def test_public_probes_skip_with_the_reason_when_offline() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no unshare(1) to make a network namespace without a network")
    probe = subprocess.run([unshare, "--net", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace: {probe.stderr.strip()}")
    completed = subprocess.run(
        [
            unshare, "--net", sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m",
            "public", "-rs", "tests/net/test_public_stun.py",
        ],
        cwd=ROOT,
        env={**os.environ, "ICESTACK_PUBLIC_STUN": "1"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    listed = sum(len(entry.transports) + entry.rfc5780 for entry in PUBLIC_SERVERS)
    assert re.search(rf"\b{listed} skipped\b", output), output
    assert "failed" not in output and "error" not in output.lower(), output
    skips = re.findall(r"^SKIPPED \[\d+\] .*: the network is unreachable: (.+)$", output, re.M)
    assert skips, output
    assert all("resolve" in reason or "unreachable" in reason for reason in skips), skips
