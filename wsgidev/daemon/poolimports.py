"""A service's pool processes' imports, watched by the service's own monitor.

Workers import their tasks in processes they fork: Dramatiq's worker processes import the
actors' modules (its main process never does), Celery's prefork children import what a task
imports lazily, an RQ work horse imports the job's module. Those processes inherit no monitor
thread, and one thread per pool process (a horse per job) would cost what a worker's pool is
meant to save. Instead each forked process tells the main process, through a pipe, the file and
state of every module it imports; the main process's monitor watches them beside its own.

A change of a file only processes that have since exited imported (an RQ job's horse: the next
job's horse imports it afresh) restarts nothing; the file is watched again when a process
imports it again."""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from wsgidev.daemon.monitor.bytecode import fresh_loader
from wsgidev.daemon.monitor.imports import find_after, module_file
from wsgidev.daemon.monitor.state import FileState, file_state
from wsgidev.shared.processes import pid_alive

# A pipe write of at most PIPE_BUF bytes is never interleaved with another process's.
_ATOMIC_WRITE = select.PIPE_BUF
# How long a pool process waits for room in a full pipe before it drops a record.
_FULL_WAIT_S = 0.05
# A file's importers are looked through for exited ones once there are this many.
_PRUNE_AT = 64


class PoolImports:
    """Made in the service's main process, before the program runs; see the module docstring."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._read_fd, self._write_fd = os.pipe()
        # A full pipe (the main process busy) does not stall a task for long (_Reporter).
        os.set_blocking(self._write_fd, False)
        # A file only pool processes imported -> each importer and the state it imported.
        self._importers: dict[str, dict[int, FileState]] = {}
        self._lock = threading.Lock()
        self._in_child = False
        monitor.relevant = self.relevant
        threading.Thread(target=self._read, name="wsgidev-pool-imports", daemon=True).start()
        os.register_at_fork(after_in_child=self._forked)

    def program_ended(self) -> None:
        """The program's main function returned or failed: its pool is gone, and the service
        waits for a fix of any file it or its pool imported; every change counts again."""
        self.monitor.relevant = None

    def _forked(self) -> None:
        """In a pool process: its monitor's thread is gone (its recorder goes too); its imports
        are told to the main process instead. A grandchild keeps its parent's reporter."""
        if self._in_child:
            return
        self._in_child = True
        self.monitor.stop()
        with contextlib.suppress(OSError):
            os.close(self._read_fd)
        sys.meta_path.insert(0, _Reporter(self._write_fd))

    def _read(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            found = []
            for line in lines:
                try:
                    pid, path, *state = json.loads(line)
                    found.append((pid, path, FileState(*state)))
                except (ValueError, TypeError):
                    continue
            self._take(found)

    def _take(self, found: list[tuple[int, str, FileState]]) -> None:
        """Watch what pool processes imported, one wake of the monitor for a read's worth."""
        new = []
        with self._lock:
            for pid, path, state in found:
                importers = self._importers.get(path)
                if importers is None:
                    if self.monitor.is_watching(path):
                        continue  # the main process's own (a module, --watch): it always counts
                    importers = self._importers[path] = {}
                    new.append((path, state))
                if len(importers) >= _PRUNE_AT:  # an RQ horse per job: the exited ones go
                    for gone in [p for p in importers if not pid_alive(p)]:
                        del importers[gone]
                importers[pid] = state
        if new:
            self.monitor.watch_imported(new)

    def relevant(self, files: list[str]) -> list[str]:
        """The changed files that still count: all but those only pool processes imported and
        none that is still running holds an older state of (exited; or imported it after the
        save, an RQ horse of the settle's time)."""
        own = {module_file(module) for module in list(sys.modules.values())}
        kept = []
        for path in files:
            with self._lock:
                importers = dict(self._importers.get(path, {}))
            now = file_state(path)
            if (
                not importers
                or path in own
                or any(state != now and pid_alive(pid) for pid, state in importers.items())
            ):
                kept.append(path)
            else:
                with self._lock:
                    self._importers.pop(path, None)
        return kept


class _Reporter:
    """A pool process's sys.meta_path finder that loads nothing: it tells the main process the
    found file and its state, with the stale-bytecode protection the monitor's recorder gives.
    (A module found but not loaded, a probe or a failed import, is told too: a failed import's
    file is what the fix will be saved in.)"""

    def __init__(self, write_fd: int) -> None:
        self._write_fd = write_fd

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        spec = find_after(self, fullname, path, target)
        if spec is None or not spec.has_location or not spec.origin:
            return spec
        origin = os.path.abspath(spec.origin)
        state = file_state(origin)
        fresh_loader(spec)
        if state is not None:
            line = (json.dumps([os.getpid(), origin, *state]) + "\n").encode()
            if len(line) <= _ATOMIC_WRITE:
                self._write(line)
        return spec

    def _write(self, line: bytes) -> None:
        for _ in range(2):
            try:
                os.write(self._write_fd, line)
                return
            except BlockingIOError:  # full: the main process is busy; room soon, or dropped
                with contextlib.suppress(OSError, ValueError):
                    select.select([], [self._write_fd], [], _FULL_WAIT_S)
            except OSError:  # the main process is gone
                return
