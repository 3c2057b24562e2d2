"""The daemon side's one door to mod_wsgi's module: the one Apache embeds in its Python, which
the pip package of the same name (importable anywhere) is not. Outside Apache every answer is
"none", so the daemon's code runs in tests and tools as it does in a daemon.

(wsgidev/shared/events.py, shared with the command side, asks mod_wsgi for its log handler itself.)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


def _module() -> ModuleType | None:
    try:
        return importlib.import_module("mod_wsgi")
    except ImportError:
        return None


def _group() -> str | None:
    # Apache's module has process_group: "" in embedded mode, the group's name in a daemon.
    return getattr(_module(), "process_group", None)


def process_group() -> str | None:
    """This daemon's process group; None outside a daemon process."""
    return _group() or None


def embedded() -> bool:
    """Whether this is an Apache child running the app in embedded mode (not a daemon)."""
    return _group() == ""


def subscribe_shutdown(callback: Callable[..., Any]) -> None:
    """Call back when mod_wsgi begins stopping this process (before its requests finish);
    nothing outside Apache."""
    subscribe = getattr(_module(), "subscribe_shutdown", None)
    if subscribe is not None:
        subscribe(callback)
