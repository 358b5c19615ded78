"""Run coturn — ``turnserver`` and ``turnutils_stunclient`` — on loopback as a reference peer.

:func:`running_turnserver` starts a private ``turnserver`` (no config file, its own ports, pid file,
user database and log in a directory the caller owns), waits until it answers a STUN Binding
request built with our codec, and stops exactly that process afterwards. :func:`run_stunclient`
points coturn's STUN client at any server (ours included) and parses what it reports.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from stun import (
    Address,
    DecodeError,
    Message,
    MessageClass,
    Method,
    make_address,
    new_transaction_id,
)
from stun.tls import CertificateFiles

#: How long a started turnserver may take to answer before the start counts as failed (seconds).
STARTUP_TIMEOUT = 15.0
_POLL_INTERVAL = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class LongTermCredentials:
    """A user of the long-term credential mechanism (RFC 8489 §9.2) and the server's realm."""

    username: str
    password: str
    realm: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningTurnserver:
    """A turnserver started by :func:`running_turnserver`, and how to reach it.

    ``port`` serves UDP and TCP on every host in ``hosts``; ``tls_port`` serves TLS over TCP when
    the server was given a certificate (``certificate`` is then what a client must trust).
    ``credentials`` is ``None`` for a server started with ``--no-auth``.
    """

    pid: int
    hosts: tuple[str, ...]
    port: int
    tls_port: int | None
    credentials: LongTermCredentials | None
    certificate: Path | None
    log_file: Path

    def address(self, host: str = "127.0.0.1") -> Address:
        """The UDP/TCP listening address on ``host``."""
        return make_address(host, self.port)

    def tls_address(self, host: str = "127.0.0.1") -> Address:
        """The TLS listening address on ``host``."""
        if self.tls_port is None:
            raise ValueError("this turnserver was started without TLS")
        return make_address(host, self.tls_port)


@dataclass(frozen=True, slots=True, kw_only=True)
class StunclientResult:
    """What ``turnutils_stunclient`` did: exit status, combined output, reflexive addresses seen."""

    returncode: int
    output: str
    mapped_addresses: tuple[Address, ...]


def skip_unless_installed(*programs: str) -> None:
    """Skip the calling test unless every program is on PATH (they ship in Debian's ``coturn``)."""
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        names = ", ".join(missing)
        pytest.skip(f"{names} not installed (Debian package coturn; .ci/run installs it)")


def loopback_hosts() -> tuple[str, ...]:
    """The loopback addresses this machine can bind: 127.0.0.1, and ::1 unless IPv6 is off."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return ("127.0.0.1",)
    return ("127.0.0.1", "::1")


def free_ports(count: int, hosts: Sequence[str]) -> list[int]:
    """``count`` distinct ports that are free for both UDP and TCP on every host in ``hosts``.

    The probe sockets are closed before returning, so another process could take a port before
    the caller binds it; on loopback with kernel-chosen ports that is rare enough to accept.
    """
    ports: list[int] = []
    with contextlib.ExitStack() as held:
        for _ in range(20 * count):
            first = held.enter_context(_socket(hosts[0], socket.SOCK_STREAM))
            first.bind((hosts[0], 0))
            port: int = first.getsockname()[1]
            try:
                for host in hosts:
                    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                        if (host, kind) != (hosts[0], socket.SOCK_STREAM):
                            held.enter_context(_socket(host, kind)).bind((host, port))
            except OSError:
                continue
            ports.append(port)
            if len(ports) == count:
                return ports
    raise OSError(f"found only {len(ports)} of {count} free ports on {hosts}")


def _socket(host: str, kind: socket.SocketKind) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.socket(family, kind)


def udp_request(
    sock: socket.socket,
    server: Address,
    request: Message,
    timeout: float,
    *,
    key: bytes | None = None,
) -> Message:
    """Send ``request`` from ``sock`` to ``server`` once; return the response with its ID.

    With ``key``, the request carries MESSAGE-INTEGRITY made with it. Datagrams that are not a STUN
    message for this transaction are skipped; raises :class:`TimeoutError` when nothing matching
    arrives within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    sock.sendto(request.encode(key=key), server)
    while (remaining := deadline - time.monotonic()) > 0:
        sock.settimeout(remaining)
        data, _ = sock.recvfrom(65536)
        try:
            response = Message.decode(data)
        except DecodeError:
            continue
        if response.transaction_id == request.transaction_id:
            return response
    raise TimeoutError(f"no response from {server} within {timeout} s")


def binding_request() -> Message:
    """A bare STUN Binding request with a fresh transaction ID (RFC 8489 §6.1)."""
    return Message(Method.BINDING, MessageClass.REQUEST, new_transaction_id())


