"""A restart after an interface address changed: the connection gathers on the new address,
forgets the gone one, and connects again through it (RFC 8445 §9).

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

from .netns import COMMAND_TIMEOUT, NamespaceProcess, unavailable_reason

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

    assert [address.split(":")[0] for address in result["a"]] == [NEW]
    (lost,) = result["lost"]
    assert lost.startswith(f"{OLD}:") and f"the interface address {OLD}" in lost
    assert result["selected"].startswith(f"{NEW}:")
    assert result["echo"] == "after the restart"
