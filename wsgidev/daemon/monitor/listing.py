"""What a process watches, summed up for `--log-level info`: one compact block, not a file list.

Counts by folder (the project's top folders, site-packages, the standard library, the rest by
their first folders), the files watched for a reason other than an import (opened while
importing, --watch, the WSGI script, Django's autoreload), the globs, and what `exclude` kept
out. Built once, when the app is in; the command prints it (wsgidev/logstream.py).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import site
import sysconfig
import urllib.parse
from collections import Counter
from typing import Any

from wsgidev.daemon.monitor.opened import WSGIDEV_DIR
from wsgidev.daemon.monitor.watched import WatchedFiles

MAX_SUBFOLDERS = 6  # per group; the rest are counted together
MAX_FILES = 20  # extra files listed one by one; the rest are counted
# The event is one error-log line, which Apache cuts at 8 KB: its JSON (base64: 4/3 of this)
# is kept under this many characters by listing fewer files.
MAX_JSON_CHARS = 4000
PACKAGE_DIRS = ("site-packages", "dist-packages")  # dist-packages: Debian's system Python
OTHER_DEPTH = 3  # folders outside the known places are grouped by this many leading parts


def watch_list(
    files: WatchedFiles, project_dir: str, server_root: str | None = None
) -> dict[str, Any]:
    """The listing as JSON-ready fields of a "watch-list" event."""
    paths = files.paths()
    project = os.path.join(os.path.abspath(project_dir), "")
    stdlib, packages = _library_prefixes()
    editable = editable_roots()
    # wsgidev's own modules (an editable install is outside site-packages) and its entry script.
    own = tuple(os.path.join(d, "") for d in (WSGIDEV_DIR, server_root) if d)
    groups: dict[str, Counter[str]] = {}
    for path in paths:
        if path.startswith(own):
            label, sub = "wsgidev", ""
        elif path.startswith(project):
            top = path[len(project) :].split(os.sep, 1)
            label, sub = f"project {project_dir}", top[0] if len(top) > 1 else "."
        elif path.startswith(packages) or any(f"{os.sep}{d}{os.sep}" in path for d in PACKAGE_DIRS):
            label, sub = "site-packages", ""
        elif path.startswith(stdlib):
            label, sub = "standard library", ""
        elif (root := next((r for r in editable if path.startswith(r)), None)) is not None:
            label, sub = "editable installs", editable[root]  # pip install -e: code being worked on
        else:
            label, sub = "other", os.sep.join(path.split(os.sep)[: OTHER_DEPTH + 1])
        groups.setdefault(label, Counter())[sub] += 1
    by_folder = []
    for label, counts in sorted(groups.items(), key=lambda item: -item[1].total()):
        subs: list[list[Any]] = [[sub, n] for sub, n in counts.most_common() if sub]
        if len(subs) > MAX_SUBFOLDERS:
            rest = sum(n for _, n in subs[MAX_SUBFOLDERS:])
            subs = [*subs[:MAX_SUBFOLDERS], [f"{len(subs) - MAX_SUBFOLDERS} more", rest]]
        by_folder.append([label, counts.total(), subs])
    reasons = dict(files.reasons)
    # A Django glob's files are counted with their glob, not listed one by one.
    extra = sorted(
        ([p, r] for p, r in reasons.items() if r != "Django autoreload"),
        key=lambda item: (item[1], item[0]),
    )
    globs = []
    django_files = sum(1 for r in reasons.values() if r == "Django autoreload")
    django_dirs = 0
    for glob, count in files.glob_counts():
        if glob.reason == "Django autoreload":
            django_files += count
            django_dirs += 1
        else:
            globs.append([f"{glob.root}{os.sep}{glob.pattern}", glob.reason, count])
    file_count, dir_count = files.counts
    listing = {
        "file_count": file_count,
        "dir_count": dir_count,
        "folders": by_folder,
        "extra": extra[:MAX_FILES],
        "extra_more": max(0, len(extra) - MAX_FILES),
        "globs": globs[:MAX_FILES],
        "django": [django_dirs, django_files],
        "excluded": [list(item) for item in files.exclusions.summary()][:MAX_FILES],
    }
    return _fitted(listing, extra)


def _fitted(listing: dict[str, Any], extra: list[list[str]]) -> dict[str, Any]:
    """The listing with fewer files named, until it fits one error-log line."""
    keep = len(listing["extra"])
    while len(json.dumps(listing)) > MAX_JSON_CHARS and keep > 0:
        keep //= 2
        listing["extra"], listing["extra_more"] = extra[:keep], len(extra) - keep
        for item in listing["excluded"]:
            item[2] = item[2][:1]  # one example per pattern
        for group in listing["folders"]:
            group[2] = group[2][:3]
    return listing


def editable_roots() -> dict[str, str]:
    """The folders of the distributions installed in editable mode (pip install -e: their
    direct_url.json says so), each ending in a separator, to the distribution's name."""
    roots: dict[str, str] = {}
    for distribution in importlib.metadata.distributions():
        try:
            text = distribution.read_text("direct_url.json")
            direct = json.loads(text) if text else {}
        except (OSError, ValueError):
            continue
        url = str(direct.get("url", "")) if isinstance(direct, dict) else ""
        info = direct.get("dir_info") if isinstance(direct, dict) else None
        if url.startswith("file://") and isinstance(info, dict) and info.get("editable"):
            folder = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
            name = str(distribution.metadata["Name"] or folder)
            roots[os.path.join(os.path.abspath(folder), "")] = name
    # The deepest first: a package inside another's folder is its own.
    return dict(sorted(roots.items(), key=lambda item: -len(item[0])))


def _library_prefixes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The standard library's folders, and site-packages' (each ending in a separator)."""
    paths = sysconfig.get_paths()
    stdlib = {paths[k] for k in ("stdlib", "platstdlib") if k in paths}
    packages = {paths[k] for k in ("purelib", "platlib") if k in paths}
    with contextlib.suppress(AttributeError):  # an old virtualenv site.py has none
        packages.update(site.getsitepackages())
    return _prefixes(stdlib), _prefixes(packages)


def _prefixes(dirs: set[str]) -> tuple[str, ...]:
    both = {os.path.abspath(d) for d in dirs} | {os.path.realpath(d) for d in dirs}
    return tuple(os.path.join(d, "") for d in sorted(both))
