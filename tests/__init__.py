"""icestack's test suite: a package, so its helper modules import by name (``tests.interop.coturn``)."""
