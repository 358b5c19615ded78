"""Fixtures for the loopback tests: a self-signed certificate for localhost, 127.0.0.1 and ::1."""

from __future__ import annotations

import pytest

from stun.tls import CertificateFiles, make_self_signed


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    """A self-signed certificate (and key) that a client trusts by passing it as its CA file."""
    return make_self_signed(tmp_path_factory.mktemp("stun-tls"))
