"""Warm a standby process with what an edit of the app rarely touches, before any change.

Most of an app's import time is not the project's own code: it is the standard library and
site-packages, and for Django ``django.setup()`` (settings, then every installed app and its
models: a Wagtail site spends 0.6 s there, and 0.003 s importing its URLconf and views). The
serving process writes the names of the library modules it imported; a standby process,
while it waits, imports them in that order and, for Django, runs ``django.setup()`` as
``get_wsgi_application()`` would. A hand-over then imports little more than the edited code.

Nothing here decides whether code is current. The monitor records these imports like any other,
and a standby whose files changed before its turn (settings.py, a models.py) is stale: it
restarts instead of serving (handover.py). A module that cannot be imported this early (a Django
model before the app registry is ready) ends the preload there, so that every module kept was
imported completely, in the serving process's order.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
import sysconfig
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from wsgidev.shared.serverroot import PRELOAD_NAME as MODULES_NAME


@dataclass
class Warmed:
    """What a preload did."""

    imported: int = 0
    seconds: float = 0.0
    stopped_at: str | None = None  # the module that could not be imported early
    django_error: BaseException | None = None  # django.setup() failed: the app's import will too


def library_dirs() -> tuple[str, ...]:
    """The folders of the standard library and site-packages, each ending in a separator."""
    paths = sysconfig.get_paths()
    found = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return tuple(os.path.join(os.path.realpath(p), "") for p in sorted(found))


def library_modules() -> list[str]:
    """Imported modules whose files are in a library folder, in the order they were imported."""
    dirs = library_dirs()
    real_dirs: dict[str, str] = {}  # realpath stats every component: once per folder
    names = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name == "__main__" or name.startswith(("wsgidev.", "_mod_wsgi_")):
            continue
        folder = os.path.dirname(path)
        if folder not in real_dirs:
            real_dirs[folder] = os.path.join(os.path.realpath(folder), "")
        if real_dirs[folder].startswith(dirs):
            names.append(name)
    return names


def record(server_root: str) -> None:
    """Write this process's library modules where the next standby processes read them."""
    record_in(Path(server_root) / MODULES_NAME)


def record_in(target: Path) -> None:
    """Write this process's library modules to target (whole: written aside, then renamed)."""
    temp = target.with_name(f".{target.name}.{os.getpid()}")
    temp.write_text(json.dumps(library_modules()), encoding="utf-8")
    os.replace(temp, target)


def forget(server_root: str) -> None:
    """Remove the record: standbys wait for the next serving process's."""
    with contextlib.suppress(FileNotFoundError):
        (Path(server_root) / MODULES_NAME).unlink()


def recorded(server_root: str) -> list[str] | None:
    """The recorded module names, or None when the serving process has not written them yet."""
    return recorded_in(Path(server_root) / MODULES_NAME)


def recorded_in(source: Path) -> list[str] | None:
    """The module names recorded in source, or None when there are none yet."""
    try:
        names = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return [name for name in names if isinstance(name, str)] if isinstance(names, list) else None


def preload(names: list[str], *, django: bool) -> Warmed:
    """Import names until one fails; for Django, set up the app registry and go on once more."""
    started = time.perf_counter()
    warmed = Warmed()
    # Their warnings were shown when the serving process imported them; once is enough.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warmed.stopped_at = _import_in_order(names, warmed)
        if django:
            try:
                import django as django_package

                # What get_wsgi_application() does first; it is safe to call again there.
                django_package.setup(set_prefix=False)
            except Exception as exc:
                warmed.django_error = exc
            else:
                warmed.stopped_at = _import_in_order(names, warmed)
    warmed.seconds = time.perf_counter() - started
    return warmed


def _import_in_order(names: list[str], warmed: Warmed) -> str | None:
    """Import each name not imported yet; stop at the first failure (returned)."""
    for name in names:
        if name in sys.modules:
            continue
        before = set(sys.modules)
        try:
            importlib.import_module(name)
        except KeyboardInterrupt:
            raise
        except BaseException:  # noqa: BLE001 - any failure ends the preload, nothing more
            _forget_orphans(before)
            return name
        warmed.imported += 1
    return None


def _forget_orphans(before: set[str]) -> None:
    """Drop modules a failed import left behind without their package, which importlib removed:
    ``import a.b.c as x`` would find a.b.c and then fail to reach it through a.b."""
    for name in set(sys.modules) - before:
        parent = name.rpartition(".")[0]
        while parent:
            if parent not in sys.modules:
                del sys.modules[name]
                break
            parent = parent.rpartition(".")[0]
