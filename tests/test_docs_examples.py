"""Every fenced ```python example of README.md and docs/*.md runs as written, and so does
examples/ice_signalling/, against servers on loopback, so that examples never rot.

How a block runs. Each block is a script of its own, run in a subprocess from an empty folder, with
a time limit. An example that talks to a server, or listens, names the address in a top-level
variable (``STUN_SERVER = ("stun.l.google.com", 19302)``); the test replaces the value of every
variable named in :func:`substitutions` with a loopback server it started or a free local port,
and fails a block that assigns one of those names together with a name it does not know.

Nothing leaves loopback. The script runs under an audit hook (:data:`RUNNER`) that ends the process
with status 3, naming the address, as soon as it connects, sends or resolves a name anywhere but
loopback (or the wildcard address, for binding): an example that still points at a public
server fails instead of reaching it.

A block that serves (it calls ``serve_forever``) passes when its ``PORT`` answers a STUN Binding
request over UDP (the STUN and the TURN server both do); the test then stops it by its PID.

docs/logging.md is kept true the same way: every logger the packages create and every message they
log (read from the source) must be listed there, under its level.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.stun_server import free_port, wait_answering
from tests.interop.coturn import stop_process

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = ROOT / "examples" / "ice_signalling"
#: How long one example may run (the slowest connect two ICE agents on loopback in well under one).
TIMEOUT = 60.0
#: Credentials of the TURN server the examples use.
TURN_USER = ("alice", "wonderland")

#: Runs ``SCRIPT LABEL [ARGS...]``: the script as ``__main__``, with arguments, its folder first on
#: ``sys.path``, under an audit hook that keeps it on loopback.
RUNNER = r"""
import ipaddress, os, sys

def allowed(host):
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or ip.is_unspecified or (mapped is not None and mapped.is_loopback)

def refuse(event, what):
    sys.stderr.write(f"docs example left loopback: {event} {what!r}\n")
    sys.stderr.flush()
    os._exit(3)

def hook(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        address = args[1]
        if isinstance(address, tuple) and not allowed(address[0]):
            refuse(event, address)
    elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"):
        if not allowed(args[0]):
            refuse(event, args[0])

script, label, *arguments = sys.argv[1:]
sys.argv = [script, *arguments]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
code = compile(open(script, encoding="utf-8").read(), label, "exec")
sys.addaudithook(hook)
exec(code, {"__name__": "__main__", "__file__": script})
"""


@dataclass(frozen=True)
class Block:
    """One fenced ```python block: where it is and what it says."""

    document: Path
    index: int
    line: int
    code: str

    @property
    def label(self) -> str:
        return f"{self.document.relative_to(ROOT)} block {self.index} (line {self.line})"


def python_blocks(document: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, numbered from 0 in order."""
    blocks: list[Block] = []
    lines = document.read_text(encoding="utf-8").splitlines()
    start: int | None = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number
        elif start is not None and line.strip() == "```":
            code = "\n".join(lines[start : number - 1]) + "\n"
            blocks.append(Block(document, len(blocks), start, code))
            start = None
    return blocks


BLOCKS = [block for document in DOCUMENTS for block in python_blocks(document)]


def substitute(code: str, values: dict[str, str]) -> str:
    """``code`` with the value of every top-level assignment to a name of ``values`` replaced.

    A line that assigns several names (``A, B = 1, 2``) gets all of them replaced; it must name
    only known names, so that nothing meant for a public address is left behind.
    """

    def replace(match: re.Match[str]) -> str:
        names = [name.strip() for name in match.group(1).split(",")]
        known = [name in values for name in names]
        if not any(known):
            return match.group(0)
        if not all(known):
            raise AssertionError(f"assigns substituted and other names together: {names}")
        rhs = ", ".join(values[name] for name in names)
        return f"{', '.join(names)} = {rhs}  # substituted by tests/test_docs_examples.py\n"

    return re.sub(r"^([A-Z][A-Z_]*(?:\s*,\s*[A-Z][A-Z_]*)*)\s*=.*\n", replace, code, flags=re.M)


def script_command(folder: Path, script: Path, label: str, *arguments: str) -> list[str]:
    """The command that runs ``script`` under :data:`RUNNER` (written into ``folder``)."""
    runner = folder / "loopback_only.py"
    runner.write_text(RUNNER, encoding="utf-8")
    return [sys.executable, str(runner), str(script), label, *arguments]


def environment() -> dict[str, str]:
    """This interpreter's environment, with the checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass(frozen=True)
class LocalServers:
    """Where the module's servers listen."""

    stun: tuple[str, int]
    turn: tuple[str, int]


@pytest.fixture(scope="module")
def servers() -> Iterator[LocalServers]:
    """``icestack serve stun`` and ``icestack serve turn`` on 127.0.0.1 for the whole module; the
    TURN server relays to loopback peers, which is all the examples can reach here."""
    stun_port, turn_port = free_port(), free_port()
    commands = [
        ["serve", "stun", "--listen", f"127.0.0.1:{stun_port}"],
        ["serve", "turn", "--listen", f"127.0.0.1:{turn_port}", "--realm", "example.org",
         "--user", ":".join(TURN_USER), "--allow-loopback-peers"],
    ]  # fmt: skip
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "ice.cli", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=environment(),
        )
        for command in commands
    ]
    try:
        wait_answering(stun_port)
        wait_answering(turn_port)
        yield LocalServers(("127.0.0.1", stun_port), ("127.0.0.1", turn_port))
    finally:
        for process in processes:
            stop_process(process)


