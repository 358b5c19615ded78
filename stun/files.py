"""Reading a file a command line option names (a certificate, a key, a CA bundle, a
turnserver.conf): bounded in size, never blocking on a FIFO, and every failure one
:class:`LocalProtocolError` that names the option and the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import LocalProtocolError


def file_problem(error: OSError) -> str:
    """What is wrong with a file, in a few words."""
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "that is a folder, not a file"
    if isinstance(error, PermissionError):
        return "cannot read it (permission denied)"
    return error.strerror or str(error)


#: The largest file an option may name: a certificate chain, a key, a CA bundle or a
#: turnserver.conf is far smaller, and reading ``/dev/zero`` must not fill memory.
MAX_FILE_SIZE = 1024 * 1024

_NOT_REGULAR = (
    (stat.S_ISDIR, "that is a folder, not a file"),
    (stat.S_ISFIFO, "that is a FIFO (named pipe), not a regular file"),
    (stat.S_ISSOCK, "that is a socket, not a regular file"),
    (stat.S_ISCHR, "that is a device, not a regular file"),
    (stat.S_ISBLK, "that is a device, not a regular file"),
)


def read_file(path: Path, what: str, *, limit: int = MAX_FILE_SIZE) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes; raises
    :class:`LocalProtocolError` naming ``what`` (the option) and the file when it cannot be read,
    is a FIFO, device, socket or folder (opened without waiting for a FIFO's writer), or is
    larger."""

    def problem(text: str) -> LocalProtocolError:
        return LocalProtocolError(f"{what} {path}: {text}")

    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise problem(file_problem(exc)) from None
    mode = os.fstat(descriptor).st_mode
    for test, text in _NOT_REGULAR:
        if test(mode):
            os.close(descriptor)
            raise problem(text)
    with os.fdopen(descriptor, "rb") as file:
        try:
            data = file.read(limit + 1)
        except OSError as exc:
            raise problem(file_problem(exc)) from None
    if len(data) > limit:
        raise problem(f"larger than {limit / 2**20:g} MiB, more than any such file needs")
    return data
