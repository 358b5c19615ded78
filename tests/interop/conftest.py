"""Fixtures that run coturn's turnserver on loopback, with and without long-term credentials.

Each flavour is started once per test session and stopped by its PID at the end; a test that needs
a server of its own (other flags, fresh state) calls :func:`running_turnserver` itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stun.tls import CertificateFiles, make_self_signed
from tests.interop.coturn import (
    LongTermCredentials,
    RunningTurnserver,
    running_turnserver,
    skip_unless_installed,
)

#: The one user of the ``coturn_auth`` server.
TEST_CREDENTIALS = LongTermCredentials(
    username="alice", password="looking-glass", realm="icestack.test"
)

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test in this directory ``interop``, so ``-m "not interop"`` leaves them out."""
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A self-signed certificate for localhost, 127.0.0.1 and ::1."""
    return make_self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def coturn(
    tmp_path_factory: pytest.TempPathFactory, tls_certificate: CertificateFiles
) -> Iterator[RunningTurnserver]:
    """coturn with ``--no-auth``, on UDP, TCP and TLS."""
    skip_unless_installed("turnserver")
    with running_turnserver(
        tmp_path_factory.mktemp("coturn"), certificate=tls_certificate
    ) as server:
        yield server


@pytest.fixture(scope="session")
def coturn_auth(
    tmp_path_factory: pytest.TempPathFactory, tls_certificate: CertificateFiles
) -> Iterator[RunningTurnserver]:
    """coturn with the long-term credential mechanism and one user, :data:`TEST_CREDENTIALS`."""
    skip_unless_installed("turnserver")
    with running_turnserver(
        tmp_path_factory.mktemp("coturn-auth"),
        certificate=tls_certificate,
        credentials=TEST_CREDENTIALS,
    ) as server:
        yield server
