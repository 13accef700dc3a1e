"""Public names of a package imported on first use (PEP 562), so importing the package stays cheap.

A package lists ``name -> module`` in a table and sets ``__getattr__ = lazy_getattr(__name__, TABLE)``.
Imports nothing from dsfnet, so every layer may use it.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``table[name]`` and returns its attribute ``name``."""

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
