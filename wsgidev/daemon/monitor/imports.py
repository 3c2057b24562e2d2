"""Which files the running code came from: an import recorder, sys.modules, tracebacks.

The recorder is what lets the monitor judge a lazily imported module against the file it was
actually loaded from. It sits first in sys.meta_path, asks the finders after it, and stats the
found file before the loader reads it: an edit made any time after that, even before the monitor
thread has looked at the module, compares unequal. (hupper and werkzeug take their first look at
a module on their next scan, so an edit between the import and that scan is lost.)
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from wsgidev.daemon.monitor.bytecode import fresh_loader
from wsgidev.daemon.monitor.state import FileState, file_state

# A record younger than this may belong to an import still in progress: keep looking soon.
RECENT_S = 1.0


class ImportRecorder:
    """A sys.meta_path finder that loads nothing: it records the found file's state, then hands the spec on."""

    def __init__(self, on_record: Callable[[], None]) -> None:
        self._on_record = on_record
        self._lock = threading.Lock()
        # module name -> (file, its state when found, time.monotonic() when found)
        self._found: dict[str, tuple[str, FileState, float]] = {}
        self._wake_armed = False
        # Told of every file found, while set (the import guard lists what a dying import read).
        self.journal: Callable[[str], None] | None = None

    def install(self) -> None:
        """Put the recorder first in sys.meta_path."""
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def uninstall(self) -> None:
        """Take the recorder out of sys.meta_path."""
        if self in sys.meta_path:
            sys.meta_path.remove(self)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """The spec the finders after this one return, after recording its file's state."""
        # On a miss importlib goes on to ask the later finders itself: a second search, but only
        # for modules that do not exist (optional imports).
        spec = find_after(self, fullname, path, target)
        if spec is None or not spec.has_location or not spec.origin:
            return spec  # frozen, built-in, namespace package, or not found
        origin = os.path.abspath(spec.origin)
        journal = self.journal
        if journal is not None:
            journal(origin)
        state = file_state(origin)  # None inside a zip: nothing to watch
        fresh_loader(spec)  # its bytecode cache is read only if it cannot hold older code
        if state is not None:
            with self._lock:
                self._found[fullname] = (origin, state, time.monotonic())
                wake, self._wake_armed = self._wake_armed, False
            if wake:
                self._on_record()
        return spec

    def loaded(self) -> list[tuple[str, FileState]]:
        """Take the records whose module is in sys.modules; the rest wait (importing, failed, or a probe)."""
        with self._lock:
            names = [name for name in self._found if name in sys.modules]
            taken = [self._found.pop(name) for name in names]
        return [(path, state) for path, state, _ in taken]

    def wake_on_next_record(self) -> None:
        """Call on_record at the next record (once): the monitor is about to wait long."""
        # Not on every record: waking the monitor for each module of a startup's import burst
        # doubled the import time in a measurement; while imports are recent it looks every 0.25 s.
        with self._lock:
            self._wake_armed = True

    def is_pending(self, name: str) -> bool:
        """Whether a record for this module is waiting to be taken."""
        with self._lock:
            return name in self._found

    def pending_states(self) -> list[tuple[str, FileState]]:
        """The records not taken yet (a copy, safe from any thread)."""
        with self._lock:
            return [(path, state) for path, state, _ in self._found.values()]

    def state_of(self, path: str) -> FileState | None:
        """The state recorded when this file was found, if a record is still waiting."""
        with self._lock:
            for found, state, _ in self._found.values():
                if found == path:
                    return state
        return None

    def recent(self) -> bool:
        """Whether a waiting record is young enough that its import may still be running."""
        now = time.monotonic()
        with self._lock:
            return any(now - when < RECENT_S for _, _, when in self._found.values())


def find_after(
    recorder: Any,
    fullname: str,
    path: Sequence[str] | None,
    target: ModuleType | None,
) -> ModuleSpec | None:
    """Ask the finders after the recorder (a finder of sys.meta_path), in order, as importlib would."""
    meta_path = list(sys.meta_path)
    try:
        start = meta_path.index(recorder) + 1
    except ValueError:
        return None
    for finder in meta_path[start:]:
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(fullname, path, target)
        if spec is not None:
            return spec  # type: ignore[no-any-return]
    return None


def module_file(module: object) -> str | None:
    """The absolute file a module says it came from, or None."""
    if not isinstance(module, ModuleType):
        return None
    # __dict__, not getattr: a module-level __getattr__ may do anything for a missing __file__.
    path = module.__dict__.get("__file__")
    return os.path.abspath(path) if isinstance(path, str) and path else None


def traceback_files(exc: BaseException) -> list[str]:
    """The files an exception points at: a SyntaxError's file and every frame's, through its chain."""
    files: dict[str, None] = {}
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, SyntaxError) and current.filename:
            files[os.path.abspath(current.filename)] = None
        for frame, _ in traceback.walk_tb(current.__traceback__):
            files[os.path.abspath(frame.f_code.co_filename)] = None
        pending += [current.__cause__, current.__context__]
    return [path for path in files if os.path.isfile(path)]


def process_start_ns() -> int | None:
    """When this process started on the wall clock, rounded up a clock tick (Linux); None when unknown."""
    try:
        with open("/proc/self/stat", "rb") as stat_file:
            # The command name may contain spaces and parentheses: split after the last ")".
            fields = stat_file.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22, starttime: clock ticks after boot
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        # Rounded up: a file saved just before the process started (often the very edit that
        # restarted it) must not count as touched after the process's imports.
        start_ns = (start_ticks + 1) * 1_000_000_000 // ticks_per_s
        age_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - start_ns
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.time_ns() - age_ns
