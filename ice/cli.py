"""The ``icestack`` command line: ``demo``, ``ice offer|answer``, ``stun`` and ``turn`` (probe a
server), ``nat`` (RFC 5780 behaviour discovery) and ``serve stun|turn``.

Each package contributes its own commands (``stun.probe``, ``stun.nat_cli``, ``stun.serve_cli``,
``turn.probe``, ``turn.cli``, ``ice.demo``, ``ice.commands``), and each command's options live
apart from it, in a module that imports nothing of the stack it runs on (``stun.probe_options``,
..., ``ice.commands_options``): that module's run function imports the command's own module only
when it runs. This module names the commands (:data:`COMMANDS`, :data:`SERVERS`) and imports a
command's options only once the command is chosen (:class:`CommandParser`), so that
``icestack --help`` or a mistyped command costs what argparse costs, and a command's ``--help``
or a mistaken option of it what its options cost, not the import of a protocol stack.

It keeps the rule of :mod:`stun.cli_messages`: an error the user can fix is one line on stderr
and exit status 2, never a traceback. SIGTERM ends a command as Ctrl-C does, so that what it
made on disk is cleaned up either way. A command whose output pipe is closed by its reader
(``| head -1``) ends quietly with status 141, as one that SIGPIPE ended; a server serves on
(:func:`stun.cli_messages.say`).
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from typing import Any

from stun._version import __version__
from stun.cli_messages import (
    BROKEN_PIPE_STATUS,
    CliParser,
    drop_output,
    main_error,
    reader_gone,
)
from stun.errors import LocalProtocolError

#: The commands, as ``icestack --help`` lists them: name, what it does, and the module whose
#: ``add_arguments(parser)`` adds its options and ``set_defaults(run=...)`` once it is chosen (a
#: run function that imports the command's stack when called).
COMMANDS = (
    (
        "demo",
        "two ICE agents and the embedded STUN server on loopback, or --sim on a simulated "
        "network (no network needed)",
        "ice.demo_options",
    ),
    (
        "ice",
        "connect two machines with ICE by pasting one line each way (connectivity test)",
        "ice.commands_options",
    ),
    ("stun", "probe a STUN server: mapped address, RTT, software, features", "stun.probe_options"),
    (
        "nat",
        "what NAT is this host behind? RFC 5780 behaviour discovery, and what it means for ICE",
        "stun.nat_options",
    ),
    (
        "turn",
        "probe a TURN server: allocate, relay a round trip through it, say what failed",
        "turn.probe_options",
    ),
)
#: The servers of ``icestack serve``, in the same form.
SERVERS = (
    ("stun", "run the STUN server (UDP, optionally TCP and TLS)", "stun.serve_options"),
    (
        "turn",
        "run the TURN server (UDP and TCP, optionally TLS; authentication required)",
        "turn.serve_options",
    ),
)


class CommandParser(CliParser):
    """A command's parser whose options its module adds the first time it parses (or prints its
    help): ``icestack --help``, or a mistyped command, imports none of the commands' modules,
    which would cost far more than the parsing itself. ``module=None``: nothing to add (a
    parser of subcommands, or one that its module built itself).

    A command refuses what it does not know itself, naming itself and its own help (``icestack
    nat: error: unrecognized arguments: --bogus; see icestack nat --help``), rather than handing
    it back for ``icestack`` to refuse as if it were the top level's."""

    def __init__(self, *args: Any, module: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._module = module

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._module is not None:
            module, self._module = self._module, None
            importlib.import_module(module).add_arguments(self)
        parsed, extras = super().parse_known_args(args, namespace)
        if extras and self._subparsers is None and not self._intermixing:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _add_commands(
    parser: argparse.ArgumentParser,
    dest: str,
    metavar: str,
    commands: Sequence[tuple[str, str, str | None]],
) -> argparse._SubParsersAction[CommandParser]:
    """Add ``commands`` (name, help, module) to ``parser`` as the choices of its ``dest``."""
    chosen = parser.add_subparsers(
        dest=dest, metavar=metavar, required=True, parser_class=CommandParser
    )
    for name, help_text, module in commands:
        chosen.add_parser(name, help=help_text, module=module)
    return chosen


def build_parser() -> argparse.ArgumentParser:
    """The whole ``icestack`` argument parser (each command's options are added when it runs)."""
    parser: argparse.ArgumentParser = CliParser(
        prog="icestack",
        description="STUN, TURN and ICE in pure Python: probe servers, run servers, try it out.",
    )
    parser.add_argument("--version", action="version", version=f"icestack {__version__}")
    commands = _add_commands(
        parser,
        "command",
        "COMMAND",
        [*COMMANDS, ("serve", "run a server in the foreground", None)],
    )
    _add_commands(commands.choices["serve"], "server", "SERVER", SERVERS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``icestack`` console script."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        status: int = args.run(args)
    except (LocalProtocolError, argparse.ArgumentTypeError) as exc:
        # ArgumentTypeError: an address that split_host_port rejects after parsing.
        return main_error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader of stdout (or stderr) went away (`icestack stun --json | head -c1`): end
        # quietly, as a tool SIGPIPE ends would. A broken pipe of anything else is a bug.
        closed = [stream for stream in (sys.stdout, sys.stderr) if reader_gone(stream)]
        if not closed:
            raise
        for stream in closed:
            drop_output(stream)
        return BROKEN_PIPE_STATUS
    return status


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: ``finally`` blocks and context managers run on the way out. (Servers
    replace it with their own handler once they serve, and stop cleanly.)"""
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
