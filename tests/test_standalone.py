"""The repository stands alone: no tracked file reads, builds, links or points readers to a path
outside it, and the load generator the benchmarks use is the repository's own and works.

``.ci/run`` adds the end-to-end form of the first rule: it clones HEAD into an empty temporary
folder (no sibling checkout of anything) and builds the bench tools there.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.stun_server import free_port, icestack_server
from bench.tools import STUNLOAD_SOURCE, build_stunload

ROOT = Path(__file__).resolve().parents[1]

#: Ways a file can reach out of the checkout. Written in pieces so that this file, which is tracked
#: too, does not match its own patterns.
OUTSIDE_PATHS = re.compile(
    "|".join(
        [
            re.escape(".." + "/shared"),  # a sibling folder of the checkout
            re.escape("/" + "work/"),  # the absolute path of the machine the project grew on
            # a Path built from the checkout's parent: REPO.parent / "..."
            r"\.parents?\b[^\n]*/\s*[\"']" + "shared" + r"[\"']",
            r"\b" + "design" + r"\.md\b",  # the outside design notes the project grew from
        ]
    )
)


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (or no git): the tracked files are unknown")
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.decode()
    return [ROOT / name for name in listing.split("\0") if name]


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    offenders = []
    for path in tracked_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary files, and files deleted but not yet committed
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_PATHS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "paths outside the repository:\n" + "\n".join(offenders)


def test_the_pattern_catches_what_it_is_for() -> None:
    """The positive control: each way of reaching out that the scan is meant to catch matches."""
    parent = "REPO.parent"
    for line in [
        "see " + ".." + "/shared/tools",
        "gcc -o x /" + "work/shared/tools/x.c",
        "the five verbs (" + "design" + ".md §2)",
        f'SOURCE = {parent} / "shared" / "tools" / "x.c"',
    ]:
        assert OUTSIDE_PATHS.search(line), line
    assert not OUTSIDE_PATHS.search("a secret shared with the web service")


def test_the_load_generator_is_built_from_the_repository() -> None:
    assert STUNLOAD_SOURCE.is_relative_to(ROOT)
    assert STUNLOAD_SOURCE.exists()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc to build bench/stunload.c")
def test_the_load_generator_measures_our_server() -> None:
    """stunload against ``icestack serve stun`` for one second: every answer it counts is valid
    (XOR-MAPPED-ADDRESS names the socket it asked from), none is malformed or unmatched."""
    stunload = build_stunload()
    port = free_port()
    with icestack_server(port, pin=False):
        run = subprocess.run(
            [str(stunload), "127.0.0.1", str(port), "1", "8"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    values = {m[1]: float(m[2]) for m in re.finditer(r"^stunload_(\w+) ([\d.]+)", run.stdout, re.M)}
    assert run.returncode == 0, run.stderr
    assert values["received"] > 0
    assert values["invalid"] == 0
    assert values["unmatched"] == 0
    assert values["error_responses"] == 0
    assert values["p50"] <= values["p99"] <= values["max"]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc to build bench/stunload.c")
def test_the_load_generator_refuses_a_remote_target_and_bad_numbers() -> None:
    stunload = build_stunload()
    for arguments, complaint in [
        (["192.0.2.1", "3478", "1", "1"], "not a loopback address"),
        (["127.0.0.1", "0", "1", "1"], "PORT must be"),
        (["127.0.0.1", "3478", "1", "many"], "CONCURRENCY must be"),
    ]:
        run = subprocess.run(
            [str(stunload), *arguments], capture_output=True, text=True, timeout=30
        )
        assert run.returncode == 2
        assert complaint in run.stderr
