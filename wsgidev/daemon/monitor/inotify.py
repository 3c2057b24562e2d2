"""The Linux notification backend: one inotify descriptor, read by the monitor thread itself.

Why inotify_simple and not watchdog's observer, measured on a Wagtail site whose daemons watch
2,634 directories (module folders plus the template and locale folders Django registers):
watchdog's InotifyObserver starts one emitter thread, with its own inotify descriptor, per
watched directory: 2,657 threads in a serving daemon, about 60 MiB of stacks, and created at
about 400 a second on a busy machine, so a process that had just taken over saw no change for
~7 s. inotify_simple is a thin, maintained wrapper of the system calls: one descriptor holds a
watch per directory (inotify_add_watch takes microseconds: every directory is armed in
milliseconds), and the monitor thread waits on it with poll() beside a wake-up pipe, so a
daemon runs no thread for watching but the monitor's own. watchdog stays the backend where
there is no inotify (macOS FSEvents, notify.py). watchfiles was measured too and wakes every
step to check its stop event (see notify.py).

Events are hints: the monitor confirms every candidate by comparing the file's state with its
baseline. Opens and reads are left out of the mask, so processes reading the same files (the
standbys importing the standard library) do not wake it. A queue overflow asks for a full check.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from typing import Any

from inotify_simple import INotify
from inotify_simple import flags as inflags

from wsgidev.daemon.monitor.base import Monitor
from wsgidev.shared.inotifylibc import use_loaded_libc

# Writes, attribute changes (touch, a restored mtime), creation, deletion and renames, and the
# watched directory itself going away.
MASK = (
    inflags.MODIFY
    | inflags.ATTRIB
    | inflags.CLOSE_WRITE
    | inflags.CREATE
    | inflags.DELETE
    | inflags.MOVED_FROM
    | inflags.MOVED_TO
    | inflags.DELETE_SELF
    | inflags.MOVE_SELF
)
_SELF_GONE = inflags.DELETE_SELF | inflags.MOVE_SELF | inflags.IGNORED
# Arming thousands of watches holds the GIL for tens of milliseconds: yield it this often.
YIELD_EVERY = 100


class InotifyMonitor(Monitor):
    """Waits on one inotify descriptor for every watched directory; polls if watches run out."""

    name = "inotify"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._inotify: INotify | None = None
        self._wake_read = self._wake_write = -1
        self._poller = select.poll()
        self._dir_of: dict[int, str] = {}  # watch descriptor -> directory
        self._watch_of: dict[str, int] = {}  # directory -> watch descriptor

    def _open(self) -> None:
        use_loaded_libc()
        self._inotify = INotify(nonblocking=True)
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller.register(self._inotify.fileno(), select.POLLIN)
        self._poller.register(self._wake_read, select.POLLIN)

    def _close(self) -> None:
        # Forget the descriptors before closing them: a late _wake() must not write to a number
        # the process has given to another file meanwhile.
        inotify, self._inotify = self._inotify, None
        fds, self._wake_read, self._wake_write = (self._wake_read, self._wake_write), -1, -1
        if inotify is not None:
            inotify.close()
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _watch_dirs(self, dirs: set[str]) -> None:
        inotify = self._inotify
        if inotify is None or self._polling:
            return
        for count, directory in enumerate(sorted(dirs), start=1):
            if count % YIELD_EVERY == 0:
                time.sleep(0)  # let request threads run: a process that just took over is busy
            try:
                wd = inotify.add_watch(directory, MASK)
            except OSError as exc:
                if self._watch_failed(exc):
                    continue
                return
            old = self._watch_of.get(directory)
            if old is not None and old != wd:  # the directory was replaced: drop the old watch
                self._dir_of.pop(old, None)
                with contextlib.suppress(OSError):
                    inotify.rm_watch(old)
            self._dir_of[wd] = directory
            self._watch_of[directory] = wd

    def _wait(self, timeout_s: float) -> set[str] | None:
        inotify = self._inotify
        if inotify is None:
            self._stopping.wait(timeout_s)
            return set()
        try:
            ready = self._poller.poll(max(0, round(timeout_s * 1000)))
        except InterruptedError:
            ready = []
        paths: set[str] = set()
        overflow = False
        for fd, _ in ready:
            if fd == self._wake_read:
                with contextlib.suppress(OSError):
                    while os.read(self._wake_read, 512):
                        pass
                continue
            try:
                events = inotify.read(timeout=0)
            except OSError:
                continue  # closed by stop()
            for event in events:
                if event.mask & inflags.Q_OVERFLOW:
                    overflow = True
                    continue
                directory = self._dir_of.get(event.wd)
                if directory is None:
                    continue
                if event.mask & _SELF_GONE:
                    # The directory itself was deleted or replaced: the monitor watches it afresh.
                    paths.add(directory)
                    if event.mask & inflags.IGNORED:
                        self._dir_of.pop(event.wd, None)
                        if self._watch_of.get(directory) == event.wd:
                            del self._watch_of[directory]
                    continue
                paths.add(os.path.join(directory, event.name) if event.name else directory)
        return None if overflow or self._polling else paths

    def _wake(self) -> None:
        if self._wake_write >= 0:
            with contextlib.suppress(OSError):  # a full pipe wakes it already
                os.write(self._wake_write, b"\0")
