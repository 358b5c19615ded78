"""Metrics in the Prometheus text exposition format (0.0.4), and the small HTTP listener that
serves them — one page for everything a process runs (a TURN server, an ICE mux, both).

A *source* is a callable returning exposition text (``# HELP``/``# TYPE`` lines and samples, each
line ending in a newline); :class:`Exposition` builds such text. :func:`serve_metrics` answers any
``GET`` (Prometheus scrapes ``/metrics``) with the sources' texts one after the other, rendered
at the moment of the request. The listener is bounded: :data:`MAX_CONNECTIONS` connections at a
time (more are closed as they arrive), a request line and headers of at most
:data:`REQUEST_LIMIT` bytes, :data:`TIMEOUT` seconds to send them and to take the answer.
Loopback by default: metrics tell a lot about a server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping

from .address import Address, make_address
from .aio_sockets import _Closing

__all__ = [
    "MAX_CONNECTIONS",
    "REQUEST_LIMIT",
    "TIMEOUT",
    "Exposition",
    "MetricsServer",
    "MetricsSource",
    "labels",
    "serve_metrics",
]

_log = logging.getLogger("icestack.stun")

#: What renders a part of the page.
MetricsSource = Callable[[], str]

#: What a metrics request may hold (request line and headers).
REQUEST_LIMIT = 8192
#: How long a request may take to arrive, and the answer to be taken (seconds).
TIMEOUT = 5.0
#: Metrics connections served at once.
MAX_CONNECTIONS = 8


class Exposition:
    """Exposition text under one name prefix: ``metric(...)`` per metric, then :meth:`text`."""

    __slots__ = ("lines", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def metric(
        self, name: str, kind: str, help_text: str, samples: Mapping[str, int | float]
    ) -> None:
        """One metric: ``kind`` ``"gauge"`` or ``"counter"``, ``samples`` by their label text
        (``""``, or ``'{reason="silent"}'``: :func:`labels`)."""
        full = self.prefix + name
        self.lines.append(f"# HELP {full} {help_text}")
        self.lines.append(f"# TYPE {full} {kind}")
        self.lines.extend(f"{full}{sample} {value}" for sample, value in samples.items())

    def text(self) -> str:
        return "\n".join(self.lines) + "\n" if self.lines else ""


def labels(**values: str) -> str:
    """Label text for a sample, values escaped as the format asks (backslash, quote,
    newline)."""
    if not values:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in values.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer(_Closing):
    """An HTTP listener serving its sources' metrics (module docstring); :meth:`add` puts more
    on the page."""

    def __init__(self, sources: Iterable[MetricsSource] = ()) -> None:
        self.sources: list[MetricsSource] = list(sources)
        self._servers: list[asyncio.Server] = []
        self._clients = 0

    def add(self, source: MetricsSource) -> None:
        """Put ``source``'s metrics on the page too."""
        self.sources.append(source)

    def render(self) -> str:
        """The page: every source's text, in order."""
        return "".join(source() for source in self.sources)

    async def listen(self, host: str = "127.0.0.1", port: int = 0) -> Address:
        """Serve on ``(host, port)`` (0: an ephemeral port); return the address."""
        server = await asyncio.start_server(self._serve, host, port, limit=REQUEST_LIMIT)
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        address = make_address(sockname[0], sockname[1])
        _log.info("metrics on http %s", address)
        return address

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= MAX_CONNECTIONS:
            writer.close()
            return
        self._clients += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            if head.split(b" ", 1)[0] == b"GET":
                status, body = self._page()
            else:
                status, body = "405 Method Not Allowed", "GET only\n"
            payload = body.encode()
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await asyncio.wait_for(writer.drain(), TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            self._clients -= 1
            writer.close()

    def _page(self) -> tuple[str, str]:
        """The page, or a 500 when a source raised (a bug of that source: logged, and the
        listener serves on)."""
        try:
            return "200 OK", self.render()
        except Exception:
            _log.exception("a metrics source raised")
            return "500 Internal Server Error", "a metrics source failed; see the log\n"

    async def close(self) -> None:
        """Stop listening (a scrape being answered ends on its own, within :data:`TIMEOUT`)."""
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()


async def serve_metrics(
    sources: Iterable[MetricsSource], host: str = "127.0.0.1", port: int = 0
) -> tuple[MetricsServer, Address]:
    """Serve ``sources``' metrics on one page at ``(host, port)``: the server (close it when
    done) and its address."""
    server = MetricsServer(sources)
    return server, await server.listen(host, port)
