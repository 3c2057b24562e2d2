"""What a Django project writes at run time (SQLite databases, MEDIA_ROOT), and whether the
user the daemons run as can: in a root start without user namespaces (Docker's default seccomp
profile) they run as www-data, and a root-owned project answers `attempt to write a readonly
database` on the first write, with nothing said at start."""

from __future__ import annotations

import pwd
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from wsgidev.privileges import RunAs, unwritable_by

SETTINGS = ("DATABASES", "MEDIA_ROOT")
FIX = "chown {user} the database's folder and file and the media folder, or run as a non-root user"


def data_paths(settings: Mapping[str, Any], project_dir: str) -> list[tuple[Path, bool]]:
    """(path, is_folder) for each SQLite database file and MEDIA_ROOT the settings name."""
    found: list[tuple[Path, bool]] = []
    databases = settings.get("DATABASES")
    if isinstance(databases, Mapping):
        for database in databases.values():
            if not isinstance(database, Mapping):
                continue
            name = str(database.get("NAME") or "")
            sqlite = str(database.get("ENGINE", "")).endswith("sqlite3")
            if sqlite and name and ":memory:" not in name and "mode=memory" not in name:
                found.append((Path(project_dir, name.removeprefix("file:")), False))
    media = settings.get("MEDIA_ROOT")
    if media:
        found.append((Path(project_dir, str(media)), True))
    return found


def unwritable(paths: list[tuple[Path, bool]], run_as: RunAs) -> list[str]:
    """A line for each path the daemons could not write, as run_as says they run."""
    if run_as.mode != "apache-user" or not run_as.user:
        return []  # as the user who runs wsgidev (or that user, mapped): its files are its own
    entry = pwd.getpwnam(run_as.user)
    import grp

    gid = grp.getgrnam(run_as.group).gr_gid if run_as.group else entry.pw_gid
    lines = []
    for path, folder in paths:
        blocked = unwritable_by(path, entry, gid, folder=folder)
        if blocked is not None:
            what = "the media folder" if folder else "the SQLite database"
            lines.append(f"{run_as.user} cannot write {blocked}, so {what} {path} is read-only")
    return lines
