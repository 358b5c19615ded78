"""Where relayed transport addresses come from: the server core owns no sockets, so it asks.

:class:`RelayAllocator` is what the core needs: the asyncio ``turn.TurnServer`` implements it with
UDP sockets, the simulated network and the tests with :class:`PortRangeAllocator`, in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from stun import Address, AddressFamily, LocalProtocolError, RandomSource, make_address

#: The port range RFC 8656 §7.2 says relayed addresses SHOULD come from (never 0-1023).
DYNAMIC_PORTS = range(49152, 65536)


class RelayAllocator(Protocol):
    """Hands out and takes back relayed transport addresses (RFC 8656 §7.2).

    ``allocate_relay`` binds a fresh address of ``family`` and returns it, or ``None`` when it
    cannot (no such family, no free port). With ``even_port``, the port is even (EVEN-PORT,
    §18.7). With ``reserve_next`` (EVEN-PORT with the R bit), the port N is even *and* N + 1 is
    bound as well, on the same IP address: the core owns ``Address(host, N + 1)`` from then on,
    hands it to a later Allocate that presents the RESERVATION-TOKEN, and releases it with
    ``release_relay`` if no one claims it in time.

    ``release_relay`` frees an address the allocator handed out (both halves of a pair are
    released separately). After it returns, no datagram from that address reaches the core.
    """

    def allocate_relay(
        self, family: AddressFamily, *, even_port: bool, reserve_next: bool
    ) -> Address | None: ...

    def release_relay(self, address: Address) -> None: ...


class PortRangeAllocator:
    """A :class:`RelayAllocator` in memory: ports from ``ports`` on one host per family.

    Ports are taken lowest first, or from a random starting point when ``rng`` is given (a
    real server should not make its relayed ports predictable, RFC 8656 §7.2).
    """

    def __init__(
        self,
        hosts: Mapping[AddressFamily, str],
        ports: range = DYNAMIC_PORTS,
        *,
        rng: RandomSource | None = None,
    ) -> None:
        if not ports or ports.step != 1 or ports.start < 1 or ports.stop > 0x10000:
            raise LocalProtocolError("ports must be a non-empty range of ports, step 1")
        self.hosts = {family: make_address(host, 0).host for family, host in hosts.items()}
        self.ports = ports
        self.rng = rng
        #: Every address handed out and not yet released.
        self.in_use: set[Address] = set()

    def allocate_relay(
        self, family: AddressFamily, *, even_port: bool = False, reserve_next: bool = False
    ) -> Address | None:
        """The first free address that fits, scanning from the start (or a random point)."""
        host = self.hosts.get(family)
        if host is None:
            return None
        count = len(self.ports)
        start = self.rng.getrandbits(32) % count if self.rng is not None else 0
        for step in range(count):
            port = self.ports[(start + step) % count]
            if (even_port or reserve_next) and port % 2:
                continue
            wanted = [Address(host, port)]
            if reserve_next:
                if port + 1 not in self.ports:
                    continue
                wanted.append(Address(host, port + 1))
            if not self.in_use.intersection(wanted):
                self.in_use.update(wanted)
                return wanted[0]
        return None

    def release_relay(self, address: Address) -> None:
        """Free ``address``; releasing one not in use is a bug of the caller."""
        try:
            self.in_use.remove(address)
        except KeyError:
            raise LocalProtocolError(f"{address} is not allocated") from None
