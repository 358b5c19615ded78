"""icestack's test suite; a package so that shared helpers (``tests.certs``) import by name."""
