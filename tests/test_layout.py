"""The layout shows the split, and the import statements keep it: the command side
(wsgidev/*.py, wsgidev/django/), the daemon side (wsgidev/daemon/), and the modules both sides
import (wsgidev/shared/, each named in SHARED). An allow-list: a new module is command side
until it is in wsgidev/shared/ and named here."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wsgidev"
# What the daemons may import of wsgidev outside wsgidev.daemon: leaves that import nothing of
# the command side (checked below), so a daemon never loads options, templates or Apache's.
SHARED = (
    "wsgidev.shared",  # the spec's names, for entry scripts an earlier wsgidev wrote
    "wsgidev.shared.spec",  # the entry spec and the restart plan
    "wsgidev.shared.serverroot",  # the server root's file names, the leader lock
    "wsgidev.shared.protocol",  # every message between processes, as types
    "wsgidev.shared.events",  # how an event reaches the error log, and a person's words for it
    "wsgidev.shared.sessionwire",  # a debugger session's messages
    "wsgidev.shared.processes",  # whether a process runs; a file as a terminal line shows it
    "wsgidev.shared.globpattern",  # --watch and --exclude glob patterns
    "wsgidev.shared.mounts",  # which folders send no change notifications
    "wsgidev.shared.inotifylibc",  # inotify_simple with the C library already loaded
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
            if node.module in ("wsgidev", "wsgidev.shared"):  # from wsgidev.shared import events
                modules = (f"{node.module}.{alias.name}" for alias in node.names)
                names.update(name for name in modules if _is_module(name))
    return {name for name in names if name == "wsgidev" or name.startswith("wsgidev.")}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


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
        path = PACKAGE.parent / name.replace(".", "/")
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        imported = imported_modules(path) - {"wsgidev"}
        assert imported <= set(SHARED), (name, imported - set(SHARED))


def test_the_shared_folder_holds_the_shared_modules_and_no_other():
    folder = PACKAGE / "shared"
    found = {
        ".".join(("wsgidev", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for path in folder.rglob("*.py")
    }
    assert found == set(SHARED)
