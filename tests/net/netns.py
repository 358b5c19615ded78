"""A throw-away network of Linux network namespaces: two hosts behind NATs and a public STUN host.

Built with ``ip`` and ``iptables`` only, for tests that run real processes across real NATs::

    pub        br0: 203.0.113.1/24, 2001:db8:ffff::1/64   (the STUN server's host; the "internet")
     ├── nat-a  wan0: 203.0.113.2, 2001:db8:ffff::2   lan0: 198.51.100.1/26,  2001:db8:a::1/64
     │    └── host-a  eth0: 198.51.100.2/26,  2001:db8:a::2/64
     └── nat-b  wan0: 203.0.113.3, 2001:db8:ffff::3   lan0: 198.51.100.65/26, 2001:db8:b::1/64
          └── host-b  eth0: 198.51.100.66/26, 2001:db8:b::2/64

IPv4 leaves each LAN through ``iptables -t nat ... MASQUERADE`` on its router; ``pub`` does not
forward IPv4, so a host can reach the other LAN only through the other NAT's public address. Like a
home router, each NAT drops unsolicited packets to its WAN address (INPUT, ctstate NEW). Without
that, Linux answers them with ICMP port unreachable *and keeps a conntrack entry* for them: when a
peer's check reaches the NAT before the host's own first packet to that peer, the host's packet
then clashes with the entry and MASQUERADE gives it another port, and the stale entry swallows the
peer's later checks, so hole punching deadlocks (seen with two aioice agents). Dropped before
conntrack confirms them, such packets leave no entry. IPv6
is routed without NAT66: each router sends its default route to ``pub``, which routes both LAN
prefixes back. Every address is from a documentation range (RFC 5737, RFC 3849). The namespaces
are linked only to each other (veth pairs created inside them, never in the machine's own
namespace), so no packet can leave for a real network.

Namespace names are unique per run (``isk<pid>-<n>-<role>``); leaving :func:`network` ends every
process started in it (by PID) and deletes every namespace, also when setup or the test failed.
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import IO, Final, Self

import pytest

#: The namespaces' roles, in the order they are created.
ROLES: Final = ("pub", "nat-a", "nat-b", "host-a", "host-b")

STUN_IPV4: Final = "203.0.113.1"
STUN_IPV6: Final = "2001:db8:ffff::1"
NAT_A_WAN: Final = "203.0.113.2"
NAT_B_WAN: Final = "203.0.113.3"
HOST_A_IPV4: Final = "198.51.100.2"
HOST_B_IPV4: Final = "198.51.100.66"
HOST_A_IPV6: Final = "2001:db8:a::2"
HOST_B_IPV6: Final = "2001:db8:b::2"

#: How long one ``ip``/``iptables`` command may take while building the network.
COMMAND_TIMEOUT: Final = 10.0
#: How long a process gets to exit after SIGTERM before SIGKILL.
STOP_GRACE: Final = 3.0

REPO_ROOT: Final = Path(__file__).resolve().parents[2]


@dataclass(frozen=True, kw_only=True)
class _Site:
    """One NAT router and the host behind it."""

    router: str
    host: str
    wan_ipv4: str
    wan_ipv6: str
    lan_ipv4: str  # the router's LAN address: the host's gateway
    lan_ipv6: str
    host_ipv4: str
    host_ipv6: str
    lan_prefix_ipv4: str
    lan_prefix_ipv6: str
    pub_port: str  # the router's port on pub's bridge


_SITES: Final = (
    _Site(
        router="nat-a", host="host-a", wan_ipv4=NAT_A_WAN, wan_ipv6="2001:db8:ffff::2",
        lan_ipv4="198.51.100.1", lan_ipv6="2001:db8:a::1",
        host_ipv4=HOST_A_IPV4, host_ipv6=HOST_A_IPV6,
        lan_prefix_ipv4="198.51.100.0/26", lan_prefix_ipv6="2001:db8:a::/64", pub_port="to-a",
    ),
    _Site(
        router="nat-b", host="host-b", wan_ipv4=NAT_B_WAN, wan_ipv6="2001:db8:ffff::3",
        lan_ipv4="198.51.100.65", lan_ipv6="2001:db8:b::1",
        host_ipv4=HOST_B_IPV4, host_ipv6=HOST_B_IPV6,
        lan_prefix_ipv4="198.51.100.64/26", lan_prefix_ipv6="2001:db8:b::/64", pub_port="to-b",
    ),
)

_networks = count()


class NetworkCommandError(RuntimeError):
    """An ``ip``/``iptables`` command failed while building the network."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be built here (not root, tools missing), or None if they may be."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "building network namespaces needs root"
    for tool in ("ip", "iptables", "sysctl"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed"
    return None


def _run(argv: Sequence[str]) -> None:
    """Run one setup command; raise NetworkCommandError with its stderr if it fails."""
    try:
        subprocess.run(
            argv, check=True, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode(errors="replace").strip()
        raise NetworkCommandError(f"{' '.join(argv)}: {message}") from exc
    except subprocess.TimeoutExpired as exc:
        raise NetworkCommandError(f"{' '.join(argv)}: no answer in {COMMAND_TIMEOUT} s") from exc


class NamespaceProcess:
    """A process running inside a namespace, with bounded line reads from its stdout; as a
    context manager, stopped on exit (its network stops it on teardown in any case).

    ``ip netns exec`` enters the namespace and then execs the command, so the PID is the
    command's own; :meth:`stop` signals exactly that PID.
    """

    def __init__(self, name: str, argv: Sequence[str], namespace: str) -> None:
        self.name = name
        self.argv = list(argv)
        self._popen = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *argv],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.pid = self._popen.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert self._popen.stdout is not None and self._popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump_stdout, args=(self._popen.stdout,)),
            threading.Thread(target=self._pump, args=(self._popen.stderr, self._stderr.append)),
        ]
        for reader in self._readers:
            reader.daemon = True
            reader.start()

    @staticmethod
    def _pump(stream: IO[bytes], sink: Callable[[str], None]) -> None:
        """Copy ``stream``'s lines into ``sink`` until the process closes it, then close it here:
        closed by :meth:`stop` while this thread still read it, it raised in this thread."""
        with stream:
            for raw in stream:
                sink(raw.decode(errors="replace").rstrip("\n"))

    def _pump_stdout(self, stream: IO[bytes]) -> None:
        """Queue stdout's lines, then None for its end."""
        self._pump(stream, self._lines.put)
        self._lines.put(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr so far."""
        return "\n".join(self._stderr)

    def describe(self) -> str:
        """The process, its exit status and its stderr, for assertion messages."""
        status = self._popen.poll()
        return f"{self.name} (pid {self.pid}, exit {status}): {self.argv}\n{self.stderr}"

    def read_line(self, timeout: float) -> str:
        """The next line of stdout; AssertionError on timeout or end of output."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output line in {timeout} s from {self.describe()}") from None
        if line is None:
            self._lines.put(None)
            raise AssertionError(f"stdout closed before a line from {self.describe()}")
        return line

    def read_until(self, prefix: str, timeout: float) -> str:
        """Skip stdout lines until one starts with ``prefix``; return it."""
        while True:
            line = self.read_line(timeout)
            if line.startswith(prefix):
                return line

    def remaining_output(self) -> list[str]:
        """Every stdout line not read yet (call after the process has exited)."""
        for reader in self._readers:
            reader.join(timeout=STOP_GRACE)
        lines: list[str] = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return lines
            if line is None:
                self._lines.put(None)
                return lines
            lines.append(line)

    def write_line(self, line: str) -> None:
        """Write one line to stdin."""
        assert self._popen.stdin is not None
        self._popen.stdin.write(line.encode() + b"\n")
        self._popen.stdin.flush()

    def wait(self, timeout: float) -> int:
        """The exit status; AssertionError if the process is still running after ``timeout``."""
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout} s: {self.describe()}") from None

    def stop(self) -> None:
        """End the process if it still runs: SIGTERM to its PID, SIGKILL after a grace period."""
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait(timeout=STOP_GRACE)
        if self._popen.stdin is not None:
            self._popen.stdin.close()
        # stdout and stderr are closed by their readers at their end (the process's, or that of
        # a child of it that held them open a little longer)
        for reader in self._readers:
            reader.join(timeout=STOP_GRACE)


