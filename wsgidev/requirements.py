"""What wsgidev needs from the project's venv, read from its own installed metadata.

wsgidev lives in the user's venv, so every dependency is imposed on their project: the hard ones
are what every `wsgidev start` needs (mod_wsgi, Jinja2, inotify_simple on Linux, watchdog
elsewhere), and each feature's own library is an extra (`wsgidev[https]`, ...), imported only
when the feature is used. require() turns a missing or too old one into one line with the
install command; doctor lists them all and the import names two distributions claim.

The requirement lines are parsed here rather than with `packaging` (which is not a dependency):
wsgidev's own metadata uses only `NAME>=VERSION` with `extra`, `sys_platform` and
`python_version` markers joined by `and`, and that is all this reads.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from wsgidev.errors import WsgidevError

# Each extra, the feature that needs it (for the one line) and the modules it brings.
EXTRAS = {
    "https": (
        "--https and `wsgidev trust` (the local certificate authority)",
        ("cryptography", "platformdirs"),
    ),
    "hide-env": ("hiding --env values from other users' `ps`", ("setproctitle",)),
    "werkzeug": ("--werkzeug (the in-browser debugger)", ("werkzeug",)),
}

_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r"(?:>=\s*(?P<lowest>[0-9][0-9a-zA-Z.]*))?[^;]*(?:;\s*(?P<marker>.*))?$"
)
_EXTENSION = re.compile(r"^[A-Za-z]\w*\.(?:[\w-]+\.)?(?:so|pyd)$")
_CLAUSE = re.compile(
    r"^\s*(?P<key>extra|sys_platform|python_version)\s*(?P<op>==|!=|<|>=|<=|>)\s*['\"](?P<value>[^'\"]*)['\"]\s*$"
)


# importlib.metadata is imported in the functions that use it: `wsgidev start` calls them only
# for the extras an option needs (--https, --debug), and the module weighs 3 MB (email, zipfile,
# csv) in the command's memory for the server's whole life.


@dataclass(frozen=True)
class Requirement:
    """One of wsgidev's dependencies: its distribution, lowest supported version, extra."""

    name: str
    lowest: str | None
    extra: str | None


def declared() -> list[Requirement]:
    """wsgidev's dependencies that apply on this platform and Python, with their extras."""
    from importlib import metadata  # lazily: see the note above Requirement

    try:
        lines = metadata.requires("wsgidev") or []
    except metadata.PackageNotFoundError:
        return []
    return [r for r in map(parse, lines) if r is not None]


def parse(line: str) -> Requirement | None:
    """One requirement line (`NAME>=VERSION; markers`); None where its markers do not hold
    here or it is of a form wsgidev does not write."""
    match = _REQUIREMENT.match(line)
    if match is None:
        return None
    applies, extra = _marker(match.group("marker") or "")
    return Requirement(match.group("name"), match.group("lowest"), extra) if applies else None


def _marker(marker: str) -> tuple[bool, str | None]:
    """Whether the marker holds here (its extra aside), and the extra it names."""
    extra = None
    for clause in filter(None, (c.strip() for c in marker.split(" and "))):
        match = _CLAUSE.match(clause)
        if match is None:
            continue  # a form wsgidev does not write: count it as holding
        key, op, value = match.group("key", "op", "value")
        if key == "extra":
            extra = value
            continue
        here: object = (
            sys.platform
            if key == "sys_platform"
            else _version(f"{sys.version_info[0]}.{sys.version_info[1]}")
        )
        wanted: object = value if key == "sys_platform" else _version(value)
        holds = {
            "==": here == wanted,
            "!=": here != wanted,
            "<": here < wanted,  # type: ignore[operator]
            "<=": here <= wanted,  # type: ignore[operator]
            ">": here > wanted,  # type: ignore[operator]
            ">=": here >= wanted,  # type: ignore[operator]
        }[op]
        if not holds:
            return False, extra
    return True, extra


def _version(text: str) -> tuple[int, ...]:
    """The release numbers of a version: 42.0.5 -> (42, 0, 5); 1.0rc1 -> (1, 0)."""
    numbers = []
    for part in text.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits.group()))
        if digits.group() != part:
            break
    while numbers and numbers[-1] == 0:  # 6 == 6.0 == 6.0.0
        numbers.pop()
    return tuple(numbers)


def too_old(requirement: Requirement) -> str | None:
    """The installed version when it is older than wsgidev supports ("not installed" for a hard
    dependency that is missing), else None."""
    from importlib import metadata  # lazily: see the note above Requirement

    try:
        installed = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return None if requirement.extra else "not installed"
    if requirement.lowest and _version(installed) < _version(requirement.lowest):
        return installed
    return None


def importable(module: str) -> bool:
    """Whether a top-level module can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(extra: str) -> None:
    """Raise WsgidevError naming the install command when the extra's modules are missing or old."""
    feature, modules = EXTRAS[extra]
    fix = f"pip install 'wsgidev[{extra}]' (or: uv add --dev 'wsgidev[{extra}]')"
    missing = [m for m in modules if not importable(m)]
    if missing:
        raise WsgidevError(
            f"{feature} needs {' and '.join(missing)}, not installed in {sys.prefix}", fix
        )
    for requirement in declared():
        if requirement.extra == extra:
            old = too_old(requirement)
            if old:
                raise WsgidevError(
                    f"{feature} needs {requirement.name}>={requirement.lowest}; "
                    f"{sys.prefix} has {old}",
                    fix.replace("pip install", "pip install --upgrade", 1),
                )


def import_owners(path: list[str] | None = None) -> dict[str, list[str]]:
    """Top-level import names that more than one installed distribution defines (a module or a
    package with an __init__). Namespace packages are shared by design: those without an
    __init__ (`google`), and pkgutil/pkg_resources-style ones whose __init__ only extends the
    package's path (`backports`)."""
    owners: dict[str, dict[str, Path]] = defaultdict(dict)
    from importlib import metadata  # lazily: see the note above Requirement

    found = metadata.distributions() if path is None else metadata.distributions(path=path)
    for distribution in found:
        name = _canonical(distribution.metadata["Name"] or "")
        for file in distribution.files or ():
            top = _defined_name(file.parts)
            if top is not None:
                owners[top][name] = Path(str(distribution.locate_file(file)))
    clashes = {}
    for top, files in sorted(owners.items()):
        defining = sorted(d for d, f in files.items() if not _extends_path(f))
        if len(defining) > 1:
            clashes[top] = defining
    return clashes


def _extends_path(init: Path) -> bool:
    """Whether a package's __init__ declares a namespace package (pkgutil or pkg_resources)."""
    if init.name != "__init__.py":
        return False
    try:
        text = init.read_text(errors="replace")
    except OSError:
        return False
    return "extend_path" in text or "declare_namespace" in text


def _defined_name(parts: tuple[str, ...]) -> str | None:
    """The import name a file of a distribution defines at the top level, if it defines one."""
    if len(parts) == 1 and (parts[0].endswith(".py") or _EXTENSION.match(parts[0])):
        name = parts[0].split(".", 1)[0]
    elif len(parts) == 2 and parts[1] == "__init__.py":
        name = parts[0]
    else:
        return None
    return None if name.startswith("_") or "-" in name else name


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
