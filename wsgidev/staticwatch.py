"""Static folders watched from the command: a saved stylesheet is news for the browsers at once,
since Apache or the finders serve the file from disk as it is (wsgidev/livereload.py).

On Linux, one inotify descriptor (inotify_simple, as the daemons' monitor and the root watch use)
read by one thread, a watch per folder added as folders appear; elsewhere watchdog's native
observer (FSEvents), the hard dependency there. watchdog is not used on Linux, so it is not
installed there: a project that pins an old watchdog, or none, keeps its own. A folder on a mount
that sends no notification of changes made beneath it (wsgidev/shared/mounts.py) is walked every
--poll-interval instead, by one more thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterable

from wsgidev.shared.mounts import MountTable

READ_TIMEOUT_MS = 500
OnChange = Callable[[str], None]  # called with the changed file's URL path


def _is_temporary(path: str) -> bool:
    """An editor's swap or backup file, never served."""
    name = os.path.basename(path)
    return name.startswith(".") or name.endswith("~")


class StaticWatcher:
    """Calls on_change(url_path) from a daemon thread for each file written under the folders."""

    def __init__(self, on_change: OnChange, poll_interval_s: float = 1.0) -> None:
        self._on_change = on_change
        self._poll_interval_s = poll_interval_s
        self._backend: _InotifyWatcher | _WatchdogWatcher
        if sys.platform.startswith("linux"):
            self._backend = _InotifyWatcher(on_change)
        else:
            self._backend = _WatchdogWatcher(on_change)
        self._poller: _PollingWatcher | None = None
        # The command's thread and the log reader (each daemon announces its folders) call watch().
        self._lock = threading.Lock()

    def watch(self, folders: Iterable[tuple[str, str]]) -> None:
        """Watch each (URL prefix, folder) and everything below it."""
        with self._lock:
            self._watch(folders)

    def _watch(self, folders: Iterable[tuple[str, str]]) -> None:
        table = MountTable()
        for url, folder in folders:
            if not os.path.isdir(folder):
                continue
            url = url.rstrip("/") + "/"
            if table.silent(folder) is not None:
                if self._poller is None:
                    self._poller = _PollingWatcher(self._on_change, self._poll_interval_s)
                self._poller.watch(url, folder)
            else:
                self._backend.watch(url, folder)

    def stop(self) -> None:
        """Stop watching (the threads end)."""
        self._backend.stop()
        if self._poller is not None:
            self._poller.stop()


class _PollingWatcher:
    """Walks its folders every interval and reports each file whose mtime or size moved."""

    def __init__(self, on_change: OnChange, interval_s: float) -> None:
        self._on_change = on_change
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._folders: dict[str, str] = {}  # folder -> URL prefix
        self._seen: dict[str, tuple[int, int]] = {}  # file -> (mtime_ns, size)
        self._stopped = threading.Event()
        threading.Thread(target=self._run, name="wsgidev-static-poll", daemon=True).start()

    def watch(self, url: str, folder: str) -> None:
        with self._lock:
            if folder in self._folders:
                return
        baseline: dict[str, tuple[int, int]] = {}
        self._walk(folder, url, report=False, seen=baseline)  # what is there now
        with self._lock:  # polled only from now on: nothing in the baseline is news
            self._seen.update(baseline)
            self._folders[folder] = url

    def _walk(
        self, folder: str, url: str, report: bool, seen: dict[str, tuple[int, int]] | None = None
    ) -> None:
        seen = self._seen if seen is None else seen
        stack = [(folder, url)]
        while stack:
            here, prefix = stack.pop()
            try:
                entries = list(os.scandir(here))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, prefix + entry.name + "/"))
                        continue
                    info = entry.stat()
                except OSError:
                    continue
                state = (info.st_mtime_ns, info.st_size)
                if seen.get(entry.path) != state:
                    seen[entry.path] = state
                    if report and not _is_temporary(entry.name):
                        self._on_change(prefix + entry.name)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            with self._lock:
                folders = list(self._folders.items())
            for folder, url in folders:
                self._walk(folder, url, report=True)

    def stop(self) -> None:
        self._stopped.set()


class _InotifyWatcher:
    def __init__(self, on_change: OnChange) -> None:
        from inotify_simple import INotify, flags

        from wsgidev.shared.inotifylibc import use_loaded_libc

        self._flags = flags
        self._mask = (
            flags.CLOSE_WRITE | flags.MOVED_TO | flags.CREATE | flags.MODIFY | flags.ONLYDIR
        )
        self._on_change = on_change
        use_loaded_libc()
        self._inotify = INotify()
        self._where: dict[int, tuple[str, str]] = {}  # watch -> (URL of the folder, folder)
        self._watched: set[str] = set()
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._run, name="wsgidev-static-watch", daemon=True).start()

    def watch(self, url: str, folder: str, appeared: bool = False) -> None:
        """Watch folder and those below it; appeared: it is new, so the files already in it
        (written before its watch was armed) are changes too. Each folder's watch is armed
        before it is listed, so that nothing created meanwhile goes unseen."""
        if not self._add(url, folder):
            return
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                self.watch(url + entry.name + "/", entry.path, appeared)
            elif appeared and not _is_temporary(entry.name):
                self._on_change(url + entry.name)

    def _add(self, url: str, folder: str) -> bool:
        with self._lock:
            if folder in self._watched or self._stopped:
                return False
            try:
                descriptor = self._inotify.add_watch(folder, self._mask)
            except OSError:  # gone meanwhile, or out of watches: that folder goes unwatched
                return False
            self._watched.add(folder)
            self._where[descriptor] = (url, folder)
            return True

    def _run(self) -> None:
        flags = self._flags
        while not self._stopped:
            # A timeout, so that stop() is seen: the descriptor is closed here, by its reader.
            for event in self._inotify.read(timeout=READ_TIMEOUT_MS):
                where = self._where.get(event.wd)
                if where is None:
                    continue
                if event.mask & flags.IGNORED:
                    # The folder went away (rm -rf static/css): one made again is new.
                    with self._lock:
                        self._where.pop(event.wd, None)
                        self._watched.discard(where[1])
                    continue
                if not event.name:
                    continue
                url, folder = where
                path = os.path.join(folder, event.name)
                if event.mask & flags.ISDIR:
                    if event.mask & (flags.CREATE | flags.MOVED_TO):
                        self.watch(url + event.name + "/", path, appeared=True)
                    continue
                if event.mask & flags.CREATE:
                    continue  # an empty new file: its write follows
                if not _is_temporary(path):
                    self._on_change(url + event.name)
        with contextlib.suppress(OSError):
            self._inotify.close()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True


class _WatchdogWatcher:
    def __init__(self, on_change: OnChange) -> None:
        from watchdog.observers import Observer

        self._on_change = on_change
        self._watched: set[str] = set()  # each daemon announces the folders again: once each
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()

    def watch(self, url: str, folder: str) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler

        if folder in self._watched:
            return
        self._watched.add(folder)
        on_change = self._on_change

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                if event.is_directory or event.event_type not in ("modified", "created", "moved"):
                    return
                path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
                if not _is_temporary(path):
                    relative = os.path.relpath(path, folder).replace(os.sep, "/")
                    on_change(url + relative)

        self._observer.schedule(Handler(), folder, recursive=True)

    def stop(self) -> None:
        self._observer.stop()
