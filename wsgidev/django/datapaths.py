"""What a Django project writes at run time (SQLite databases, MEDIA_ROOT), and whether the
user the daemons run as can: in a root start without user namespaces (Docker's default seccomp
profile) they run as www-data, and a root-owned project answers `attempt to write a readonly
database` on the first write, with nothing said at start."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsgidev.privileges import RunAs, unwritable_by

SETTINGS = ("DATABASES", "MEDIA_ROOT")
FIX = "chown {user} the database's folder and file and the media folder, or run as a non-root user"
FIX_OWN = "make the database's folder and file and the media folder writable (chmod u+w), or point the settings at a folder that is"


def fix_for(run_as: RunAs) -> str:
    """What to do about a path unwritable() named."""
    if run_as.mode == "apache-user" and run_as.user:
        return FIX.format(user=run_as.user)
    return FIX_OWN


def data_paths(settings: Mapping[str, Any], working_dir: str) -> list[tuple[Path, bool]]:
    """(path, is_folder) for each SQLite database file and MEDIA_ROOT the settings name;
    relative ones from the daemons' working folder, as Django opens them."""
    found: list[tuple[Path, bool]] = []
    databases = settings.get("DATABASES")
    if isinstance(databases, Mapping):
        for database in databases.values():
            if not isinstance(database, Mapping):
                continue
            name = str(database.get("NAME") or "")
            sqlite = str(database.get("ENGINE", "")).endswith("sqlite3")
            if sqlite and name and ":memory:" not in name and "mode=memory" not in name:
                path = name.removeprefix("file:").split("?", 1)[0]  # an SQLite URI's query
                found.append((Path(working_dir, path), False))
    media = settings.get("MEDIA_ROOT")
    if media:
        found.append((Path(working_dir, str(media)), True))
    return found


def unwritable(paths: list[tuple[Path, bool]], run_as: RunAs) -> list[str]:
    """A line for each path the daemons could not write, as run_as says they run."""
    if run_as.mode == "apache-user" and run_as.user:
        entry = pwd.getpwnam(run_as.user)
        gid = grp.getgrnam(run_as.group).gr_gid if run_as.group else entry.pw_gid
        user = run_as.user

        def blocked_at(path: Path, folder: bool) -> Path | None:
            return unwritable_by(path, entry, gid, folder=folder)

    else:  # the daemons write as the user who runs wsgidev (or as that user, mapped)
        user = pwd.getpwuid(os.geteuid()).pw_name

        def blocked_at(path: Path, folder: bool) -> Path | None:
            return _not_writable_here(path, folder)

    lines = []
    for path, folder in paths:
        blocked = blocked_at(path, folder)
        if blocked is not None:
            what = "the media folder" if folder else "the SQLite database"
            lines.append(f"{user} cannot write {blocked}, so {what} {path} is read-only")
    return lines


def _not_writable_here(path: Path, folder: bool) -> Path | None:
    """Where this process could not write path (and its folder, for a file), or None."""
    for target in [path] if folder else [path, path.parent]:
        existing = target
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        mode = os.W_OK | (os.X_OK if existing.is_dir() else 0)
        if not os.access(existing, mode):
            return existing
    return None
