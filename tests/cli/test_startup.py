"""``icestack --help``, ``--version`` and a mistyped command import none of the commands: their
modules (and the protocol stacks they run on) load only once a command is chosen
(:class:`ice.cli.CommandParser`, :mod:`stun.lazy_exports`). They cost about half a second of CPU
each time when every command was imported to build the parser."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli.test_cli import RUN_TIMEOUT

#: Runs ``ice.cli.main(ARGS)`` and prints, last, the exit status and the modules of ours (and
#: asyncio and ssl, which every command uses) that it imported.
PROBE = """
import sys
from ice.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
ours = ("stun", "turn", "ice", "asyncio", "ssl")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in ours)
print(status, *loaded)
"""

#: What the parser itself needs: the messages of the command line, its errors and the version.
PARSER_MODULES = {
    "ice",
    "ice.cli",
    "stun",
    "stun._version",
    "stun.cli_messages",
    "stun.errors",
    "stun.lazy_exports",
}


def loaded_by(*args: str) -> tuple[int, set[str]]:
    """The exit status of ``icestack ARGS`` and the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=True,
    )
    status, *loaded = result.stdout.splitlines()[-1].split()
    return int(status), set(loaded)


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["--help"], 0),
        (["--version"], 0),
        (["serve", "--help"], 0),
        ([], 2),
        (["--no-such-option"], 2),
        (["no-such-command"], 2),
        (["serve", "no-such-server"], 2),
    ],
)
def test_help_and_mistakes_import_no_command(args: list[str], status: int) -> None:
    assert loaded_by(*args) == (status, PARSER_MODULES)


@pytest.mark.parametrize(
    ("args", "module", "others"),
    [
        (["stun", "--help"], "stun.probe", {"turn.probe", "ice.demo", "ice.commands"}),
        (["serve", "turn", "--help"], "turn.cli", {"stun.serve_cli", "turn.probe", "ice.demo"}),
        (["ice", "offer", "--no-such-option"], "ice.commands", {"turn.cli", "ice.demo"}),
    ],
)
def test_a_chosen_command_imports_its_module_only(
    args: list[str], module: str, others: set[str]
) -> None:
    """The command's own options need its module (its ``--help`` lists them); the other
    commands' modules stay unloaded."""
    status, loaded = loaded_by(*args)
    assert status == (2 if args[-1] == "--no-such-option" else 0)
    assert module in loaded
    assert not loaded & others
