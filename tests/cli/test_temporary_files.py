"""A self-signed certificate's private key never stays on disk: ``icestack demo`` and ``serve
stun|turn --tls`` make it in an ``icestack-tls-*`` temporary folder that is gone once it is loaded
— while the server runs, after it stops, and when the demo is stopped by SIGTERM or Ctrl-C.
Each run gets a TMPDIR of its own, so other runs on the machine cannot interfere."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.test_cli import ICESTACK, RUN_TIMEOUT, Running

SERVE_TLS = {
    "stun": ["serve", "stun", "--listen", "127.0.0.1:0", "--tls", "--tls-port", "0"],
    "turn": [
        "serve", "turn", "--user", "a:b", "--listen", "127.0.0.1:0", "--no-udp", "--no-tcp",
        "--tls", "--tls-listening-port", "0",
    ],
}  # fmt: skip


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh TMPDIR for the processes this test starts."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def leftovers(folder: Path) -> list[Path]:
    return sorted(folder.glob("icestack-tls-*"))


def test_demo_leaves_no_key(tmpdir_env: Path) -> None:
    completed = subprocess.run(
        [*ICESTACK, "demo"], capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "listening on tls" in completed.stdout  # it did make a certificate
    assert leftovers(tmpdir_env) == []


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_demo_stopped_midway_leaves_no_key(tmpdir_env: Path, how: signal.Signals) -> None:
    with Running("demo") as demo:
        demo.wait_for(r"listening on tls", 1)
        os.kill(demo.process.pid, how)
        status = demo.process.wait(RUN_TIMEOUT)
        assert status in (0, 1, 130), demo.stderr()
        assert "Traceback" not in demo.stderr()
    assert leftovers(tmpdir_env) == []


@pytest.mark.parametrize("server", sorted(SERVE_TLS))
def test_serve_tls_self_signed_leaves_no_key(tmpdir_env: Path, server: str) -> None:
    with Running(*SERVE_TLS[server]) as running:
        running.wait_for(r"^listening on tls ", 1)
        assert leftovers(tmpdir_env) == []  # loaded, then removed: not even while it runs
        os.kill(running.process.pid, signal.SIGTERM)
        assert running.process.wait(RUN_TIMEOUT) == 0
        assert "self-signed certificate" in running.stderr()
    assert leftovers(tmpdir_env) == []