def turnserver_arguments(
    workdir: Path,
    *,
    hosts: Sequence[str],
    port: int,
    tls_port: int | None,
    certificate: CertificateFiles | None,
    credentials: LongTermCredentials | None,
) -> list[str]:
    """The ``turnserver`` command line for a private instance whose files all live in ``workdir``.

    ``-n`` keeps it from reading /etc/turnserver.conf; RFC 5780 (which opens extra ports), DTLS
    and the telnet CLI are off; loopback peers are allowed because every peer in a test is local.
    """
    arguments = ["turnserver", "-n", "--no-cli", "--no-rfc5780", "--no-dtls"]
    arguments += ["--allow-loopback-peers", "-p", str(port)]
    for host in hosts:
        arguments += ["-L", host]
    if certificate is None or tls_port is None:
        arguments.append("--no-tls")
    else:
        arguments += ["--tls-listening-port", str(tls_port)]
        arguments += ["--cert", str(certificate.certificate)]
        arguments += ["--pkey", str(certificate.private_key)]
    if credentials is None:
        arguments.append("--no-auth")
    else:
        arguments += ["--lt-cred-mech", "--realm", credentials.realm]
        arguments += ["--user", f"{credentials.username}:{credentials.password}"]
    arguments += ["--pidfile", str(workdir / "turnserver.pid")]
    arguments += ["--userdb", str(workdir / "turndb.sqlite")]
    arguments += ["--log-file", str(workdir / "turnserver.log"), "--simple-log", "--no-stdout-log"]
    return arguments


@contextlib.contextmanager
def running_turnserver(
    workdir: Path,
    *,
    hosts: Sequence[str] | None = None,
    certificate: CertificateFiles | None = None,
    credentials: LongTermCredentials | None = None,
    extra_arguments: Sequence[str] = (),
    command_prefix: Sequence[str] = (),
) -> Iterator[RunningTurnserver]:
    """Start ``turnserver`` on free loopback ports, wait until it answers, stop it on exit.

    ``extra_arguments`` go after ours (``-m 0`` for one relay thread, say); ``command_prefix`` goes
    before the program (``taskset -c 1``). The server is stopped by its PID: SIGTERM, then SIGKILL
    if it has not exited after five seconds.
    """
    hosts = tuple(hosts or loopback_hosts())
    workdir.mkdir(parents=True, exist_ok=True)
    port, *tls = free_ports(2 if certificate else 1, hosts)
    tls_port = tls[0] if tls else None
    arguments = turnserver_arguments(
        workdir, hosts=hosts, port=port, tls_port=tls_port, certificate=certificate,
        credentials=credentials,
    )
    with (workdir / "turnserver.out").open("wb") as output:
        process = subprocess.Popen(
            [*command_prefix, *arguments, *extra_arguments],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
        )
    server = RunningTurnserver(
        pid=process.pid, hosts=hosts, port=port, tls_port=tls_port, credentials=credentials,
        certificate=certificate.certificate if certificate else None,
        log_file=workdir / "turnserver.log",
    )
    try:
        _wait_until_answering(process, server)
        yield server
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End a process this code started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_until_answering(process: subprocess.Popen[bytes], server: RunningTurnserver) -> None:
    """Poll every host with Binding requests over UDP until each gets a success response."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for host in server.hosts:
        with _socket(host, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            while True:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"turnserver exited with {process.returncode}:\n{_log_tail(server)}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"turnserver did not answer on {server.address(host)} within "
                        f"{STARTUP_TIMEOUT} s:\n{_log_tail(server)}"
                    )
                with contextlib.suppress(TimeoutError):
                    response = udp_request(
                        sock, server.address(host), binding_request(), _POLL_INTERVAL
                    )
                    if response.message_class is MessageClass.SUCCESS_RESPONSE:
                        break
                time.sleep(_POLL_INTERVAL)


def _log_tail(server: RunningTurnserver, lines: int = 30) -> str:
    texts = []
    for path in (server.log_file, server.log_file.with_suffix(".out")):
        if path.exists():
            texts += path.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(texts)


_REFLEXIVE = re.compile(r"reflexive addr: (\S+):(\d+)\s*$", re.MULTILINE)


def stunclient_command(
    server: Address, *, local_host: str | None = None, rfc5780: bool = False
) -> list[str]:
    """The ``turnutils_stunclient`` command line: ``-L`` binds ``local_host``, ``-f`` forces its
    RFC 5780 requests (RESPONSE-PORT and CHANGE-REQUEST) even if the server sends no OTHER-ADDRESS.
    """
    command = ["turnutils_stunclient", "-p", str(server.port)]
    if local_host is not None:
        command += ["-L", local_host]
    if rfc5780:
        command.append("-f")
    return [*command, server.host]


def run_stunclient(
    server: Address, *, local_host: str | None = None, timeout: float = 10.0
) -> StunclientResult:
    """Run ``turnutils_stunclient`` against ``server`` over UDP and parse its report.

    It prints ``IPv4. UDP reflexive addr: 127.0.0.1:40000`` (IPv6 hosts without brackets) for the
    XOR-MAPPED-ADDRESS it got. It sends each request once and waits for the answer without a time
    limit, hence the ``timeout``, after which it is killed and :class:`subprocess.TimeoutExpired`
    raised.
    """
    completed = subprocess.run(
        stunclient_command(server, local_host=local_host),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False,
    )
    output = completed.stdout + completed.stderr
    mapped = dict.fromkeys(
        make_address(host, int(port)) for host, port in _REFLEXIVE.findall(completed.stdout)
    )
    return StunclientResult(
        returncode=completed.returncode, output=output, mapped_addresses=tuple(mapped)
    )
