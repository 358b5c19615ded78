"""Build and launch what benchmarks measure with and against: ``stunload`` and a pinned coturn.

``python -m bench.tools`` builds ``stunload`` and prints its path.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.interop.coturn import LongTermCredentials, RunningTurnserver, running_turnserver

REPO = Path(__file__).resolve().parents[1]
#: The load generator's source: a C program of the benchmarks, not part of the installed package.
STUNLOAD_SOURCE = REPO / "bench" / "stunload.c"
STUNLOAD = REPO / "bench" / "build" / "stunload"


def build_stunload(source: Path = STUNLOAD_SOURCE, output: Path = STUNLOAD) -> Path:
    """Compile ``stunload`` with ``gcc -O2`` unless ``output`` is already newer than ``source``."""
    if output.exists() and output.stat().st_mtime >= source.stat().st_mtime:
        return output
    output.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", str(output), str(source)], check=True)
    return output


@contextlib.contextmanager
def pinned_coturn(
    workdir: Path,
    *,
    cpu: int = 1,
    hosts: tuple[str, ...] = ("127.0.0.1",),
    credentials: LongTermCredentials | None = None,
) -> Iterator[RunningTurnserver]:
    """coturn as a baseline: single-threaded (``-m 0``), on ``taskset -c cpu``; ``--no-auth``
    unless given ``credentials`` (then the long-term mechanism with that one user)."""
    with running_turnserver(
        workdir,
        hosts=hosts,
        credentials=credentials,
        extra_arguments=["-m", "0"],
        command_prefix=["taskset", "-c", str(cpu)],
    ) as server:
        yield server


if __name__ == "__main__":
    print(build_stunload())
