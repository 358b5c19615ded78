"""Our mDNS resolver or responder as a process, for the namespace tests against Avahi.

``python -m tests.net.mdns_peer COMMAND [--ipv4-only] [--block] ...`` works on every
non-loopback address of the namespace (``eth0``), and prints one line per result:

- ``publish ADDRESS...``: a :class:`ice.mdns.Responder` publishes each address and prints
  ``published ADDRESS NAME``, then ``ready``; it answers until stdin closes, then withdraws the
  names and prints ``closed``.
- ``resolve NAME... [--timeout S]``: a :class:`ice.mdns.Resolver` resolves each name and prints
  ``resolved NAME ADDRESS`` or ``unresolvable NAME REASON``.
- ``listen NAME [--timeout S]``: a resolver that never queries: it prints ``listening``, then
  ``cached NAME ADDRESS`` once an announcement of the name reached its cache, or ``not-cached
  NAME`` after the timeout.

``--ipv4-only`` uses the IPv4 addresses only (a browser's querier); ``--block`` first holds port
5353 without address sharing (IPv4 and IPv6), as a process that does not share the port would,
and prints ``blocked``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from contextlib import ExitStack

from ice.aio import interface_addresses
from ice.mdns import MDNS_PORT, InterfaceAddress, Resolver, Responder

#: The bound on the whole run of a peer process.
RUN_TIMEOUT = 30.0
POLL = 0.01


def say(*words: str) -> None:
    print(*words, flush=True)


async def publish(interfaces: list[InterfaceAddress], addresses: list[str]) -> None:
    responder = Responder(interfaces)
    try:
        for address in addresses:
            say("published", address, responder.publish(address))
        say("ready")
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        responder.close()
    say("closed")


async def resolve(interfaces: list[InterfaceAddress], names: list[str], timeout: float) -> None:
    resolver = Resolver(interfaces)
    try:
        for name in names:
            try:
                say("resolved", name, await resolver.resolve(name, timeout))
            except (OSError, TimeoutError) as exc:
                say("unresolvable", name, str(exc))
    finally:
        resolver.close()


async def listen(interfaces: list[InterfaceAddress], name: str, timeout: float) -> None:
    resolver = Resolver(interfaces)
    try:
        say("listening")
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            address = resolver.cached(name)
            if address is not None:
                say("cached", name, address)
                return
            await asyncio.sleep(POLL)
        say("not-cached", name)
    finally:
        resolver.close()


def block(stack: ExitStack) -> None:
    """Hold port 5353 without SO_REUSEADDR/SO_REUSEPORT, so that nobody else can bind it."""
    for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = stack.enter_context(socket.socket(family, socket.SOCK_DGRAM))
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, MDNS_PORT))
    say("blocked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["publish", "resolve", "listen"])
    parser.add_argument("arguments", nargs="+", help="addresses or names")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--ipv4-only", action="store_true")
    parser.add_argument("--block", action="store_true")
    options = parser.parse_args()
    interfaces = interface_addresses(use_ipv6=not options.ipv4_only)
    with ExitStack() as stack:
        if options.block:
            block(stack)
        if options.command == "publish":
            work = publish(interfaces, options.arguments)
        elif options.command == "resolve":
            work = resolve(interfaces, options.arguments, options.timeout)
        else:
            work = listen(interfaces, options.arguments[0], options.timeout)
        asyncio.run(asyncio.wait_for(work, RUN_TIMEOUT))


if __name__ == "__main__":
    main()
