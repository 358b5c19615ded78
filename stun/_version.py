"""The package version, in one place for SOFTWARE attributes and the CLI."""

__version__ = "0.1.0"
