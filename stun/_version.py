"""The package version, in one place for SOFTWARE attributes and the CLI."""

__version__ = "0.1.0"

#: What icestack's clients and servers put in SOFTWARE unless told otherwise (RFC 8489 §14.14).
DEFAULT_SOFTWARE = f"icestack {__version__}"
