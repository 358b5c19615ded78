"""ice.mdns against an independent implementation: Avahi (Debian's avahi-daemon and avahi-utils)
and dig (bind9-dnsutils), on a veth link between two network namespaces the test creates.

Avahi runs in ``right`` as root with no privilege dropping, no chroot, a configuration file in a
temporary folder and a private D-Bus (``dbus-daemon`` on a socket in that folder), which its
command-line tools (avahi-publish, avahi-resolve) reach through ``DBUS_SYSTEM_BUS_ADDRESS``. The
daemon gets a private ``/run`` (``ip netns exec`` gives every command its own mount namespace), so
its PID file clashes with no other Avahi on the machine. Our side runs as
``python -m tests.net.mdns_peer`` in ``left``.

- our resolver resolves names Avahi publishes, an IPv6-only one included, querying over IPv4 only
  as a browser does; and from its cache, with no query, a name Avahi announced;
- where port 5353 cannot be shared, our resolver's one-shot queries get Avahi's unicast answers;
- Avahi, configured for IPv4 only like a browser, resolves the names our responder publishes,
  the IPv6 one through an AAAA record sent over IPv4;
- dig sees our NSEC record: the negative answer for AAAA of an IPv4-only name, and the
  additional NSEC beside a positive answer.

Every test skips with the reason when not root, a tool is missing, or the link cannot be built.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.net.netns import LINK_IPV4, LINK_IPV6, NamespaceProcess, Network, link

TOOLS = {
    "avahi-daemon": "avahi-daemon",
    "avahi-publish": "avahi-utils",
    "avahi-resolve": "avahi-utils",
    "dbus-daemon": "dbus-daemon",
    "dig": "bind9-dnsutils",
}
#: Bounds on waits for a process's line and a command's run (only a hang reaches them).
STARTUP = 15.0
COMMAND = 20.0
AVAHI_NAME = "0b5a7c1e-0000-4000-8000-00000000000a.local"
AVAHI_V6_NAME = "0b5a7c1e-0000-4000-8000-000000000006.local"

pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in TOOLS),
    reason="needs "
    + ", ".join(sorted({p for t, p in TOOLS.items() if shutil.which(t) is None}))
    + " (Debian packages; .ci/run installs them)",
)

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="root"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

_AVAHI_CONFIG = """[server]
host-name=avahi-peer
domain-name=local
use-ipv4=yes
use-ipv6={ipv6}
allow-interfaces=eth0
enable-dbus=yes
[publish]
publish-hinfo=no
publish-workstation=no
publish-aaaa-on-ipv4=yes
"""


class Avahi:
    """avahi-daemon and its private D-Bus in one namespace of ``net``; its tools run there."""

    def __init__(self, net: Network, role: str, folder: Path, *, ipv6: bool) -> None:
        self.net = net
        self.role = role
        bus = folder / "bus"
        (folder / "bus.conf").write_text(_BUS_CONFIG.format(socket=bus))
        (folder / "avahi.conf").write_text(_AVAHI_CONFIG.format(ipv6="yes" if ipv6 else "no"))
        (folder / "run").mkdir()
        dbus = net.start(
            role, "dbus-daemon", f"--config-file={folder / 'bus.conf'}", "--nofork",
            "--print-address", name="dbus-daemon",
        )
        assert dbus.read_line(STARTUP).startswith("unix:path="), dbus.describe()
        self.environment = f"DBUS_SYSTEM_BUS_ADDRESS=unix:path={bus}"
        daemon = net.start(
            role, "env", self.environment, "sh", "-c",
            f"mount --bind {folder / 'run'} /run && exec avahi-daemon"
            f" --file={folder / 'avahi.conf'} --no-drop-root --no-chroot --no-rlimits"
            " --no-proc-title 2>&1",
            name="avahi-daemon",
        )
        daemon.read_until("Server startup complete", STARTUP)
        self.daemon = daemon

    def publish(self, name: str, address: str) -> NamespaceProcess:
        """``avahi-publish -a``: ``name`` has ``address`` while the process runs."""
        process = self.net.start(
            self.role, "env", self.environment, "sh", "-c",
            f"exec avahi-publish --address --no-reverse {name} {address} 2>&1",
            name="avahi-publish",
        )
        process.read_until("Established", STARTUP)
        return process

    def resolve(self, name: str, family: int) -> str:
        """``avahi-resolve -4|-6 -n NAME``: its output line, or its error."""
        completed = subprocess.run(
            ["ip", "netns", "exec", self.net.namespace(self.role), "env", self.environment,
             "avahi-resolve", f"-{family}", "--name", name],
            capture_output=True, text=True, timeout=COMMAND, check=False,
        )
        return (completed.stdout + completed.stderr).strip()


@pytest.fixture
def net() -> Iterator[Network]:
    with link() as built:
        yield built


def our_peer(net: Network, *arguments: str) -> NamespaceProcess:
    return net.start_python("left", "-m", "tests.net.mdns_peer", *arguments, name="mdns_peer")


def results(process: NamespaceProcess) -> list[list[str]]:
    """The lines of a finished peer process, as words."""
    assert process.wait(COMMAND) == 0, process.describe()
    return [line.split(maxsplit=2) for line in process.remaining_output()]


def test_our_resolver_resolves_avahis_names_asking_over_ipv4(net: Network, tmp_path: Path) -> None:
    avahi = Avahi(net, "right", tmp_path, ipv6=True)
    avahi.publish(AVAHI_NAME, LINK_IPV4["right"])
    avahi.publish(AVAHI_V6_NAME, LINK_IPV6["right"])
    resolver = our_peer(net, "resolve", AVAHI_NAME, AVAHI_V6_NAME.upper(), "--ipv4-only")
    assert results(resolver) == [
        ["resolved", AVAHI_NAME, LINK_IPV4["right"]],
        ["resolved", AVAHI_V6_NAME.upper(), LINK_IPV6["right"]],
    ]


def test_our_resolver_keeps_what_avahi_announces(net: Network, tmp_path: Path) -> None:
    avahi = Avahi(net, "right", tmp_path, ipv6=False)
    listener = our_peer(net, "listen", AVAHI_NAME, "--timeout", str(COMMAND))
    assert listener.read_line(STARTUP) == "listening", listener.describe()
    avahi.publish(AVAHI_NAME, LINK_IPV4["right"])  # announced (RFC 6762 §8.3), never asked
    assert results(listener) == [["cached", AVAHI_NAME, LINK_IPV4["right"]]]


def test_one_shot_queries_where_port_5353_is_taken(net: Network, tmp_path: Path) -> None:
    avahi = Avahi(net, "right", tmp_path, ipv6=False)
    avahi.publish(AVAHI_NAME, LINK_IPV4["right"])
    resolver = our_peer(net, "resolve", AVAHI_NAME, "--block")
    assert results(resolver) == [["blocked"], ["resolved", AVAHI_NAME, LINK_IPV4["right"]]]


def test_avahi_resolves_our_names_over_ipv4_only(net: Network, tmp_path: Path) -> None:
    avahi = Avahi(net, "right", tmp_path, ipv6=False)
    responder = our_peer(net, "publish", LINK_IPV4["left"], LINK_IPV6["left"], "--ipv4-only")
    names = {}
    for _ in range(2):
        _, address, name = responder.read_line(STARTUP).split()
        names[address] = name
    assert responder.read_line(STARTUP) == "ready", responder.describe()
    v4, v6 = names[LINK_IPV4["left"]], names[LINK_IPV6["left"]]
    assert avahi.resolve(v4, 4).split() == [v4, LINK_IPV4["left"]]
    assert avahi.resolve(v6, 6).split() == [v6, LINK_IPV6["left"]]


def test_dig_sees_our_nsec_records(net: Network) -> None:
    responder = our_peer(net, "publish", LINK_IPV4["left"], "--ipv4-only")
    _, _, name = responder.read_line(STARTUP).split()
    assert responder.read_line(STARTUP) == "ready", responder.describe()

    def dig(rtype: str) -> str:
        # A query from an ephemeral port straight to the responder (RFC 6762 §5.5, §6.7).
        return net.run(
            "right", "dig", "+time=3", "+tries=2", "+norecurse", "-p", "5353",
            f"@{LINK_IPV4['left']}", name, rtype, timeout=COMMAND,
        )

    negative = dig("AAAA")
    assert "status: NOERROR" in negative and "ANSWER: 1," in negative, negative
    answer = negative.split(";; ANSWER SECTION:")[1].split(";;")[0].split()
    assert answer == [f"{name}.", "10", "IN", "NSEC", f"{name}.", "A"], negative
    positive = dig("A")
    answer = positive.split(";; ANSWER SECTION:")[1].split(";;")[0].split()
    additional = positive.split(";; ADDITIONAL SECTION:")[1].split(";;")[0].split()
    assert answer == [f"{name}.", "10", "IN", "A", LINK_IPV4["left"]], positive
    assert additional == [f"{name}.", "10", "IN", "NSEC", f"{name}.", "A"], positive