def substitutions(servers: LocalServers, port: int) -> dict[str, str]:
    """What each variable an example may use for an address becomes here (as Python source)."""
    return {
        "STUN_SERVER": repr(servers.stun),
        "TURN_SERVER": repr(servers.turn),
        "TURN_USERNAME": repr(TURN_USER[0]),
        "TURN_PASSWORD": repr(TURN_USER[1]),
        "LISTEN_HOST": repr("127.0.0.1"),
        "RELAY_HOST": repr("127.0.0.1"),
        "PORT": repr(port),
        "TLS_PORT": repr(free_port()),
        "METRICS_PORT": repr(free_port()),
    }


def test_the_documents_have_examples_to_run() -> None:
    """The positive control of the block parser: the README's first example is found, whole."""
    readme = python_blocks(ROOT / "README.md")
    assert readme, "no ```python block found in README.md"
    assert readme[0].code.startswith("import asyncio\n")
    assert "asyncio.run(" in readme[0].code
    for name in ["README.md", "docs/stun.md", "docs/turn.md", "docs/ice.md", "docs/logging.md"]:
        assert any(block.document == ROOT / name for block in BLOCKS), name


def test_substitution_replaces_known_names_only() -> None:
    code = 'A = 1\nSTUN_SERVER = ("stun.example.net", 3478)  # public\nPORT, TLS_PORT = 1, 2\n'
    values = {"STUN_SERVER": "('127.0.0.1', 9)", "PORT": "5", "TLS_PORT": "6"}
    result = substitute(code, values)
    assert "A = 1\n" in result
    assert "STUN_SERVER = ('127.0.0.1', 9)" in result
    assert "PORT, TLS_PORT = 5, 6" in result
    assert "example.net" not in result
    with pytest.raises(AssertionError, match="together"):
        substitute("PORT, OTHER = 1, 2\n", values)


