"""The offering side of ICE with your own signalling: gather, send the offer over HTTP, take the
answer, connect, then send a few datagrams and check that each comes back.

    python examples/ice_signalling/offer.py http://127.0.0.1:8765/offer --interface 127.0.0.1

The offerer is the controlling agent (RFC 8445 §6.1.1): it nominates the pair both sides use.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import signalling  # beside this script

from ice import IceConnectionError


async def main(args: argparse.Namespace) -> int:
    async with signalling.open_connection(args, controlling=True) as connection:
        await connection.gather_candidates()
        answer = await signalling.exchange(args.url, signalling.describe(connection), args.timeout)
        await signalling.apply(connection, answer)
        await asyncio.wait_for(connection.connect(), args.timeout)
        pair = connection.selected_pair()
        assert pair is not None
        print(f"connected: {pair.local.type} {pair.local.address} -> {pair.remote.address}")
        for number in range(args.count):
            message = f"message {number}".encode()
            await connection.send(message)
            echo = await asyncio.wait_for(connection.recv(), args.timeout)
            if echo != message:
                print(f"sent {message!r}, got {echo!r} back", file=sys.stderr)
                return 1
            print(f"echoed: {echo.decode()}")
        await connection.send(b"bye")
        await asyncio.wait_for(connection.recv(), args.timeout)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="ICE offerer with HTTP signalling (an example)")
    parser.add_argument("url", help="the answerer's offer URL, e.g. http://127.0.0.1:8765/offer")
    parser.add_argument("--count", type=int, default=3, help="datagrams to echo (3)")
    signalling.add_connection_arguments(parser)
    arguments = parser.parse_args()
    try:
        sys.exit(asyncio.run(main(arguments)))
    except (TimeoutError, IceConnectionError, signalling.SignallingError) as exc:
        sys.exit(f"offer.py: {exc or 'timed out'}")
