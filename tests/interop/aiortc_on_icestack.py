"""A pytest plugin for running aiortc's own test suite on icestack: ``-p aiortc_on_icestack``
(with this folder on ``PYTHONPATH``) installs :mod:`ice.compat.aioice` before pytest imports
any test, then makes sure aiortc really got it, and says so in the report header.

``.ci/run`` runs aiortc's ICE tests from its pinned sdist this way (docs/aiortc.md).
"""

from __future__ import annotations

import sys

import pytest

import ice.compat.aioice


def pytest_report_header() -> str:
    return f"aioice: {ice.compat.aioice.__name__} (icestack), not the aioice distribution"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Every test module is imported now: aiortc's ICE transport must hold our Connection."""
    transport = sys.modules.get("aiortc.rtcicetransport")
    if transport is None:
        raise pytest.UsageError("aiortc_on_icestack: aiortc.rtcicetransport was not imported")
    if transport.Connection is not ice.compat.aioice.Connection:
        raise pytest.UsageError(
            f"aiortc_on_icestack: aiortc uses {transport.Connection!r}, not icestack's"
        )
