"""``icestack --help``, ``--version`` and a mistyped command import none of the commands: their
modules (and the protocol stacks they run on) load only once a command is chosen
(:class:`ice.cli.CommandParser`, :mod:`stun.lazy_exports`). They cost about half a second of CPU
each time when every command was imported to build the parser.

A chosen command's ``--help``, and any mistake in its options (an unknown one, a bad value, a
missing argument), import its options module and the light helpers it names, never the stack the
command runs on (asyncio, ssl, sockets, agents, servers, the simulated network, cryptography):
that loads only when the command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ice.cli import COMMANDS, SERVERS
from tests.cli.test_cli import RUN_TIMEOUT

#: Runs ``ice.cli.main(ARGS)`` and prints, last, the exit status and the modules of ours (and
#: asyncio, ssl, socket and cryptography, which the commands run on) that it imported.
PROBE = """
import sys
from ice.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
ours = ("stun", "turn", "ice", "asyncio", "ssl", "socket", "cryptography")
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


#: What parsing ``stun``'s argparse types and the servers' limit options need.
_STUN_TYPES = {"stun.cli_options", "stun.limits"}
#: What ``import turn`` costs (its attributes, registered with stun's codec), for a TURN URI.
_TURN = {"stun.address", "stun.attributes", "turn", "turn.attributes"}
_TURN_URI = {*_TURN, "turn.errors", "turn.transport", "turn.uri"}
_ICE = ["ice.commands_options", "stun.public_servers", *_STUN_TYPES, *_TURN_URI]

#: Each command (and sub-command), and the modules its options may import besides the parser's
#: (:data:`PARSER_MODULES`): its options module first, then the light helpers it uses.
COMMAND_MODULES = {
    ("demo",): ["ice.demo_options", "ice.errors", "ice.netsim_values", "stun.address"],
    ("ice",): _ICE,
    ("ice", "offer"): _ICE,
    ("ice", "answer"): _ICE,
    ("stun",): ["stun.probe_options", "stun.public_servers", *_STUN_TYPES],
    ("nat",): ["stun.nat_options", "stun.public_servers", *_STUN_TYPES],
    ("turn",): ["turn.probe_options", *_STUN_TYPES, *_TURN],
    ("serve", "stun"): ["stun.serve_options", *_STUN_TYPES],
    ("serve", "turn"): [
        "turn.serve_options",
        "turn.turnserver_conf",  # the option names a --config file may use
        "stun.files",
        "turn.server",
        "turn.server.relays",  # the relayed port range its help quotes
        "stun.randomness",
        *_STUN_TYPES,
        *_TURN,
    ],
}


def test_every_command_has_its_modules_listed() -> None:
    """A new command (or server) of :mod:`ice.cli` must say here what its options import."""
    modules: dict[tuple[str, ...], str] = {(name,): module for name, _, module in COMMANDS}
    modules |= {("serve", name): module for name, _, module in SERVERS}
    for command, module in modules.items():
        assert COMMAND_MODULES[command][0] == module


@pytest.mark.parametrize(
    ("args", "status"),
    [(["--help"], 0), (["--no-such-option"], 2)],
    ids=["help", "unknown-option"],
)
@pytest.mark.parametrize("command", list(COMMAND_MODULES), ids=" ".join)
def test_a_commands_help_and_mistakes_import_its_options_only(
    command: tuple[str, ...], args: list[str], status: int
) -> None:
    """``icestack COMMAND --help`` (exit 0) and an unknown option (exit 2) import the command's
    options module and nothing outside its list: no asyncio, ssl, socket or stack."""
    options, *helpers = COMMAND_MODULES[command]
    code, loaded = loaded_by(*command, *args)
    assert code == status
    assert options in loaded
    assert loaded - PARSER_MODULES - {options, *helpers} == set()


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--sim", "symmetric,no-such-nat"],
        ["demo", "--seed", "x"],
        ["ice", "offer", "--turn", "stun:127.0.0.1"],
        ["ice", "answer", "--stun", "127.0.0.1:0"],
        ["ice", "offer", "--count", "0"],
        ["ice"],
        ["stun", "--timeout", "0"],
        ["nat", "--lifetime-max", "inf"],
        ["turn"],
        ["turn", "turn:127.0.0.1", "--ttl", "soon"],
        ["serve", "stun", "--user", "nopassword"],
        ["serve", "stun", "--tls-port", "65536"],
        ["serve", "turn", "--min-port", "0"],
        ["serve", "turn", "--max-bps", "-1"],
    ],
    ids=" ".join,
)
def test_a_bad_value_or_a_missing_argument_imports_the_options_only(args: list[str]) -> None:
    """What argparse and the options' ``type`` functions refuse ends in exit 2 before the
    command's stack loads."""
    command = next(
        key
        for key in sorted(COMMAND_MODULES, key=len, reverse=True)
        if tuple(args[: len(key)]) == key
    )
    code, loaded = loaded_by(*args)
    assert code == 2
    assert loaded - PARSER_MODULES - set(COMMAND_MODULES[command]) == set()
