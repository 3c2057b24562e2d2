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
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

from wsgidev.daemon.monitor.bytecode import fresh_loader
from wsgidev.daemon.monitor.imports import find_after, module_file
from wsgidev.daemon.monitor.state import FileState, file_state

# A pipe write of at most PIPE_BUF bytes is never interleaved with another process's.
_ATOMIC_WRITE = 4096


class PoolImports:
    """Made in the service's main process, before the program runs; see the module docstring."""

    def __init__(self, monitor: Any) -> None:
        self.monitor = monitor
        self._read_fd, self._write_fd = os.pipe()
        # A full pipe (the main process busy) drops a record rather than stall a task.
        os.set_blocking(self._write_fd, False)
        self._importers: dict[str, set[int]] = {}  # file -> the pool processes that imported it
        self._lock = threading.Lock()
        self._in_child = False
        monitor.relevant = self.relevant
        threading.Thread(target=self._read, name="wsgidev-pool-imports", daemon=True).start()
        os.register_at_fork(after_in_child=self._forked)

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
        with os.fdopen(self._read_fd, "rb") as pipe:
            for line in pipe:
                try:
                    pid, path, *state = json.loads(line)
                    found = FileState(*state)
                except (ValueError, TypeError):
                    continue
                with self._lock:
                    self._importers.setdefault(path, set()).add(pid)
                self.monitor.watch_imported(path, found)

    def relevant(self, files: list[str]) -> list[str]:
        """The changed files that still count: the main process's own, and those a pool process
        that is still running imported."""
        own = {module_file(module) for module in list(sys.modules.values())}
        with self._lock:
            importers = {path: set(self._importers.get(path, ())) for path in files}
        kept = []
        for path in files:
            pids = importers[path]
            if not pids or path in own or any(map(_running, pids)):
                kept.append(path)
            else:
                with self._lock:
                    self._importers.pop(path, None)
        return kept


class _Reporter:
    """A pool process's sys.meta_path finder that loads nothing: it tells the main process the
    found file and its state, with the stale-bytecode protection the monitor's recorder gives."""

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
                with contextlib.suppress(OSError):  # full, or the main process is gone
                    os.write(self._write_fd, line)
        return spec


def _running(pid: int) -> bool:
    """Whether the process is there and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False
