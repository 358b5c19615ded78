"""The ``icestack`` command line: ``demo``, ``ice offer|answer``, ``stun`` and ``turn`` (probe a
server), ``nat`` (RFC 5780 behaviour discovery) and ``serve stun|turn``.

Each package contributes its own commands (``stun.probe``, ``stun.nat_cli``, ``stun.serve_cli``,
``turn.probe``, ``turn.cli``, ``ice.demo``, ``ice.commands``); this module only assembles them,
and keeps the
rule of :mod:`stun.cli`: an error the user can fix is one line on stderr and exit status 2,
never a traceback. SIGTERM ends a command as Ctrl-C does, so that what it made on disk is
cleaned up either way. A command whose output pipe is closed by its reader (``| head -1``) ends
quietly with status 141, as one that SIGPIPE ended; a server serves on (:func:`stun.cli.say`).
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from ice.commands import add_ice_command
from ice.demo import add_demo_command
from stun._version import __version__
from stun.cli import (
    BROKEN_PIPE_STATUS,
    CliParser,
    drop_output,
    main_error,
    reader_gone,
)
from stun.errors import LocalProtocolError
from stun.nat_cli import add_nat_command
from stun.probe import add_probe_command
from stun.serve_cli import add_serve_command
from turn.cli import add_serve_command as add_serve_turn_command
from turn.probe import add_probe_command as add_turn_probe_command


def build_parser() -> argparse.ArgumentParser:
    """The whole ``icestack`` argument parser."""
    parser: argparse.ArgumentParser = CliParser(
        prog="icestack",
        description="STUN, TURN and ICE in pure Python: probe servers, run servers, try it out.",
    )
    parser.add_argument("--version", action="version", version=f"icestack {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_demo_command(commands)
    add_ice_command(commands)
    add_probe_command(commands)
    add_nat_command(commands)
    add_turn_probe_command(commands)
    serve = commands.add_parser("serve", help="run a server in the foreground")
    serve_commands = serve.add_subparsers(dest="server", metavar="SERVER", required=True)
    add_serve_command(serve_commands)
    add_serve_turn_command(serve_commands)
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
