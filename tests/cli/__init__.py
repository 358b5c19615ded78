"""The ``icestack`` command line, run as a subprocess against servers on loopback."""
