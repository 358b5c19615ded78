"""Other libraries' APIs on top of icestack, so that their users switch with one import.

- :mod:`ice.compat.aioice`: aioice's ``Connection``, ``Candidate`` and ``TransportPolicy``,
  installed as the ``aioice`` module, so that aiortc runs on icestack (docs/aiortc.md).
"""
