"""A restart after the interface addresses changed: the connection gathers on the new address,
forgets the gone one, and connects again through it (RFC 8445 §9); and its mDNS resolver follows,
so a peer's ``.local`` candidate on an interface added at the restart resolves (the second test,
on :func:`tests.net.netns.link`'s two namespaces, with :mod:`tests.net.ns_hidden_peer`).

The test builds one network namespace with a veth pair (``va`` for A, ``vb`` for B), runs
:mod:`tests.net.ns_restart` in it, and moves A's address from 192.0.2.10 to 198.51.100.11
between the first connection and the restart (in another subnet: deleting the first address of a
subnet deletes its secondary addresses too). Nothing leaves the namespace (it has no other link).
Needs root (skipped with the reason otherwise); the process is stopped by its PID.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from .netns import COMMAND_TIMEOUT, LINK_IPV4, NamespaceProcess, link, unavailable_reason

pytestmark = pytest.mark.netns

OLD, NEW, PEER = "192.0.2.10", "198.51.100.11", "192.0.2.20"
#: The bound on each line the process prints.
LINE_TIMEOUT = 20.0


def ip(namespace: str, *args: str) -> None:
    subprocess.run(
        ["ip", "-n", namespace, *args], check=True, capture_output=True, timeout=COMMAND_TIMEOUT
    )


@contextmanager
def namespace_with_two_interfaces() -> Iterator[str]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    name = f"isk{os.getpid()}-ifaces"
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace here: {exc.stderr.decode().strip()}")
    try:
        ip(name, "link", "set", "lo", "up")
        ip(name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
        for device, address in (("va", OLD), ("vb", PEER)):
            ip(name, "address", "add", f"{address}/24", "dev", device)
            ip(name, "link", "set", device, "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def test_restart_gathers_on_a_new_address_and_forgets_the_gone_one() -> None:
    with (
        namespace_with_two_interfaces() as name,
        NamespaceProcess(
            "ns_restart", [sys.executable, "-m", "tests.net.ns_restart", "va", "vb"], name
        ) as process,
    ):
        first = json.loads(process.read_line(LINE_TIMEOUT))
        assert first == {"connected": {"a": f"{OLD}:{first['connected']['a'].split(':')[1]}"}}
        ip(name, "address", "add", f"{NEW}/24", "dev", "va")
        ip(name, "address", "del", f"{OLD}/24", "dev", "va")
        process.write_line("changed")
        result = json.loads(process.read_line(LINE_TIMEOUT))
        assert process.wait(LINE_TIMEOUT) == 0, result

    # On the new address only: the UDP host candidate and the TCP passive and active ones.
    assert [address.split(":")[0] for address in result["a"]] == [NEW] * 3
    assert len(result["lost"]) == 3  # the same three on the old address
    for lost in result["lost"]:
        assert lost.startswith(f"{OLD}:") and f"the interface address {OLD}" in lost
    assert result["selected"].startswith(f"{NEW}:")
    assert result["echo"] == "after the restart"


def test_the_peers_mdns_names_resolve_on_an_interface_added_at_a_restart() -> None:
    """A (namespace ``left``) gathers while its link has no address yet; the link gets one and
    A restarts. Only then B (``right``) hides its host candidate behind a name A never heard:
    A's mDNS resolver must now listen and query on the new interface. The name resolves — A
    learns B's host candidate, not only a peer-reflexive one — and data flows."""
    with link(ipv6=False) as net:
        left = net.namespace("left")
        ip(left, "address", "del", f"{LINK_IPV4['left']}/24", "dev", "eth0")
        a = net.start_python("left", "-m", "tests.net.ns_hidden_peer", "a", name="a")
        assert json.loads(a.read_line(LINE_TIMEOUT)) == {"gathered": []}, a.describe()
        ip(left, "address", "add", f"{LINK_IPV4['left']}/24", "dev", "eth0")
        a.write_line("interface added")
        a_description = a.read_line(LINE_TIMEOUT)
        b = net.start_python("right", "-m", "tests.net.ns_hidden_peer", "b", name="b")
        b_description = b.read_line(LINE_TIMEOUT)
        assert ".local" in b_description, b.describe()
        a.write_line(b_description)
        b.write_line(a_description)
        result = json.loads(a.read_line(LINE_TIMEOUT))
        assert json.loads(b.read_line(LINE_TIMEOUT)) == {"received": "hello from a"}
        assert a.wait(LINE_TIMEOUT) == 0, result

    assert result["unresolvable"] == []
    # B's UDP host candidate and its TCP passive and active ones, all behind its name.
    remote = [line.split(":")[0] for line in result["remote"]]
    assert remote == [f"host {LINK_IPV4['right']}"] * 3
    assert result["received"] == "hello from b"
