"""Every bad file, option or address, in every ``icestack`` command: exit status 2 and one line on
stderr that names the thing and says what is wrong, never a traceback.

Each option that takes a file is tried with a missing file, a folder, a file of the wrong kind and
(for keys) a mismatched or encrypted one; each address with a bad form, an unknown host, port 0 and
an address that is not this host's; each number out of its range.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from stun.files import MAX_FILE_SIZE
from stun.tls import CertificateFiles, make_self_signed
from tests.cli.test_cli import ICESTACK, RUN_TIMEOUT, Running, icestack
from tests.net.loopback import closed_port

#: An address of the documentation range (RFC 5737) that no host here has: binding to it fails.
NOT_OURS = "203.0.113.77"
TURN = ["serve", "turn", "--user", "alice:wonderland", "--listen", "127.0.0.1:0"]


@dataclass(frozen=True)
class Files:
    """Files of every kind a bad option can name."""

    good: CertificateFiles
    other: CertificateFiles
    encrypted_key: Path
    not_pem: Path
    folder: Path
    missing: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Files]:
    root = tmp_path_factory.mktemp("bad-files")
    good = make_self_signed(tmp_path_factory.mktemp("good"))
    other = make_self_signed(tmp_path_factory.mktemp("other"))
    key = serialization.load_pem_private_key(good.private_key.read_bytes(), password=None)
    encrypted_key = root / "encrypted.pem"
    encrypted_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"sesame"),
        )
    )
    not_pem = root / "notes.txt"
    not_pem.write_text("this is no certificate\n")
    yield Files(good, other, encrypted_key, not_pem, root, root / "absent.pem")


def check_error(completed: subprocess.CompletedProcess[str], *names: str) -> str:
    """Exit 2, no traceback, nothing on stdout, and one error line on stderr naming every one
    of ``names`` (a probe may show its progress lines, stamped ``[ ... s]``, before it)."""
    assert completed.returncode == 2, completed.stdout + completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stdout == ""
    lines = [line for line in completed.stderr.splitlines() if not line.startswith("[")]
    assert len(lines) == 1, completed.stderr
    (line,) = lines
    assert "error: " in line
    for name in names:
        assert name in line, line
    return line


# --------------------------------------------------------------------------- files


def test_stun_cafile(files: Files) -> None:
    probe = ["stun", "127.0.0.1:9", "--tls", "--cafile"]
    check_error(icestack(*probe, str(files.missing)), "--cafile", str(files.missing), "no such")
    check_error(icestack(*probe, str(files.folder)), "--cafile", "a folder, not a file")
    check_error(icestack(*probe, str(files.not_pem)), "--cafile", str(files.not_pem), "no PEM")
    check_error(icestack(*probe, str(files.good.private_key)), "--cafile", "no PEM CERTIFICATE")


@pytest.mark.parametrize("command", [["serve", "stun", "--listen", "127.0.0.1:0"], TURN])
def test_serve_tls_files(files: Files, command: list[str]) -> None:
    cert, key = str(files.good.certificate), str(files.good.private_key)

    def serve_tls(certificate: object, private_key: object, *more: str) -> str:
        options = ["--tls", str(certificate), str(private_key), *more]
        if command[1] == "stun":
            options += ["--tls-port", "0"]
        else:
            options += ["--tls-listening-port", "0"]
        return check_error(icestack(*command, *options), "--tls")

    assert str(files.missing) in serve_tls(files.missing, key)
    assert "no such file" in serve_tls(files.missing, key)
    assert f"key {files.missing}: no such file" in serve_tls(cert, files.missing)
    assert "a folder" in serve_tls(files.folder, key)
    assert "no PEM CERTIFICATE" in serve_tls(files.not_pem, key)
    assert "no PEM CERTIFICATE" in serve_tls(key, cert)  # swapped
    assert "no PEM PRIVATE KEY" in serve_tls(cert, files.not_pem)
    line = serve_tls(cert, files.other.private_key)
    assert f"the key {files.other.private_key} does not belong to the certificate {cert}" in line
    assert "encrypted and no password was given" in serve_tls(cert, files.encrypted_key)
    if command[1] == "turn":
        wrong = serve_tls(cert, files.encrypted_key, "--pkey-pwd", "open")
        assert "the password is wrong" in wrong


def test_serve_turn_log_file(files: Files) -> None:
    missing_folder = files.folder / "no" / "such" / "turn.log"
    check_error(icestack(*TURN, "--log-file", str(missing_folder)), "--log-file", "no such folder")
    check_error(icestack(*TURN, "--log-file", str(files.folder)), "--log-file", "a folder")


def test_serve_turn_config_files(files: Files) -> None:
    check_error(icestack(*TURN, "--config", str(files.missing)), "--config", "no such file")
    check_error(icestack(*TURN, "--config", str(files.folder)), "--config", "a folder")
    binary = files.folder / "binary.conf"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    check_error(icestack(*TURN, "--config", str(binary)), "--config", "not a text file")


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe no process writes to: opening it to read would wait for ever."""
    path = tmp_path / "fifo.conf"
    os.mkfifo(path)
    return path


