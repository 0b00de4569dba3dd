"""The other stages perf drives, imported under the scheme perf itself was imported by.

In a checkout, `python -m perf` imports the top-level folders (`perf`, `convert`, `serve`);
installed with pip they are `triton_encoders.perf`, `triton_encoders.convert`, ... Importing
the siblings by the same scheme keeps one copy of each module in a process, so an error class
raised by serve is the one perf catches, whichever way perf was started. They are imported
when first asked for: perf's own import pulls in neither torch (convert) nor the launcher.
"""
from __future__ import annotations

from importlib import import_module
from types import ModuleType

_ROOT = __package__.rpartition(".")[0]   # "" in a checkout, "triton_encoders" when installed


def stage(module: str) -> ModuleType:
    """`convert`, `serve.errors`, ...: that module of a sibling stage, under perf's scheme."""
    return import_module(f"{_ROOT}.{module}" if _ROOT else module)
