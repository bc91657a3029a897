"""Names a package offers but imports only on first use (PEP 562), so importing it stays light."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` for names defined in modules it does not import.

    Args:
        package: The package's ``__name__`` (it must be in `sys.modules`, as while it runs).
        table: Public name -> the full name of the module that defines it.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level. A name is imported on
        its first use and then kept in the package, so later look-ups skip ``__getattr__``.
    """
    module = sys.modules[package]

    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(import_module(table[name]), name)
            setattr(module, name, value)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(table))

    return __getattr__, __dir__
