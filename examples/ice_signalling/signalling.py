"""What the two scripts of this example share: the session description they exchange, the one
HTTP request that carries it, and the ICE connection both sides open.

The signalling is deliberately the smallest thing that works: the answerer listens for one
``POST /offer`` on a local HTTP port; the offerer sends its description (ufrag, pwd and
candidates, RFC 8839 §5) as JSON and reads the answerer's description in the response. ICE does not
care how descriptions travel — a WebSocket, a chat message, a QR code would do — only that each side
gets the other's. Only the standard library is used (``asyncio`` streams and ``json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from ice import Candidate, Connection, IceError

#: The description one side signals: ``{"ufrag": ..., "pwd": ..., "candidates": [...]}``.
Description = dict[str, Any]

#: The largest request or response body either side accepts, in bytes.
MAX_BODY = 64 * 1024


# ------------------------------------------------------------------------ the ICE side


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    """The options both scripts take: where to gather, an optional STUN server, how long to wait."""
    parser.add_argument(
        "--interface",
        action="append",
        metavar="ADDRESS_OR_NAME",
        help="gather only on this address or interface (repeatable); 127.0.0.1 for one machine",
    )
    parser.add_argument("--stun", metavar="HOST:PORT", help="a STUN server for srflx candidates")
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="give up after this many seconds (30)"
    )


def open_connection(args: argparse.Namespace, *, controlling: bool) -> Connection:
    """An ICE connection as the options ask; loopback is used only when named."""
    stun_servers = []
    if args.stun:
        host, _, port = args.stun.rpartition(":")
        stun_servers.append((host.strip("[]"), int(port)))
    interfaces = args.interface
    loopback = bool(interfaces) and any(name in ("127.0.0.1", "::1", "lo") for name in interfaces)
    return Connection(
        controlling=controlling,
        stun_servers=stun_servers,
        interfaces=interfaces,
        include_loopback=loopback,
    )


def describe(connection: Connection) -> Description:
    """Our side of the exchange, once candidates are gathered."""
    return {
        "ufrag": connection.local_username,
        "pwd": connection.local_password,
        "candidates": ["candidate:" + c.to_sdp() for c in connection.local_candidates],
    }


async def apply(connection: Connection, description: Description) -> None:
    """Take the peer's description: its credentials, its candidates, then end-of-candidates."""
    connection.set_remote_credentials(description["ufrag"], description["pwd"])
    for line in description["candidates"]:
        await connection.add_remote_candidate(Candidate.from_sdp(line))
    await connection.add_remote_candidate(None)


# ------------------------------------------------------------------------ the HTTP side


class SignallingError(Exception):
    """The exchange failed: the message says what happened."""


async def _read_message(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    """One HTTP/1.1 message: its first line and its body (Content-Length framing only)."""
    first = (await reader.readline()).decode("latin-1").strip()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if not 0 <= length <= MAX_BODY:
        raise SignallingError(f"a body of {length} bytes is not accepted")
    return first, await reader.readexactly(length)


def _write_message(writer: asyncio.StreamWriter, first: str, body: bytes, host: str = "") -> None:
    headers = [first, "Content-Type: application/json", f"Content-Length: {len(body)}"]
    if host:
        headers.append(f"Host: {host}")
    headers.append("Connection: close")
    writer.write(("\r\n".join(headers) + "\r\n\r\n").encode("latin-1") + body)


async def exchange(url: str, offer: Description, timeout: float) -> Description:
    """POST our description to the answerer at ``url`` and return its answer.

    The answerer may not be listening yet (both scripts are often started together), so a refused
    connection is retried until ``timeout``.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SignallingError(f"{url!r} is not an http:// URL")
    port = parts.port or 80
    async with asyncio.timeout(timeout):
        while True:
            try:
                reader, writer = await asyncio.open_connection(parts.hostname, port)
                break
            except ConnectionRefusedError:
                await asyncio.sleep(0.2)
        try:
            body = json.dumps(offer).encode()
            _write_message(writer, f"POST {parts.path or '/'} HTTP/1.1", body, parts.netloc)
            await writer.drain()
            status, answer = await _read_message(reader)
        finally:
            writer.close()
    if status.split(" ")[1:2] != ["200"]:
        raise SignallingError(f"the answerer said {status!r}: {answer[:200]!r}")
    result: Description = json.loads(answer)
    return result


async def answer_one_offer(
    host: str,
    port: int,
    respond: Callable[[Description], Awaitable[Description]],
    timeout: float,
    on_listening: Callable[[str], None] = print,
) -> None:
    """Listen on ``host:port`` for one ``POST /offer``, answer it with ``respond(offer)``, stop.

    A request that is not a well-formed offer gets a 400 and the wait goes on, until ``timeout``.
    """
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            first, body = await asyncio.wait_for(_read_message(reader), 10.0)
            if not first.startswith("POST /offer "):
                raise SignallingError("expected POST /offer")
            offer = json.loads(body)
            reply, status = json.dumps(await respond(offer)).encode(), "200 OK"
        except (SignallingError, IceError, ValueError, KeyError, TypeError) as exc:
            reply, status = json.dumps({"error": str(exc)}).encode(), "400 Bad Request"
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        _write_message(writer, f"HTTP/1.1 {status}", reply)
        await writer.drain()
        writer.close()
        if status.startswith("200") and not done.done():
            done.set_result(None)

    server = await asyncio.start_server(handle, host, port)
    bound_port = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    on_listening(f"waiting for an offer on http://{shown}:{bound_port}/offer")
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        server.close()
        await server.wait_closed()
