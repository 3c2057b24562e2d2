"""Non-Python files the app reads while it imports: a .env, a YAML, JSON, TOML or INI settings file.

Found with an audit hook on the "open" event (PEP 578): every open of the process goes through
it, from any library (python-dotenv, PyYAML, tomllib, configparser, json.load(open(...))), with
no patching. Recorded: opens for reading of regular files that exist, outside the standard
library, site-packages and the venv (sys.prefix, sys.base_prefix), the server root, system
folders (/proc, /dev, /sys, /run, /etc, /usr) and wsgidev itself; files inside the project folder
always count, unless they are in one of the first (a venv in the project). Module files (.py,
.pyc, extension modules) are the import recorder's. Each file's state is taken at the open,
before it is read, as the import recorder does for a module.

A file the app also opens for writing while importing is its state (a cache, a counter), not
settings: it is not watched (it would reload the app after every import, for ever).

Only while the app imports (Django's setup included): templates and static files are read at
request time, and Django's own template reload looks after templates. An audit hook cannot be
removed, so once the import is done it returns on its first test; it sees every audit event of
the process for its life (an open, an import, an exec...), hence the module-level flag and no
work before it.
"""

from __future__ import annotations

import contextlib
import os
import site
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable
from typing import Any

from wsgidev.daemon.monitor.state import FileState, file_state

# Module files and what imports read: recorded by the import recorder, or never the app's.
MODULE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyd", ".so", ".pth")
SYSTEM_DIRS = ("/proc", "/dev", "/sys", "/run", "/etc", "/usr")
WSGIDEV_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The recorder the hook hands opens to; None: not recording (the hook's first and only test).
_recorder: OpenedFiles | None = None
_hook_installed = False
_install_lock = threading.Lock()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    recorder = _recorder
    if recorder is None or event != "open":
        return
    # Whatever goes wrong here must not fail the app's open(); a try costs nothing (suppress()
    # would make an object per open).
    try:  # noqa: SIM105
        recorder.opened(args)
    except Exception:  # noqa: BLE001
        pass


def library_dirs() -> list[str]:
    """The standard library, site-packages and the interpreter's prefixes, real and as named."""
    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths = sysconfig.get_paths()
    found.update(
        paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths
    )
    with contextlib.suppress(AttributeError):  # an old virtualenv site.py has none
        found.update(site.getsitepackages())
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    if isinstance(user_site, str):
        found.add(user_site)
    found.add(WSGIDEV_DIR)
    dirs = {os.path.abspath(d) for d in found if d} | {os.path.realpath(d) for d in found if d}
    return sorted(dirs)


class OpenedFiles:
    """Records the files an audit hook sees opened for reading, until stop()."""

    def __init__(
        self,
        project_dir: str | None = None,
        skip_dirs: Iterable[str] = (),
        on_written: Callable[[str], None] | None = None,
    ) -> None:
        """on_written(path): a file take() returned was then opened for writing (unwatch it)."""
        self.project_dir = os.path.join(os.path.abspath(project_dir or os.getcwd()), "")
        # Never recorded, even inside the project (a venv in it); then the system's folders,
        # which count only outside the project (a project in /usr/src/app still counts).
        self._never = tuple(os.path.join(d, "") for d in [*library_dirs(), *skip_dirs])
        self._system = tuple(os.path.join(d, "") for d in SYSTEM_DIRS)
        self._lock = threading.Lock()
        self._found: dict[str, FileState] = {}
        self._taken: set[str] = set()
        self._writes: set[str] = set()  # opened for writing while importing: never recorded
        self._on_written = on_written
        self.started = False

    def start(self) -> None:
        """Record from now on (this process's only recorder); installs the hook once per process."""
        global _recorder, _hook_installed
        self.started = True
        with _install_lock:
            if not _hook_installed:
                sys.addaudithook(_audit)
                _hook_installed = True
            _recorder = self

    def stop(self) -> None:
        """Stop recording: the hook does nothing more than one test from now on."""
        global _recorder
        if _recorder is self:
            _recorder = None

    @property
    def recording(self) -> bool:
        """Whether opens are recorded now."""
        return _recorder is self

    def opened(self, args: tuple[Any, ...]) -> None:
        """One "open" audit event: (path, mode, flags)."""
        try:
            path, _mode, flags = args
        except ValueError:
            return
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str) or path.endswith(MODULE_SUFFIXES):
            return  # an int path is an fd
        path = os.path.abspath(path)
        # O_RDONLY is 0: any access bits mean a write (w, a, x, r+).
        if isinstance(flags, int) and flags & os.O_ACCMODE:
            self._written(path)
            return
        if path in self._found or path in self._writes or path.startswith(self._never):
            return
        if path.startswith(self._system) and not path.startswith(self.project_dir):
            return
        state = file_state(path)  # None: missing (a probe for an optional file), or not a file
        if state is not None:
            with self._lock:
                self._found.setdefault(path, state)

    def _written(self, path: str) -> None:
        """The app writes this file while importing: its state, not its settings (a cache, a
        counter). Watching it would reload the app after every import that writes it, for ever."""
        with self._lock:
            self._writes.add(path)
            taken = self._found.pop(path, None) is not None and path in self._taken
        if taken and self._on_written is not None:
            self._on_written(path)

    def take(self) -> list[tuple[str, FileState]]:
        """The files recorded since the last call, with their state when opened."""
        with self._lock:
            new = [(p, s) for p, s in self._found.items() if p not in self._taken]
            self._taken.update(p for p, _ in new)
        return new
