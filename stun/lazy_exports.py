"""A package's public names imported at first use (PEP 562).

``import stun`` (and so importing any module of it: ``stun.errors``, the command line's
:mod:`stun.cli_messages`) would otherwise build every class of the codec, the client and the
server before anything runs; ``icestack --help`` paid about half a second for that. A package
lists where each of its names lives, and ``stun.Message`` or ``from stun import Message`` imports
:mod:`stun.message` then, once: the name is kept on the package afterwards. Type checkers read
the package's imports under ``TYPE_CHECKING`` instead.

A command of the command line is loaded the same way (:func:`run_later`): its options module
names the function that runs it, imported only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, tuple[str, ...]]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``, whose public names
    ``exports`` lists by the submodule that defines them (relative: ``".message"``)."""
    home = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> object:
        module = home.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *home})

    return __getattr__, __dir__


def run_later(module: str, function: str, *bound: object) -> Callable[[argparse.Namespace], int]:
    """A command's ``run`` (``parser.set_defaults(run=...)``): ``function(*bound, args)`` of
    ``module``, imported only when the command runs — the command and the stack it runs on,
    which its ``--help`` and a mistaken option never load."""

    def run(args: argparse.Namespace) -> int:
        command: Callable[..., int] = getattr(importlib.import_module(module), function)
        return command(*bound, args)

    return run
