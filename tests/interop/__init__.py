"""Interop tests: icestack against real third-party peers (coturn, aioice) on loopback."""