def test_an_example_that_leaves_loopback_is_stopped(tmp_path: Path) -> None:
    """The positive control of the audit hook: resolving a public name ends the script at once
    (before any packet leaves), with status 3 and the name on stderr."""
    script = tmp_path / "example.py"
    script.write_text('import socket\nsocket.getaddrinfo("stun.l.google.com", 19302)\nprint("x")\n')
    run = subprocess.run(
        script_command(tmp_path, script, "control"), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert run.returncode == 3
    assert "stun.l.google.com" in run.stderr
    assert run.stdout == ""


@pytest.mark.parametrize("block", BLOCKS, ids=lambda block: block.label.split(" (")[0])
def test_example_runs(block: Block, servers: LocalServers, tmp_path: Path) -> None:
    port = free_port()
    code = substitute(block.code, substitutions(servers, port))
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    command = script_command(tmp_path, script, block.label)
    if "serve_forever(" in code:
        assert "# substituted" in code and re.search(r"^PORT\b|, PORT\b", code, re.M), (
            f"{block.label} serves: it must listen on a variable named PORT"
        )
        process = subprocess.Popen(
            command, cwd=tmp_path, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            try:
                wait_answering(port, deadline_s=TIMEOUT)
            except RuntimeError:
                process.kill()
                _, stderr = process.communicate()
                pytest.fail(f"{block.label} does not answer on port {port}:\n{stderr.decode()}")
            assert process.poll() is None, f"{block.label} exited while serving"
        finally:
            stop_process(process)
        return
    run = subprocess.run(
        command, cwd=tmp_path, env=environment(), capture_output=True, text=True, timeout=TIMEOUT
    )
    assert run.returncode == 0, f"{block.label} failed:\n{run.stdout}\n{run.stderr}"


def test_the_ice_signalling_example_echoes_between_two_processes(tmp_path: Path) -> None:
    """answer.py and offer.py as the docs run them, on 127.0.0.1: the offerer's three datagrams
    come back, and both exit 0."""
    port = free_port()
    common = ["--interface", "127.0.0.1", "--timeout", "30"]
    answer_command = script_command(
        tmp_path, EXAMPLES / "answer.py", "answer.py", "--listen", f"127.0.0.1:{port}", *common
    )
    offer_command = script_command(
        tmp_path, EXAMPLES / "offer.py", "offer.py", f"http://127.0.0.1:{port}/offer", *common
    )
    answer = subprocess.Popen(
        answer_command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        offer = subprocess.run(
            offer_command, env=environment(), capture_output=True, text=True, timeout=TIMEOUT
        )
        answer_out, answer_err = (text.decode() for text in answer.communicate(timeout=TIMEOUT))
    finally:
        if answer.poll() is None:
            stop_process(answer)
    assert offer.returncode == 0, offer.stdout + offer.stderr
    echoed = re.findall(r"^echoed: (.*)$", offer.stdout, re.M)
    assert echoed == ["message 0", "message 1", "message 2"]
    connected = r"^connected: host 127\.0\.0\.1:\d+ -> 127\.0\.0\.1:\d+$"
    assert re.search(connected, offer.stdout, re.M)
    assert answer.returncode == 0, answer_out + answer_err
    assert "echoed 4 datagrams" in answer_out  # three messages and the bye


# --------------------------------------------------------------------------- docs/logging.md

LOGGING_PAGE = ROOT / "docs" / "logging.md"
_LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR"}


@dataclass(frozen=True)
class LogCall:
    """One ``_log.<level>("format", ...)`` call of the packages."""

    where: str
    logger: str
    level: str
    template: str


def log_calls() -> tuple[set[str], list[LogCall]]:
    """Every logger name the packages create, and every log call with a literal format."""
    names: set[str] = set()
    calls: list[LogCall] = []
    for path in sorted(
        p for package in ("stun", "turn", "ice") for p in (ROOT / package).rglob("*.py")
    ):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loggers: dict[str, str] = {}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) == "logging.getLogger"
                and isinstance(node.value.args[0], ast.Constant)
            ):
                name = str(node.value.args[0].value)
                names.add(name)
                for target in node.targets:
                    loggers[ast.unparse(target)] = name
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner, method = ast.unparse(node.func.value), node.func.attr
            if owner not in loggers or method not in (*_LEVELS, "exception"):
                continue
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                level = "ERROR" if method == "exception" else _LEVELS[method]
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                calls.append(LogCall(where, loggers[owner], level, first.value))
    return names, calls


def documented_messages() -> list[tuple[str, str, str]]:
    """``(level, logger, message)`` for every message row of docs/logging.md's level sections."""
    rows = []
    level = None
    for line in LOGGING_PAGE.read_text(encoding="utf-8").splitlines():
        if heading := re.match(r"^### (DEBUG|INFO|WARNING|ERROR)\b", line):
            level = heading.group(1)
        elif level and (row := re.match(r"^\| `([\w.]+)` \| (.+?) \|", line)):
            for message in re.findall(r"`([^`]+)`", row.group(2)):
                rows.append((level, row.group(1), message))
    return rows


def test_the_logging_page_names_every_logger() -> None:
    names, _ = log_calls()
    table = set(re.findall(r"^\| `(icestack[\w.]*)` \|", LOGGING_PAGE.read_text(), re.M))
    assert names, "no logging.getLogger call found: the scan is broken"
    assert names <= table, f"loggers missing from docs/logging.md: {sorted(names - table)}"
    assert table <= names | {"icestack"}, f"documented but not in the code: {table - names}"


def test_the_logging_page_lists_every_message_at_its_level() -> None:
    """Each log call's format matches a documented message (its ``%s`` are the page's CAPITALISED
    placeholders) of the same logger, in the section of its level; and each documented message
    is still logged."""
    _, calls = log_calls()
    documented = documented_messages()
    assert calls and documented, "the scan of the code or of the page is broken"
    patterns = {
        call: re.compile(".+".join(map(re.escape, re.split(r"%[sdr]", call.template))), re.S)
        for call in calls
    }

    def matches(call: LogCall, level: str, logger: str, message: str) -> bool:
        return (call.level, call.logger) == (level, logger) and bool(
            patterns[call].fullmatch(message)
        )

    missing = [
        f"{call.where}: {call.logger} {call.level} {call.template!r}"
        for call in calls
        if not any(matches(call, *row) for row in documented)
    ]
    assert not missing, "log messages docs/logging.md does not list:\n" + "\n".join(missing)
    stale = [row for row in documented if not any(matches(call, *row) for call in calls)]
    assert not stale, f"docs/logging.md lists messages the code does not log: {stale}"
