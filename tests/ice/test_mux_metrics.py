"""The mux's metrics on a Prometheus page over real HTTP on loopback: on a page of their own
(:func:`stun.metrics_http.serve_metrics`) and on the TURN server's page next to its metrics (one
process running both), changing with the traffic routed and dropped."""

from __future__ import annotations

import asyncio
import socket

from ice import Connection
from ice.aio_mux import Mux, render_metrics
from stun.framing import frame_rfc4571
from stun.metrics_http import Exposition, labels, serve_metrics
from tests.net.loopback import run, until
from tests.turn.test_server_aio import samples, scrape, turn_server

from .test_mux import check
from .test_mux_aio import LITE, connect_ours, ours_client
from .test_mux_tcp_aio import connect_over_tcp, tcp_client

HOST = "127.0.0.1"


def test_the_mux_page_lists_its_counters_and_they_follow_the_traffic() -> None:
    async def main() -> None:
        async with Mux(HOST) as mux:
            server, address = await serve_metrics([mux.render_metrics])
            async with server:
                name = f'mux="{mux.local}"'
                status, body = await scrape(address)
                assert status == "HTTP/1.1 200 OK"
                before = samples(body)
                assert before[f"icestack_mux_sessions{{{name}}}"] == 0
                assert before[f"icestack_mux_datagrams_routed_total{{{name}}}"] == 0
                assert "# TYPE icestack_mux_tcp_connections_dropped_total counter" in body

                served = [Connection(False, mux=mux, config=LITE) for _ in range(2)]
                udp_client, tcp_only = ours_client(True), tcp_client(lite_server=True)
                await connect_ours(served[0], udp_client)
                await connect_over_tcp(served[1], tcp_only)
                # One datagram and one TCP connection that no session owns.
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stray:
                    stray.sendto(check("nobody"), (mux.local.host, mux.local.port))
                assert mux.tcp_local is not None
                loop = asyncio.get_running_loop()
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stray_tcp:
                    stray_tcp.setblocking(False)
                    await loop.sock_connect(stray_tcp, mux.tcp_local)
                    await loop.sock_sendall(stray_tcp, frame_rfc4571(check("nobody")))
                    dropped = 'reason="unknown_ufrag"'
                    await until(lambda: mux.metrics()["tcp_dropped_unknown_ufrag"] == 1)
                    await until(lambda: mux.metrics()["dropped_unknown_ufrag"] == 1)

                after = samples((await scrape(address))[1])
                assert after[f"icestack_mux_sessions{{{name}}}"] == 2
                assert after[f"icestack_mux_datagrams_routed_total{{{name}}}"] > 0
                assert after[f"icestack_mux_datagrams_dropped_total{{{name},{dropped}}}"] == 1
                assert after[f"icestack_mux_tcp_connections_accepted_total{{{name}}}"] == 2
                assert after[f"icestack_mux_tcp_connections_routed_total{{{name}}}"] == 1
                assert after[f"icestack_mux_tcp_connections_dropped_total{{{name},{dropped}}}"] == 1
                for connection in [*served, udp_client, tcp_only]:
                    await connection.close()
                after_close = samples((await scrape(address))[1])
                assert after_close[f"icestack_mux_sessions{{{name}}}"] == 0
                assert after_close[f"icestack_mux_transactions_waiting{{{name}}}"] == 0

    run(main())


def test_one_page_serves_the_turn_server_and_two_muxes() -> None:
    async def main() -> None:
        async with turn_server() as (turn, _), Mux(HOST) as first, Mux(HOST) as second:
            address = await turn.serve_metrics(sources=[lambda: render_metrics([first, second])])
            served = Connection(False, mux=second, config=LITE)
            await served.gather_candidates()
            status, body = await scrape(address)
            assert status == "HTTP/1.1 200 OK"
            values = samples(body)
            assert values["icestack_turn_allocations"] == 0
            assert values[f'icestack_mux_sessions{{mux="{first.local}"}}'] == 0
            assert values[f'icestack_mux_sessions{{mux="{second.local}"}}'] == 1
            # Each metric is declared once, however many muxes it has samples of.
            assert body.count("# TYPE icestack_mux_sessions gauge") == 1
            assert body.count("# TYPE icestack_turn_allocations gauge") == 1
            await served.close()

    run(main())


def test_a_source_that_raises_gets_a_500_and_the_page_serves_on() -> None:
    failing = [True]

    def source() -> str:
        if failing[0]:
            raise RuntimeError("a buggy source")
        return "up 1\n"

    async def main() -> None:
        server, address = await serve_metrics([source])
        async with server:
            status, _ = await scrape(address)
            assert status == "HTTP/1.1 500 Internal Server Error"
            failing[0] = False
            status, body = await scrape(address)
            assert (status, body) == ("HTTP/1.1 200 OK", "up 1\n")

    run(main())


def test_exposition_text_escapes_label_values() -> None:
    page = Exposition("x_")
    assert page.text() == ""
    page.metric("m", "gauge", "A metric.", {labels(path='a"b\\c\nd'): 1, "": 2})
    assert page.text() == (
        '# HELP x_m A metric.\n# TYPE x_m gauge\nx_m{path="a\\"b\\\\c\\nd"} 1\nx_m 2\n'
    )
