"""docs/architecture.md §1-§2 as tests: the sans-IO core imports no I/O, no clock and no
randomness of its own, and dependencies point one way (ice → turn → stun)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Modules that own sockets, time or files: the asyncio layer and the command line.
IO_MODULES = {
    "stun/aio.py",
    "stun/aio_sockets.py",
    "stun/aio_streams.py",
    "stun/aio_client.py",
    "stun/aio_server.py",
    "stun/batch_io.py",
    "stun/udp_offload.py",
    "stun/ports.py",
    "stun/metrics_http.py",
    "stun/cli.py",
    "stun/files.py",
    "stun/cli_messages.py",
    "stun/tls.py",
    "stun/probe.py",
    "stun/explain.py",
    "stun/aio_discovery.py",
    "stun/survey.py",
    "stun/nat_cli.py",
    "stun/serve_cli.py",
    "ice/cli.py",
    "ice/commands.py",
    "ice/demo.py",
    "ice/narration.py",
    "ice/aio.py",
    "ice/aio_properties.py",
    "ice/aio_events.py",
    "ice/aio_mux.py",
    "ice/aio_mux_tcp.py",
    "ice/base_sockets.py",
    "ice/outbox.py",
    "ice/tcp_sockets.py",
    "ice/interfaces.py",
    "ice/mdns_candidates.py",
    "ice/server_names.py",
    "ice/mdns.py",
    "ice/mdns_sockets.py",
    "ice/relay_streams.py",
    "ice/pump.py",
    "ice/timers.py",
    "ice/compat/aioice/ice.py",
    "turn/aio.py",
    "turn/aio_tcp_client.py",
    "turn/server/aio_tcp.py",
    "turn/server/aio_udp.py",
    "turn/server/aio.py",
    "turn/cli.py",
    "turn/probe.py",
}
FORBIDDEN_IN_CORE = {"asyncio", "socket", "time", "random", "os", "selectors", "ssl", "threading"}
#: Exceptions to FORBIDDEN_IN_CORE, one module and one import each: the simulator's whole point is
#: its one seeded random.Random, and it runs no protocol logic a real stack would. The default
#: random source reads the OS's random bytes and forgets its batch of transaction IDs in a fork.
ALLOWED_IN_CORE = {"ice/netsim.py": {"random"}, "stun/randomness.py": {"os"}}
ALLOWED_PACKAGE_IMPORTS = {
    "stun": {"stun"},
    "turn": {"stun", "turn"},
    "ice": {"stun", "turn", "ice"},
}


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module a file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_files() -> list[Path]:
    return sorted(p for package in ALLOWED_PACKAGE_IMPORTS for p in (ROOT / package).rglob("*.py"))


def core_files() -> list[Path]:
    return [p for p in package_files() if str(p.relative_to(ROOT)) not in IO_MODULES]


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_modules_do_no_io(path: Path) -> None:
    allowed = ALLOWED_IN_CORE.get(str(path.relative_to(ROOT)), set())
    assert imported_modules(path) & FORBIDDEN_IN_CORE <= allowed


@pytest.mark.parametrize("path", package_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_dependencies_point_one_way(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    ours = imported_modules(path) & set(ALLOWED_PACKAGE_IMPORTS)
    assert ours <= ALLOWED_PACKAGE_IMPORTS[package]


def test_every_package_is_typed() -> None:
    for package in ALLOWED_PACKAGE_IMPORTS:
        assert (ROOT / package / "py.typed").exists()


def test_every_package_folder_is_listed_for_installation() -> None:
    """``pip install .`` (not editable) installs only the packages pyproject.toml lists: a
    folder left out — ice.compat.aioice once was — imports in a checkout and fails once
    installed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(project["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("stun", "turn", "ice")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert listed == found


def test_the_client_side_does_not_load_the_turn_server() -> None:
    """``import ice`` (and so every CLI command) does not pay for the TURN server's modules: what
    the client side shares with the server lives outside ``turn.server`` (``turn.transport``,
    ``turn.rest_api``, ``stun.address.family_of``) and ``turn.TurnServer`` loads at first use."""
    probe = (
        "import sys, ice\n"
        "print(sorted(m for m in sys.modules if m.startswith('turn.server')))\n"
        "import turn\n"
        "print(turn.TurnServer.__module__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines() == ["[]", "turn.server.aio"]
