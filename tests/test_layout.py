"""The two sides meet only in wsgidev/shared.py (and events.py): checked on the import statements."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wsgidev"
COMMAND_SIDE_FORBIDDEN = ("wsgidev.daemon",)
DAEMON_SIDE_FORBIDDEN = (
    "wsgidev.options",
    "wsgidev.target",
    "wsgidev.render",
    "wsgidev.server",
    "wsgidev.cli",
    "wsgidev.configure",
    "wsgidev.doctor",
    "wsgidev.apache",
    "wsgidev.privileges",
    "wsgidev.logstream",
)


def imported_modules(path: Path) -> set[str]:
    """Every module an import statement in the file names (from-imports with their names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for name in imported_modules(path):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


def test_the_command_side_never_imports_the_daemon_side():
    command_side = [
        p
        for p in PACKAGE.rglob("*.py")
        if "daemon" not in p.relative_to(PACKAGE).parts and p.name != "monitor.py"
    ]
    assert command_side
    assert offending(command_side, COMMAND_SIDE_FORBIDDEN) == []


def test_the_daemon_side_never_imports_the_command_side():
    daemon_side = sorted((PACKAGE / "daemon").rglob("*.py"))
    assert daemon_side
    assert offending(daemon_side, DAEMON_SIDE_FORBIDDEN) == []


def test_the_shared_leaf_imports_nothing_of_wsgidev():
    assert not {n for n in imported_modules(PACKAGE / "shared.py") if n.startswith("wsgidev")}
