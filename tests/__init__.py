"""icestack's test suite: a package, so helper modules import by name (tests.interop.coturn)."""
