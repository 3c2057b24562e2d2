"""Read the few Django settings wsgidev needs: from this process when Django has the project's
settings loaded (manage.py runwsgidev), else in a short subprocess of the project's Python
(`wsgidev start`, `wsgidev config`), so wsgidev itself never imports the project."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from wsgidev.errors import WsgidevError
from wsgidev.options import Options
from wsgidev.target import Target

READ_TIMEOUT_S = 60.0
INSTALL_DJANGO = "pip install Django into this environment (pip install 'wsgidev[django]')"

# Run by the project's Python: print the named settings as JSON (paths as strings).
_READ_SCRIPT = """
import json, sys
from django.conf import settings
values = {}
for name in sys.argv[1:]:
    value = getattr(settings, name, None)
    if isinstance(value, (list, tuple)):
        value = [str(v) for v in value]
    values[name] = value if value is None or isinstance(value, (bool, int, dict, list)) else str(value)
print(json.dumps(values, default=str))
"""


def require_django() -> None:
    """Fail clearly when this Python has no Django."""
    if importlib.util.find_spec("django") is None:
        raise WsgidevError(f"Django is not installed for {sys.executable}", INSTALL_DJANGO)


def read_settings(
    names: Sequence[str],
    options: Options,
    target: Target,
    env: Sequence[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The named settings of the target's Django project, as JSON-friendly values (the module
    the daemons will use: --env DJANGO_SETTINGS_MODULE over the target's). env: the app's
    variables, where --env-file's join --env's (the run plan's); else --env's."""
    env = options.env if env is None else env
    module = dict(env).get("DJANGO_SETTINGS_MODULE") or target.django_settings
    if not module:
        raise WsgidevError(
            f"{target.label} has no Django settings module",
            "run in the folder with manage.py, or pass --settings mysite.settings",
        )
    loaded = _loaded_settings(module)
    if loaded is not None:
        return {name: _plain(getattr(loaded, name, None)) for name in names}
    return _read_in_subprocess(names, module, options, target, env)


def _loaded_settings(module: str) -> Any:
    """Django's settings object when this process has exactly that settings module loaded."""
    if "django.conf" not in sys.modules:
        return None
    from django.conf import settings

    if settings.configured and getattr(settings, "SETTINGS_MODULE", None) == module:
        return settings
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return value if value is None or isinstance(value, bool | int | dict) else str(value)


def read_later(
    names: Sequence[str], options: Options, target: Target, env: Sequence[tuple[str, str]]
) -> Callable[[], dict[str, Any] | None]:
    """Start reading these settings (a subprocess, beside wsgidev's other start steps); the
    returned call waits for them: None where the settings could not be read (the daemons will
    show why, and wsgidev goes on with what it knows)."""
    result: list[dict[str, Any] | None] = [None]

    def read() -> None:
        try:
            result[0] = read_settings(names, options, target, env)
        except (WsgidevError, ValueError, IndexError, OSError):
            return  # unreadable (a settings module that prints, say): go on without them

    thread = threading.Thread(target=read, name="wsgidev-settings", daemon=True)
    thread.start()

    def wait() -> dict[str, Any] | None:
        thread.join()
        return result[0]

    return wait


def _read_in_subprocess(
    names: Sequence[str],
    module: str,
    options: Options,
    target: Target,
    app_env: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    require_django()
    search = [target.project_dir, *options.python_path]
    inherited = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        **dict(app_env),
        "DJANGO_SETTINGS_MODULE": module,
        "PYTHONPATH": os.pathsep.join([*search, *([inherited] if inherited else [])]),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-c", _READ_SCRIPT, *names],
            cwd=options.working_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=READ_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WsgidevError(
            f"reading Django settings {module} took over {READ_TIMEOUT_S:.0f} s",
            "make the settings module quick to import",
        ) from None
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        last = lines[-1] if lines else f"exit status {result.returncode}"
        if "No module named 'django'" in last:
            raise WsgidevError(f"Django is not installed for {sys.executable}", INSTALL_DJANGO)
        raise WsgidevError(
            f"Django settings {module} failed to import: {last}",
            f"fix the settings (python -c 'import {module}' shows the traceback)",
        )
    values: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return values
