"""What to serve: a WSGI script file, a module:callable, or the Django project found from manage.py."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wsgidev.errors import WsgidevError
from wsgidev.options import Options

_SETTINGS_IN_MANAGE = re.compile(
    r"""environ\.setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']"""
)
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass(frozen=True, kw_only=True)
class Target:
    """A resolved, checked target; the entry script imports it inside the daemon."""

    kind: Literal["script", "module", "django"]
    label: str
    project_dir: str
    script_path: str | None = None
    module: str | None = None
    callable_name: str = "application"
    django_settings: str | None = None


def resolve_target(options: Options) -> Target:
    """Find and check the target named by options (or the Django project in the working dir)."""
    project = options.working_path
    search = [project, *(Path(p) for p in options.python_path)]
    spec = options.target
    if spec is None:
        return _django_project(options, project, search)
    folder = project / spec
    if folder.is_dir() and not (folder / "__init__.py").is_file():
        inside = (
            f"run wsgidev start inside {spec} (it has manage.py), or pass --working-dir {spec}"
            if (folder / "manage.py").is_file()
            else f"pass its WSGI file (e.g. {spec.rstrip('/')}/wsgi.py) or module:callable"
        )
        raise WsgidevError(f"TARGET {spec} is a folder, not a WSGI file or module", inside)
    if _looks_like_file(spec, project):
        path = (project / spec).resolve()
        if not path.is_file():
            raise WsgidevError(
                f"WSGI file {spec} not found in {project}",
                "pass an existing file such as mysite/wsgi.py, or module:callable",
            )
        return Target(
            kind="script",
            label=str(path),
            project_dir=str(project),
            script_path=str(path),
            django_settings=options.django_settings,
        )
    module, _, callable_name = spec.partition(":")
    callable_name = callable_name or "application"
    if not _DOTTED.match(module) or not callable_name.isidentifier():
        raise WsgidevError(
            f"TARGET {spec!r} is neither a file nor module:callable",
            "pass e.g. mysite/wsgi.py or mysite.wsgi:application",
        )
    _require_module(module, search, what="module")
    return Target(
        kind="module",
        label=f"{module}:{callable_name}",
        project_dir=str(project),
        module=module,
        callable_name=callable_name,
        django_settings=options.django_settings,
    )


def _looks_like_file(spec: str, project: Path) -> bool:
    # "mysite.wsgi" is a module unless a file of that name exists.
    return "/" in spec or spec.endswith(".py") or (project / spec).is_file()


def _django_project(options: Options, project: Path, search: list[Path]) -> Target:
    manage = project / "manage.py"
    if not manage.is_file():
        raise WsgidevError(
            f"no TARGET given and no manage.py in {project}",
            "run in a Django project's folder, or pass mysite/wsgi.py or mysite.wsgi:application",
        )
    settings = options.django_settings or settings_from_manage(manage)
    if not settings:
        raise WsgidevError(
            f"cannot tell the settings module from {manage}",
            "set DJANGO_SETTINGS_MODULE=mysite.settings or pass --settings mysite.settings",
        )
    _require_module(settings, search, what="Django settings module")
    return Target(
        kind="django",
        label=f"Django project {project.name} ({settings})",
        project_dir=str(project),
        django_settings=settings,
    )


def settings_from_manage(manage: Path) -> str | None:
    """The DJANGO_SETTINGS_MODULE default that manage.py sets, if it sets one plainly."""
    match = _SETTINGS_IN_MANAGE.search(manage.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def _require_module(module: str, search: list[Path], *, what: str) -> None:
    """Fail unless module's source can be found in search dirs or the installed packages."""
    parts = module.split(".")
    for folder in search:
        base = folder.joinpath(*parts)
        if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
            return
    top = importlib.util.find_spec(parts[0]) if _DOTTED.match(parts[0]) else None
    if top is not None:
        if len(parts) == 1:
            return
        for location in top.submodule_search_locations or ():
            base = Path(location).joinpath(*parts[1:])
            if base.with_suffix(".py").is_file() or (base / "__init__.py").is_file():
                return
    raise WsgidevError(
        f"{what} {module!r} not found in {', '.join(str(s) for s in search)} or installed packages",
        "check the name, or add its folder with --python-path",
    )
