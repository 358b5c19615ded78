"""The public names of ``stun``, ``turn``, ``turn.server`` and ``ice`` load at first use
(:mod:`stun.lazy_exports`): each name of ``__all__`` is where the package's table says, and is the
object its module defines."""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import ModuleType

import pytest

import ice
import stun
import turn
import turn.server

PACKAGES = [stun, turn, turn.server, ice]


def _table(package: ModuleType) -> dict[str, str]:
    exports: dict[str, tuple[str, ...]] = vars(package)["_EXPORTS"]
    return {name: module for module, names in exports.items() for name in names}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda package: package.__name__)
def test_every_public_name_is_its_modules_own(package: ModuleType) -> None:
    table = _table(package)
    assert sorted(table) == sorted(package.__all__)
    for name, module in table.items():
        defined = getattr(importlib.import_module(module, package.__name__), name)
        assert getattr(package, name) is defined
    assert set(package.__all__) <= set(dir(package))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda package: package.__name__)
def test_an_unknown_name_is_an_attribute_error(package: ModuleType) -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nonesuch'"):
        _ = package.Nonesuch


@pytest.mark.parametrize("package", ["stun", "ice"])
def test_importing_the_package_builds_nothing_until_used(package: str) -> None:
    """``import stun`` loads no module of it but the table's helper; ``from stun import *``
    then gives every public name."""
    probe = (
        f"import sys, {package}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('stun', 'turn', 'ice')))\n"
        f"from {package} import *\n"
        f"print(all(name in globals() for name in {package}.__all__))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    expected = sorted({package, "stun", "stun.lazy_exports"})
    assert result.stdout.splitlines() == [str(expected), "True"]


def test_importing_turn_registers_its_attributes_and_builds_no_client_or_server() -> None:
    """``import turn`` loads :mod:`turn.attributes` (which registers them with stun's codec) and
    what it stands on, but no client, server or asyncio: a command's options import
    :mod:`turn.uri` without them."""
    probe = (
        "import sys, turn.uri\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('turn', 'asyncio', 'ssl')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = result.stdout.splitlines()
    assert loaded == [str(["turn", "turn.attributes", "turn.errors", "turn.transport", "turn.uri"])]
