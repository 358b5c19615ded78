"""aioice's API on icestack: ``import ice.compat.aioice`` before aiortc, and every ``import
aioice`` (and ``aioice.ice``, ``aioice.stun``, ``aioice.candidate``) that follows gets these
modules, so aiortc's ICE runs on :class:`ice.aio.Connection` (docs/aiortc.md).

The layer translates; it makes no ICE decision of its own. Installing it puts this package
and its submodules in :data:`sys.modules` under aioice's names, so an installed aioice
distribution (aiortc depends on one) is never imported. If the real aioice was imported
first, objects of it may already be bound in other modules: importing this package then
raises :class:`ImportError` saying so, rather than leaving two ICE stacks side by side.
"""

from __future__ import annotations

import sys

#: The names aioice's modules are installed under, and this package's module of each.
_MODULES = ("aioice", "aioice.candidate", "aioice.ice", "aioice.stun")


def _refuse_the_real_aioice() -> None:
    loaded = sorted(
        name
        for name in sys.modules
        if (name == "aioice" or name.startswith("aioice."))
        and not sys.modules[name].__name__.startswith(__name__)
    )
    if loaded:
        where = getattr(sys.modules[loaded[0]], "__file__", None) or loaded[0]
        raise ImportError(
            f"ice.compat.aioice: the real aioice is already imported (from {where}); import "
            "ice.compat.aioice first, before aiortc or aioice, so that `import aioice` gets "
            "icestack"
        )


_refuse_the_real_aioice()

from . import candidate, ice, stun  # noqa: E402
from .candidate import Candidate  # noqa: E402
from .ice import Connection, ConnectionClosed, TransportPolicy  # noqa: E402

for _name, _module in zip(_MODULES, (sys.modules[__name__], candidate, ice, stun), strict=True):
    sys.modules[_name] = _module

__all__ = ["Candidate", "Connection", "ConnectionClosed", "TransportPolicy"]
