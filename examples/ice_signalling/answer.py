"""The answering side of ICE with your own signalling: wait for an offer over HTTP, answer it,
connect, then echo every datagram back until the offerer says ``bye``.

    python examples/ice_signalling/answer.py --listen 127.0.0.1:8765 --interface 127.0.0.1

Start it first (or at the same time as ``offer.py``, which retries until this side listens).
Leave out ``--interface`` to gather on every interface, and run the two scripts on two machines
with ``--listen 0.0.0.0:8765`` here and the machine's address in the offerer's URL.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import signalling  # beside this script

from ice import IceConnectionError


async def main(args: argparse.Namespace) -> int:
    host, _, port = args.listen.rpartition(":")
    async with signalling.open_connection(args, controlling=False) as connection:
        await connection.gather_candidates()

        async def respond(offer: signalling.Description) -> signalling.Description:
            await signalling.apply(connection, offer)
            return signalling.describe(connection)

        await signalling.answer_one_offer(host.strip("[]"), int(port), respond, args.timeout)
        await asyncio.wait_for(connection.connect(), args.timeout)
        pair = connection.selected_pair()
        assert pair is not None
        print(f"connected: {pair.local.type} {pair.local.address} -> {pair.remote.address}")
        echoed = 0
        while True:
            data = await asyncio.wait_for(connection.recv(), args.timeout)
            await connection.send(data)
            echoed += 1
            if data == b"bye":
                break
        print(f"echoed {echoed} datagrams")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="ICE answerer with HTTP signalling (an example)")
    parser.add_argument("--listen", default="127.0.0.1:8765", help="HOST:PORT for the offer")
    signalling.add_connection_arguments(parser)
    arguments = parser.parse_args()
    try:
        sys.exit(asyncio.run(main(arguments)))
    except (TimeoutError, IceConnectionError) as exc:
        sys.exit(f"answer.py: {exc or 'timed out'}")
