"""What the ``icestack`` commands share once they run (``icestack serve stun`` is
:mod:`stun.serve_cli`; parsing their options needs only :mod:`stun.cli_options`).

The rule of the whole command line: a bad file, option or address never ends in a traceback. It
ends in one line on stderr, ``icestack: error: …``, saying what is wrong and naming the thing
(the option, the file, the address), and exit status 2. :class:`stun.cli_messages.CliParser`
does that for what argparse finds; commands raise :class:`stun.LocalProtocolError` for the
rest, and the helpers here turn the usual culprits into such messages: certificate and key files
(:func:`load_server_tls`, :func:`load_client_tls`, :func:`stun.files.read_file`), listening
sockets (:func:`listen_failure`, :func:`check_ports_free`) and addresses (:func:`listen_address`,
and :mod:`stun.cli_options`' :func:`~stun.cli_options.server_address` while parsing).

``--workers N`` servers (:func:`run_workers`) share their ports with ``SO_REUSEPORT``, which the
kernel grants to any process of the same user that asks: so before forking, the parent binds
every port once without it (:func:`check_ports_free`), and a server already there — a stale one
of ours included — makes the start fail instead of silently sharing the port.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from .address import Address
from .aio import Listener, Transport
from .cli_messages import main_error, say, warn
from .cli_options import split_host_port
from .errors import LocalProtocolError
from .files import read_file
from .limits import StreamLimits
from .tls import client_context, self_signed_server_context, server_context

# =========================================================================== options, once parsed


def stream_limits(args: argparse.Namespace, *, streams: bool, tls: bool) -> StreamLimits:
    """The :class:`StreamLimits` of :func:`stun.cli_options.add_limit_options`' options; raises
    :class:`LocalProtocolError` for one that would have no effect (no TCP or TLS listener, or
    a TLS option without TLS)."""
    given = {
        "max_connections": ("--max-connections", args.max_connections),
        "max_connections_per_source": (
            "--max-connections-per-source",
            args.max_connections_per_source,
        ),
        "max_handshakes": ("--max-tls-handshakes", args.max_tls_handshakes),
        "handshake_timeout": ("--tls-handshake-timeout", args.tls_handshake_timeout),
        "first_message_timeout": ("--first-message-timeout", args.first_message_timeout),
    }
    values: dict[str, Any] = {}
    for name, (option, value) in given.items():
        if value is None:
            continue
        needs_tls = name in ("max_handshakes", "handshake_timeout")
        if not streams or (needs_tls and not tls):
            needed = "--tls" if needs_tls else "a TCP or TLS listener"
            raise LocalProtocolError(f"{option} has no effect without {needed}")
        values[name] = value
    return StreamLimits(**values)


def failure_limits(args: argparse.Namespace) -> dict[str, Any]:
    """``failure_rate`` and ``failure_burst`` as given by ``--auth-failure-rate`` and
    ``--auth-failure-burst``, for a server config."""
    given = {"failure_rate": args.auth_failure_rate, "failure_burst": args.auth_failure_burst}
    return {name: value for name, value in given.items() if value is not None}


def user_passwords(users: Iterable[tuple[str, str]] | None) -> dict[str, str]:
    """``--user NAME:PASSWORD`` options as a table; a name given twice is refused, not settled
    by the last one silently (the passwords are not repeated in the message)."""
    table: dict[str, str] = {}
    for name, password in users or ():
        if name in table:
            raise LocalProtocolError(
                f"--user {name} given twice: one password per user (drop one of them)"
            )
        table[name] = password
    return table


# =========================================================================== TLS files


def _check_pem(path: Path, what: str, marker: bytes, kind: str) -> bytes:
    data = read_file(path, what)
    if marker not in data:
        raise LocalProtocolError(
            f"{what} {path}: no PEM {kind} in it (want a text file with '-----BEGIN {kind}')"
        )
    return data


def load_server_tls(
    certificate: Path, private_key: Path, *, what: str = "--tls", password: str | None = None
) -> ssl.SSLContext:
    """A TLS server context from PEM files; raises :class:`LocalProtocolError` saying which
    file is missing, unreadable or not what it should be, or that the two do not match."""
    _check_pem(certificate, f"{what} certificate", b"-----BEGIN CERTIFICATE-----", "CERTIFICATE")
    key = _check_pem(private_key, f"{what} key", b"PRIVATE KEY-----", "PRIVATE KEY")
    try:
        # A password, even empty, keeps OpenSSL from prompting on the terminal.
        return server_context(certificate, private_key, password or "")
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None)
        if reason == "KEY_VALUES_MISMATCH":
            problem = f"the key {private_key} does not belong to the certificate {certificate}"
        elif b"ENCRYPTED" in key:
            problem = f"the key {private_key} is encrypted and " + (
                "the password is wrong" if password else "no password was given for it"
            )
        else:
            problem = f"cannot load the certificate {certificate} with the key {private_key}"
        detail = f" ({reason})" if reason and reason != "KEY_VALUES_MISMATCH" else ""
        raise LocalProtocolError(f"{what}: {problem}{detail}") from None


def self_signed_tls() -> ssl.SSLContext:
    """A TLS server context with a throw-away self-signed certificate (nothing stays on disk),
    after a warning that clients cannot verify it."""
    context, fingerprint = self_signed_server_context()
    warn(
        "--tls without CERT KEY: a throw-away self-signed certificate for localhost, 127.0.0.1 "
        f"and ::1 (SHA-256 {fingerprint}); clients cannot verify it"
    )
    return context


def load_client_tls(cafile: Path | None, *, verify: bool = True) -> ssl.SSLContext:
    """A TLS client context trusting the system CAs, or ``cafile``; raises
    :class:`LocalProtocolError` naming a CA file that is missing or holds no certificate."""
    if cafile is not None:
        _check_pem(cafile, "--cafile", b"-----BEGIN CERTIFICATE-----", "CERTIFICATE")
    try:
        return client_context(cafile, verify=verify)
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None)
        raise LocalProtocolError(f"--cafile {cafile}: {reason or exc}") from None


# =========================================================================== listening


_LISTEN_PROBLEMS = {
    errno.EADDRINUSE: "the address is in use: another server listens there (stop it, or pick "
    "another port)",
    errno.EADDRNOTAVAIL: "that is not an address of this host",
    errno.EACCES: "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)",
    errno.EAFNOSUPPORT: "this host has no IPv6 (listen on IPv4 addresses only)",
}


def listen_failure(transport: str, host: str, port: int, error: OSError) -> LocalProtocolError:
    """The error to report when listening on ``transport`` at ``(host, port)`` failed."""
    problem = _LISTEN_PROBLEMS.get(error.errno or 0, error.strerror or str(error))
    return LocalProtocolError(f"cannot listen on {transport} {Address(host, port)}: {problem}")


def check_ports_free(endpoints: Iterable[tuple[Transport, str, int]]) -> None:
    """Bind every ``(transport, host, port)`` once without ``SO_REUSEPORT``, and let go: a socket
    already there (even one that would share its port) makes the bind fail, and this raise
    :func:`listen_failure`'s error. TCP is bound with ``SO_REUSEADDR``, as the listeners are, so
    connections of an earlier run in TIME_WAIT do not count."""
    for transport, host, port in endpoints:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        try:
            with socket.socket(family, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind((host, port))
        except OSError as exc:
            raise listen_failure(transport, host, port, exc) from None


def listener_endpoints(
    listen: Iterable[tuple[str, int]], *, udp: bool, tcp: bool, tls_port: int | None
) -> list[tuple[Transport, str, int]]:
    """``(transport, host, port)`` for each listening address: UDP and TCP on its port, TLS on
    ``tls_port`` (``None``: no TLS), each once (two addresses of one host differing in port
    share its TLS listener)."""
    found: list[tuple[Transport, str, int]] = []
    for host, port in listen:
        if udp:
            found.append(("udp", host, port))
        if tcp:
            found.append(("tcp", host, port))
        if tls_port is not None:
            found.append(("tls", host, tls_port))
    return list(dict.fromkeys(found))


class Serving(Protocol):
    """What :func:`open_and_serve` needs of a server (the STUN and the TURN server)."""

    @property
    def listeners(self) -> Sequence[Listener]: ...

    async def listen(
        self,
        transport: Transport,
        host: str,
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
    ) -> Listener: ...

    async def serve_forever(self) -> None: ...

    async def close(self) -> None: ...


async def open_listeners(
    server: Serving,
    endpoints: Iterable[tuple[Transport, str, int]],
    tls: ssl.SSLContext | None,
    *,
    reuse_port: bool,
) -> None:
    """Open a listener per ``(transport, host, port)``; on the first that fails, close the
    server and raise :func:`listen_failure`'s error naming it."""
    for transport, host, port in endpoints:
        try:
            await server.listen(
                transport,
                host,
                port,
                ssl_context=tls if transport == "tls" else None,
                reuse_port=reuse_port,
            )
        except OSError as exc:
            await server.close()
            raise listen_failure(transport, host, port, exc) from None