@dataclass(kw_only=True)
class Network:
    """A built network: namespace names by role, and the processes started in it."""

    prefix: str
    ipv4: bool
    ipv6: bool
    roles: tuple[str, ...] = ROLES
    _processes: list[NamespaceProcess] = field(default_factory=list)

    def namespace(self, role: str) -> str:
        """The namespace name of ``role`` (one of :attr:`roles`)."""
        if role not in self.roles:
            raise ValueError(f"no role {role!r}; roles are {self.roles}")
        return f"{self.prefix}{role}"

    def run(self, role: str, *argv: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run a command to completion inside ``role``'s namespace; return its stdout."""
        completed = subprocess.run(
            ["ip", "netns", "exec", self.namespace(role), *argv],
            check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
            cwd=REPO_ROOT,
        )
        return completed.stdout.decode()

    def start(self, role: str, *argv: str, name: str | None = None) -> NamespaceProcess:
        """Start a long-running command inside ``role``'s namespace; it is stopped on teardown."""
        process = NamespaceProcess(name or role, argv, self.namespace(role))
        self._processes.append(process)
        return process

    def start_python(self, role: str, *argv: str, name: str | None = None) -> NamespaceProcess:
        """Start this interpreter (``python ARGV``) in ``role``'s namespace, in the repository."""
        return self.start(role, sys.executable, *argv, name=name)

    def stop_processes(self) -> None:
        """Stop every process started in this network, each by its PID."""
        while self._processes:
            self._processes.pop().stop()


@contextmanager
def network(*, ipv4: bool = True, ipv6: bool = True) -> Iterator[Network]:
    """Build the network (either family or both); tear everything down on exit.

    Skips the calling test (pytest.skip with the reason) when namespaces cannot be built here.
    """
    with _namespaces(ROLES, ipv4=ipv4, ipv6=ipv6) as net:
        _build(net)
        yield net


#: The two ends of :func:`link` and their addresses (RFC 5737, RFC 3849).
LINK_ROLES: Final = ("left", "right")
LINK_IPV4: Final = {"left": "192.0.2.1", "right": "192.0.2.2"}
LINK_IPV6: Final = {"left": "2001:db8::1", "right": "2001:db8::2"}


@contextmanager
def link(*, ipv6: bool = True) -> Iterator[Network]:
    """Two namespaces, ``left`` and ``right``, whose ``eth0`` are the two ends of one veth pair:
    a multicast-capable link with :data:`LINK_IPV4` (and :data:`LINK_IPV6`) addresses and no
    route anywhere else. Torn down on exit; skips the calling test where it cannot be built."""
    with _namespaces(LINK_ROLES, ipv4=True, ipv6=ipv6) as net:
        left, right = LINK_ROLES
        _run(["ip", "-n", net.namespace(left), "link", "add", "eth0", "type", "veth",
              "peer", "name", "eth0", "netns", net.namespace(right)])
        for role in LINK_ROLES:
            _disable_dad(net, role)
            _run(["ip", "-n", net.namespace(role), "link", "set", "lo", "up"])
            _run(["ip", "-n", net.namespace(role), "address", "add",
                  f"{LINK_IPV4[role]}/24", "dev", "eth0"])
            if ipv6:
                _run(["ip", "-n", net.namespace(role), "address", "add",
                      f"{LINK_IPV6[role]}/64", "dev", "eth0"])
            _run(["ip", "-n", net.namespace(role), "link", "set", "eth0", "up"])
        yield net


@contextmanager
def solo(*, loopback: bool = True) -> Iterator[Network]:
    """One namespace, role ``solo``, with no interface but its loopback — up, or left down with
    ``loopback=False`` — and so no route anywhere: a host cut off from every network. Torn down
    on exit; skips the calling test where it cannot be built."""
    with _namespaces(("solo",), ipv4=True, ipv6=True) as net:
        if loopback:
            _run(["ip", "-n", net.namespace("solo"), "link", "set", "lo", "up"])
        yield net


@contextmanager
def resolver(net: Network, role: str, nameserver: str) -> Iterator[None]:
    """Inside ``role``'s namespace, names resolve through ``nameserver`` only: ``ip netns exec``
    mounts ``/etc/netns/NAMESPACE/resolv.conf`` over ``/etc/resolv.conf`` for what it runs.
    The file and its folder are removed on exit."""
    folder = Path("/etc/netns") / net.namespace(role)
    made_parent = not folder.parent.exists()
    folder.mkdir(parents=True)
    try:
        (folder / "resolv.conf").write_text(f"nameserver {nameserver}\n")
        yield
    finally:
        (folder / "resolv.conf").unlink(missing_ok=True)
        folder.rmdir()
        if made_parent:
            # Another run's namespace may have put its own folder here meanwhile: leave it.
            with suppress(OSError):
                folder.parent.rmdir()


@contextmanager
def _namespaces(roles: tuple[str, ...], *, ipv4: bool, ipv6: bool) -> Iterator[Network]:
    """Create one namespace per role; on exit stop their processes and delete them."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    if not (ipv4 or ipv6):
        raise ValueError("a network needs IPv4, IPv6 or both")
    net = Network(
        prefix=f"isk{os.getpid()}-{next(_networks)}-", ipv4=ipv4, ipv6=ipv6, roles=roles
    )
    with ExitStack() as cleanup:
        for role in roles:
            try:
                _run(["ip", "netns", "add", net.namespace(role)])
            except NetworkCommandError as exc:
                pytest.skip(f"cannot create a network namespace here: {exc}")
            cleanup.callback(_run, ["ip", "netns", "delete", net.namespace(role)])
        cleanup.callback(net.stop_processes)
        yield net


def _disable_dad(net: Network, role: str) -> None:
    """IPv6 on or off as the network asks, with no duplicate address detection: every address
    is usable at once (no tentative phase during which the first packets would stall)."""
    settings = [
        f"net.ipv6.conf.{scope}.{key}={value}"
        for scope in ("all", "default")
        for key, value in (("disable_ipv6", int(not net.ipv6)), ("accept_dad", 0))
    ]
    _run(["ip", "netns", "exec", net.namespace(role), "sysctl", "-qw", *settings])


def _build(net: Network) -> None:
    """Links, addresses, routes, forwarding and NAT rules (see the module docstring)."""

    def ip(role: str, *args: str) -> None:
        _run(["ip", "-n", net.namespace(role), *args])

    def sysctl(role: str, *settings: str) -> None:
        _run(["ip", "netns", "exec", net.namespace(role), "sysctl", "-qw", *settings])

    routers = {site.router for site in _SITES}
    for role in ROLES:
        _disable_dad(net, role)
        settings = []
        if role in routers and net.ipv4:
            settings.append("net.ipv4.ip_forward=1")
        if (role in routers or role == "pub") and net.ipv6:
            settings.append("net.ipv6.conf.all.forwarding=1")
        if settings:
            sysctl(role, *settings)
        ip(role, "link", "set", "lo", "up")

    ip("pub", "link", "add", "br0", "type", "bridge")
    ip("pub", "link", "set", "br0", "up")
    if net.ipv4:
        ip("pub", "address", "add", f"{STUN_IPV4}/24", "dev", "br0")
    if net.ipv6:
        ip("pub", "address", "add", f"{STUN_IPV6}/64", "dev", "br0")

    for site in _SITES:
        ip(site.router, "link", "add", "wan0", "type", "veth",
           "peer", "name", site.pub_port, "netns", net.namespace("pub"))
        ip("pub", "link", "set", site.pub_port, "master", "br0", "up")
        ip(site.router, "link", "add", "lan0", "type", "veth",
           "peer", "name", "eth0", "netns", net.namespace(site.host))
        for role, device in ((site.router, "wan0"), (site.router, "lan0"), (site.host, "eth0")):
            ip(role, "link", "set", device, "up")
        if net.ipv4:
            ip(site.router, "address", "add", f"{site.wan_ipv4}/24", "dev", "wan0")
            ip(site.router, "address", "add", f"{site.lan_ipv4}/26", "dev", "lan0")
            ip(site.router, "route", "add", "default", "via", STUN_IPV4)
            ip(site.host, "address", "add", f"{site.host_ipv4}/26", "dev", "eth0")
            ip(site.host, "route", "add", "default", "via", site.lan_ipv4)
            iptables = ["ip", "netns", "exec", net.namespace(site.router), "iptables"]
            try:
                _run([
                    *iptables, "-t", "nat", "-A", "POSTROUTING",
                    "-s", site.lan_prefix_ipv4, "-o", "wan0", "-j", "MASQUERADE",
                ])
                _run([
                    *iptables, "-A", "INPUT", "-i", "wan0",
                    "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP",
                ])
            except NetworkCommandError as exc:
                pytest.skip(f"iptables NAT is not available in a namespace here: {exc}")
        if net.ipv6:
            ip(site.router, "address", "add", f"{site.wan_ipv6}/64", "dev", "wan0")
            ip(site.router, "address", "add", f"{site.lan_ipv6}/64", "dev", "lan0")
            ip(site.router, "-6", "route", "add", "default", "via", STUN_IPV6)
            ip(site.host, "address", "add", f"{site.host_ipv6}/64", "dev", "eth0")
            ip(site.host, "-6", "route", "add", "default", "via", site.lan_ipv6)
            ip("pub", "-6", "route", "add", site.lan_prefix_ipv6, "via", site.wan_ipv6)