@pytest.fixture
def oversized(tmp_path: Path) -> Path:
    """A regular file just over the 1 MiB any file option may name."""
    path = tmp_path / "oversized.pem"
    path.write_bytes(b"#" * (MAX_FILE_SIZE + 1))
    return path


def file_options(path: Path, files: Files) -> list[tuple[list[str], str]]:
    """Every option that reads a file, naming ``path`` there, and the name its error says."""
    cert, key = str(files.good.certificate), str(files.good.private_key)
    return [
        ([*TURN, "--config", str(path)], "--config"),
        (["stun", "127.0.0.1:9", "--tls", "--cafile", str(path)], "--cafile"),
        (["serve", "stun", "--listen", "127.0.0.1:0", "--tls", str(path), key, "--tls-port", "0"],
         "--tls certificate"),
        (["serve", "stun", "--listen", "127.0.0.1:0", "--tls", cert, str(path), "--tls-port", "0"],
         "--tls key"),
        ([*TURN, "--tls", cert, str(path)], "--tls key"),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("special", "problem"),
    [
        ("/dev/zero", "that is a device, not a regular file"),
        ("fifo", "that is a FIFO (named pipe), not a regular file"),
        ("oversized", "larger than 1 MiB"),
    ],
)
def test_file_options_want_a_regular_file_of_sane_size(
    special: str, problem: str, files: Files, request: pytest.FixtureRequest
) -> None:
    """``--config /dev/zero`` grew without bound and a FIFO hung: every file option reads only
    a regular file of at most 1 MiB, and opens it without waiting for a FIFO's writer."""
    path = Path(special) if special.startswith("/") else request.getfixturevalue(special)
    for args, what in file_options(path, files):
        line = check_error(icestack(*args), what, problem)
        assert f"{what} {path}: " in line


