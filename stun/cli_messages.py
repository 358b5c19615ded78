"""What the ``icestack`` command line says: its errors (one line on stderr and exit status 2,
never a traceback, :class:`CliParser` and :func:`main_error`), warnings, a server's status lines,
and what to do when the reader of its output went away (:func:`reader_gone`).

Kept apart from :mod:`stun.cli` (listening sockets, TLS files, worker processes) and free of the
protocol modules, so that ``icestack --help`` and a mistyped option cost no more than argparse.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``PROG: error: MESSAGE; see PROG --help``.

    A command's positional arguments may come before, between or after its options
    (``icestack stun HOST --timeout 1 HOST2``): a parser without subcommands parses intermixed."""

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._subparsers is not None or self._intermixing:
            return super().parse_known_args(args, namespace)
        # parse_known_intermixed_args calls back into parse_known_args: the flag ends the loop.
        self._intermixing = True
        try:
            return super().parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):
            message += " (a value that starts with '-' goes as --option=VALUE)"
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


#: The exit status of a command whose output was cut off by its reader going away (``icestack
#: stun --json | head -c1``): what a shell reports for a process SIGPIPE ended, 128 + 13.
BROKEN_PIPE_STATUS = 128 + signal.SIGPIPE


def main_error(message: str) -> int:
    """Print a CLI error and return the exit status for it."""
    write_line(sys.stderr, f"icestack: error: {message}")
    return 2


def warn(message: str) -> None:
    """Print one warning line on stderr."""
    write_line(sys.stderr, f"icestack: warning: {message}")


def write_line(stream: TextIO, line: str) -> bool:
    """Write ``line`` to ``stream`` in one write, so that the lines of workers sharing it do not
    mix. A pipe whose reader went away is no error: the stream is pointed at the null device
    (:func:`drop_output`) and ``False`` returned."""
    try:
        stream.write(line + "\n")
        stream.flush()
    except BrokenPipeError:
        drop_output(stream)
        return False
    return True


def say(line: str) -> None:
    """Print a server's status line on stdout. A server keeps serving when its stdout is closed
    (a log reader that went away): that is said once on stderr (stdout is the null device from
    then on), and later lines are dropped."""
    if not write_line(sys.stdout, line):
        warn("stdout is closed (broken pipe): serving on; status lines are dropped")


def reader_gone(stream: TextIO) -> bool:
    """Whether ``stream`` is a pipe (or socket) whose reading end is closed, so that every write
    to it fails: poll() reports an error or hang-up on it."""
    try:
        descriptor = stream.fileno()
    except (OSError, ValueError):
        return False
    poller = select.poll()
    poller.register(descriptor, select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def drop_output(stream: TextIO) -> None:
    """Point ``stream`` at the null device: what is still buffered, and whatever is written
    later, is dropped quietly (flushing it at exit would fail again, and Python says so)."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, stream.fileno())
    finally:
        os.close(null)


def format_table(rows: list[tuple[str, str]]) -> str:
    """Two aligned columns."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)
