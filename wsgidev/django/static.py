"""Static files for Django projects, in two modes.

``finders`` (the default, runserver's way) runs inside the daemon: wsgidev/daemon/static.py.

``root`` (--static-root, production's way): Apache serves STATIC_ROOT at STATIC_URL and
MEDIA_ROOT at MEDIA_URL itself, through the Alias blocks that --static renders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsgidev.errors import WsgidevError
from wsgidev.options import Options
from wsgidev.target import Target

ROOT_SETTINGS = ("STATIC_URL", "STATIC_ROOT", "MEDIA_URL", "MEDIA_ROOT")


def static_root(
    options: Options, target: Target, env: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Apache's Aliases for STATIC_ROOT (and MEDIA_ROOT, when set); env: the app's variables."""
    from wsgidev.django.settings_reader import read_settings

    values = read_settings(ROOT_SETTINGS, options, target, env)
    module = target.django_settings or "the settings"
    return static_root_aliases(values, module, Path(options.working_dir))


def static_root_aliases(
    values: dict[str, Any], module: str, base: Path
) -> tuple[tuple[str, str], ...]:
    """(URL, folder) pairs for Apache from STATIC_URL/STATIC_ROOT and MEDIA_URL/MEDIA_ROOT;
    relative folders are taken from base (the working dir, where the app runs)."""
    static_url, static_root = values.get("STATIC_URL") or "", values.get("STATIC_ROOT")
    # Slashes alone would be an Alias for "/", which shadows the app.
    if not static_url.startswith("/") or static_url.strip("/") == "":
        raise WsgidevError(
            f"--static-root: STATIC_URL {static_url!r} in {module} is not a path on this server",
            "set STATIC_URL = 'static/', or drop --static-root",
        )
    if not static_root:
        raise WsgidevError(
            f"--static-root: STATIC_ROOT is not set in {module}",
            "set STATIC_ROOT = BASE_DIR / 'staticfiles' and run python manage.py collectstatic",
        )
    static_folder = base / static_root
    if not static_folder.is_dir():
        raise WsgidevError(
            f"--static-root: STATIC_ROOT {static_folder} does not exist",
            "run python manage.py collectstatic",
        )
    aliases = [(static_url, str(static_folder))]
    media_url, media_root = values.get("MEDIA_URL") or "", values.get("MEDIA_ROOT")
    # MEDIA_ROOT is empty unless the project stores uploads; "/" would shadow the app.
    if media_root and media_url.startswith("/") and media_url.strip("/"):
        aliases.append((media_url, str(base / media_root)))
    return tuple(aliases)