async def serve_until_signalled(server: Serving, prefix: str, notes: Sequence[str] = ()) -> None:
    """Print one line per listener (then ``notes``), serve until SIGINT or SIGTERM, and print
    ``stopped``; every line starts with ``prefix`` (the worker's number, with ``--workers``)."""
    # Handlers first: whoever reads "listening on" may signal at once and expect a clean stop.
    close_on_signals(server.close)
    for listener in server.listeners:
        say(f"{prefix}listening on {listener}")
    for note in notes:
        say(prefix + note)
    await server.serve_forever()
    say(f"{prefix}stopped")


def close_on_signals(close: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``close()`` when SIGINT or SIGTERM arrives (call it from inside the event loop)."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, lambda: asyncio.ensure_future(close()))


# =========================================================================== workers


def _worker(worker_main: Callable[[int], None], index: int) -> None:
    """A worker process: ``worker_main(index)``, with a CLI error as one line and status 2."""
    try:
        worker_main(index)
    except LocalProtocolError as exc:
        main_error(f"worker {index}: {exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(count: int, worker_main: Callable[[int], None]) -> int:
    """Run ``worker_main(i)`` for i in 0..count-1, each in a forked process (they share their
    ports with SO_REUSEPORT); SIGINT or SIGTERM to this process is passed on to every worker, and
    so is the end of any one of them: the rest are stopped too rather than serve short-handed.
    Returns 0 when every worker exited with 0, 2 when one had a CLI error, else 1."""
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=_worker, args=(worker_main, i), daemon=True) for i in range(count)
    ]
    for process in workers:
        process.start()

    signalled: set[int] = set()

    def stop(signum: int = signal.SIGTERM, frame: object = None) -> None:
        # Once per worker: a second SIGTERM could land after its event loop has closed and
        # removed its handler, and kill a worker that was stopping cleanly.
        for process in workers:
            if (
                process.pid is not None
                and process.pid not in signalled
                and process.exitcode is None
            ):
                signalled.add(process.pid)
                os.kill(process.pid, signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    running = {process.sentinel: process for process in workers}
    while running:
        for sentinel in multiprocessing.connection.wait(list(running)):
            running.pop(cast(int, sentinel)).join()
        stop()
    codes = [process.exitcode for process in workers]
    return 0 if all(code == 0 for code in codes) else 2 if 2 in codes else 1


# ============================================================ addresses and TLS to serve on


def listen_address(text: str, default_port: int, what: str = "--listen") -> tuple[str, int]:
    """``ADDR[:PORT]`` to listen on: an IP literal (brackets allowed), port 0 for any free one;
    raises :class:`LocalProtocolError` naming ``what``."""
    try:
        host, port = split_host_port(text, default_port)
    except argparse.ArgumentTypeError as exc:
        raise LocalProtocolError(f"{what}: {exc}") from None
    assert port is not None
    return ip_literal(host, what), port


def ip_literal(text: str, what: str) -> str:
    """An IP address in canonical form (brackets allowed); raises :class:`LocalProtocolError`
    naming ``what``."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        raise LocalProtocolError(f"{what}: not an IP address: {text!r}") from None


def tls_context(files: list[str] | None, what: str = "--tls") -> ssl.SSLContext | None:
    """``--tls CERT KEY`` loaded, ``--tls`` alone a self-signed one, no ``--tls`` ``None``."""
    if files is None:
        return None
    if len(files) == 2:
        return load_server_tls(Path(files[0]), Path(files[1]), what=what)
    if files:
        raise LocalProtocolError(f"{what} takes CERT KEY, or nothing for a self-signed one")
    return self_signed_tls()