def test_a_log_file_fifo_no_process_reads_is_refused(fifo: Path) -> None:
    check_error(
        icestack(*TURN, "--log-file", str(fifo)), f"--log-file {fifo}", "a FIFO (named pipe) that "
        "no process reads",
    )  # fmt: skip


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["stun", "nosuchhost.invalid"], ["cannot resolve 'nosuchhost.invalid'"]),
        (["stun", "127.0.0.1:0"], ["port 0", "127.0.0.1:0"]),
        (["stun", "127.0.0.1:65536"], ["bad port", "65536"]),
        (["stun", "127.0.0.1:"], ["no port after ':'"]),
        (["stun", "[::1"], ["unclosed '['"]),
        (["stun", ""], ["the target is empty", "leave TARGET out"]),
        (["stun", " "], ["the target is empty"]),
        (["stun", "[::1]x"], ["want [IPv6]:PORT"]),
        (["stun", ":3478"], ["no host"]),
        (["stun", "-6", "127.0.0.1"], ["127.0.0.1 has no IPv6 address (-6)"]),
        (["stun", "-4", "::1"], ["::1 has no IPv4 address (-4)"]),
        (["stun", "stuns:127.0.0.1", "--tcp"], ["stuns:127.0.0.1", "drop --tcp"]),
        (["stun", "stun:127.0.0.1", "--tls"], ["stun:127.0.0.1", "write stuns:"]),
        (["stun", "stun:127.0.0.1?transport=tcp"], ["has no query"]),
        (["serve", "stun", "--listen", "stun.example.org"], ["--listen", "not an IP address"]),
        (["serve", "stun", "--listen", "127.0.0.1:70000"], ["bad port", "70000"]),
        (["serve", "stun", "--listen", f"{NOT_OURS}:3478"],
         [f"cannot listen on udp {NOT_OURS}:3478", "not an address of this host"]),
        ([*TURN[:4], "--listen", f"{NOT_OURS}:0", "--relay-ip", "127.0.0.1"],
         [f"cannot listen on udp {NOT_OURS}:0", "not an address of this host"]),
        ([*TURN, "--relay-ip", NOT_OURS], [f"relay address {NOT_OURS}"]),
        ([*TURN, "--relay-ip", "relay.example.org"], ["--relay-ip", "not an IP address"]),
        ([*TURN, "--alternate-server", "192.0.2.1:0"], ["--alternate-server", "port 0"]),
        ([*TURN, "--alternate-server", "turn.example.org"], ["--alternate-server", "not an IP"]),
        ([*TURN, "--metrics-port", "0", "--metrics-host", "metrics.example.org"],
         ["--metrics-host", "not an IP address"]),
        ([*TURN, "--metrics-port", "0", "--metrics-host", NOT_OURS],
         [f"cannot listen on http (metrics) {NOT_OURS}:0", "not an address of this host"]),
        ([*TURN, "--denied-peer-ip", "10.0.0.9-10.0.0.1"], ["--denied-peer-ip", "bad range"]),
        ([*TURN, "--allowed-peer-ip", "10.0.0.0/33"], ["--allowed-peer-ip", "10.0.0.0/33"]),
        (["ice", "offer", "--stun", "nosuchhost.invalid"], ["--stun nosuchhost.invalid:3478"]),
        (["ice", "offer", "--stun", "127.0.0.1:0"], ["--stun", "port 0"]),
        (["ice", "answer", "--stun", "[::1"], ["--stun", "unclosed '['"]),
        (["ice", "offer", "--no-stun", "--interface", "nosuchif0"],
         ["--interface nosuchif0", "no usable address"]),
        (["ice", "offer", "--no-stun", "--interface", "127.0.0.1"],
         ["--interface 127.0.0.1", "--include-loopback"]),
        (["ice", "offer", "--no-stun", "--interface", NOT_OURS], [f"--interface {NOT_OURS}"]),
    ],
)  # fmt: skip
def test_bad_addresses(args: list[str], names: list[str]) -> None:
    check_error(icestack(*args), *names)


# --------------------------------------------------------------------------- options and numbers


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["stun", "127.0.0.1:9", "--timeout", "-1"], ["--timeout", "--option=VALUE"]),
        (["stun", "127.0.0.1:9", "--timeout=-1"], ["--timeout", "positive number of seconds"]),
        (["stun", "127.0.0.1:9", "--timeout", "nan"], ["--timeout", "positive number"]),
        (["stun", "127.0.0.1:9", "--timeout", "inf"], ["--timeout", "positive number"]),
        (["stun", "127.0.0.1:9", "--password", "pw"], ["--password needs --user"]),
        (["stun", "127.0.0.1:9", "--cafile", "ca.pem"], ["--cafile is for STUN over TLS"]),
        (["stun", "stun:127.0.0.1", "--insecure"], ["--insecure is for STUN over TLS"]),
        (["stun", "127.0.0.1:9", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["serve", "stun", "--tls-port", "65536"], ["--tls-port", "[0, 65535]"]),
        (["serve", "stun", "--workers", "many"], ["--workers", "invalid int value"]),
        (["serve", "stun", "--workers", "-2"], ["--workers must be at least 1"]),
        (["serve", "stun", "--auth", "long-term", "--user", "a:b", "--realm", ""],
         ["--realm", "must not be empty"]),
        ([*TURN, "--realm", ""], ["--realm", "must not be empty"]),
        ([*TURN, "--tls-listening-port", "65536"], ["--tls-listening-port", "[0, 65535]"]),
        ([*TURN, "--max-port", "65536"], ["--max-port", "[1, 65535]"]),
        ([*TURN, "--metrics-port", "-5"], ["--metrics-port", "[0, 65535]: -5"]),
        ([*TURN, "--total-quota", "0"], ["--total-quota", ">= 1"]),
        ([*TURN, "--workers", "0"], ["--workers", ">= 1"]),
        ([*TURN, "--pkey-pwd", "sesame"], ["--pkey-pwd without --tls"]),
        (["demo", "--sim", "none,cgnat"], ["--sim", "cgnat"]),
        (["demo", "--seed", "x"], ["--seed", "invalid int value"]),
        (["demo", "--seed", "5"], ["--seed is the simulated network's", "add --sim"]),
        (["ice", "offer", "--no-stun", "--stun", "127.0.0.1"],
         ["--stun: not allowed with argument --no-stun"]),
        (["serve", "stun", "--listen", "127.0.0.1:0", "--tls-port", "5349"],
         ["--tls-port without --tls"]),
        ([*TURN, "--tls-listening-port", "5349"], ["--tls-listening-port", "without --tls"]),
        ([*TURN, "--user", "alice:other"], ["--user alice given twice"]),
        (["serve", "stun", "--auth", "long-term", "--user", "a:b", "--user", "a:c"],
         ["--user a given twice"]),
        (["ice", "offer", "--count", "0"], ["--count", "at least 1"]),
        (["ice", "offer", "--timeout", "0"], ["--timeout", "positive number"]),
        (["ice", "answer", "--wait", "never"], ["--wait", "not a number of seconds"]),
        (["ice", "both"], ["invalid choice: 'both'"]),
        (["serve", "dns"], ["invalid choice: 'dns'"]),
        (["probe"], ["invalid choice: 'probe'"]),
    ],
)  # fmt: skip
def test_bad_options(args: list[str], names: list[str]) -> None:
    check_error(icestack(*args), *names)


