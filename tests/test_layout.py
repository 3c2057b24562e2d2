"""The layout shows the split, and the import statements keep it: the command side
(wsgidev/*.py, wsgidev/django/), the daemon side (wsgidev/daemon/), and the few modules both
sides import (SHARED). An allow-list: a new module is command side until it is named here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wsgidev"
# What the daemons may import of wsgidev outside wsgidev.daemon: leaves that import nothing of
# the command side (checked below), so a daemon never loads options, templates or Apache's.
SHARED = (
    "wsgidev.shared",  # the entry spec, the restart plan, the server root's file names
    "wsgidev.protocol",  # every message between processes, as types
    "wsgidev.events",  # how an event reaches the error log, and a person's words for it
    "wsgidev.globpattern",  # --watch and --exclude glob patterns
    "wsgidev.mounts",  # which folders send no change notifications
)
# The command side's public face of the daemon monitor, for hand-written WSGI scripts.
FACADES = ("monitor.py",)


def imported_modules(path: Path) -> set[str]:
    """Every wsgidev module an import statement in the file names (from-imports: the module,
    or the submodule a name is)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "wsgidev":  # from wsgidev import events: a module
                names.update(f"wsgidev.{alias.name}" for alias in node.names)
    return {name for name in names if name == "wsgidev" or name.startswith("wsgidev.")}


def daemon_side() -> list[Path]:
    return sorted((PACKAGE / "daemon").rglob("*.py"))


def test_the_daemon_side_imports_only_itself_and_the_shared_modules():
    paths = daemon_side()
    assert paths
    found = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in paths
        for name in imported_modules(path)
        if not name.startswith("wsgidev.daemon") and name not in SHARED and name != "wsgidev"
    ]
    assert found == []


def test_the_command_side_never_imports_the_daemon_side():
    paths = [
        path
        for path in PACKAGE.rglob("*.py")
        if "daemon" not in path.relative_to(PACKAGE).parts and path.name not in FACADES
    ]
    assert paths
    found = [
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in paths
        for name in imported_modules(path)
        if name.startswith("wsgidev.daemon")
    ]
    assert found == []


def test_the_shared_modules_import_only_each_other():
    for name in SHARED:
        path = PACKAGE.parent / (name.replace(".", "/") + ".py")
        imported = imported_modules(path) - {"wsgidev"}
        assert imported <= set(SHARED), (name, imported - set(SHARED))