@pytest.mark.parametrize(
    ("args", "prog"),
    [
        (["stun", "127.0.0.1:9"], "icestack stun"),
        (["nat"], "icestack nat"),
        (["turn", "turn:127.0.0.1"], "icestack turn"),
        (["demo"], "icestack demo"),
        (["ice", "offer"], "icestack ice offer"),
        (["serve", "stun"], "icestack serve stun"),
        (["serve", "turn"], "icestack serve turn"),
    ],
)
def test_an_unknown_option_is_refused_by_its_command(args: list[str], prog: str) -> None:
    """Named by the command it was given to, with that command's help to read."""
    check_error(
        icestack(*args, "--bogus"),
        f"{prog}: error: unrecognized arguments: --bogus; see {prog} --help",
    )


# --------------------------------------------------------------------------- workers and ports


@pytest.mark.parametrize("command", [["serve", "stun"], ["serve", "turn", "--user", "a:b"]])
def test_workers_do_not_share_a_port_with_a_server_already_there(command: list[str]) -> None:
    """SO_REUSEPORT would let a second ``--workers`` server in beside the first, and the kernel
    would spread clients over both: the second must refuse to start."""
    port = closed_port("127.0.0.1", socket.SOCK_DGRAM)
    listen = ["--listen", f"127.0.0.1:{port}", "--workers", "2"]
    if command[1] == "turn":
        listen.append("--no-tcp")
    with Running(*command, *listen) as first:
        first.wait_for(r"^worker \d: listening on udp", 2)
        second = icestack(*command, *listen)
        check_error(second, f"cannot listen on udp 127.0.0.1:{port}", "the address is in use")
        assert first.interrupt() == 0


# --------------------------------------------------------------------------- unreadable files


def test_files_another_user_cannot_read(files: Files, tmp_path: Path) -> None:
    """Run as an unprivileged user (root reads any file): root's files, mode 0600 in root's
    folders, are out of its reach."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv(1) to run icestack as another user")
    private = tmp_path / "private"
    private.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    secret_cert, secret_key = private / "cert.pem", private / "key.pem"
    secret_cert.write_bytes(files.good.certificate.read_bytes())
    secret_key.write_bytes(files.good.private_key.read_bytes())
    config = private / "turnserver.conf"
    config.write_text("user=a:b\n")
    for secret in (secret_cert, secret_key, config):
        secret.chmod(0o600)
    nobody = [setpriv, "--reuid", "65534", "--regid", "65534", "--clear-groups"]

    def as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*nobody, *ICESTACK, *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
            cwd="/", check=False,
        )  # fmt: skip

    denied = "cannot read it (permission denied)"
    check_error(as_nobody("stun", "127.0.0.1:9", "--tls", "--cafile", str(secret_cert)), denied)
    tls = ["--tls", str(secret_cert), str(secret_key), "--tls-port", "0"]
    check_error(as_nobody("serve", "stun", "--listen", "127.0.0.1:0", *tls), "--tls", denied)
    check_error(as_nobody(*TURN, "--config", str(config)), "--config", denied)
    log = str(private / "turn.log")  # the folder is root's: nobody cannot make a file there
    check_error(as_nobody(*TURN, "--log-file", log), "--log-file", "cannot write it (permission")
