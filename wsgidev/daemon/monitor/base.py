"""The Monitor base class: when to look, settling a burst, and the decision to restart.

A backend (notify.py, polling.py) only says how to wait for a hint. Every decision compares a
file's state now with its baseline (watched.py); a notification is never trusted on its own.
"""

from __future__ import annotations

import atexit
import errno
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from wsgidev.daemon.monitor.bytecode import NS_PER_S, invalidate
from wsgidev.daemon.monitor.exclude import Exclusions
from wsgidev.daemon.monitor.globs import WatchGlob
from wsgidev.daemon.monitor.imports import ImportRecorder, process_start_ns, traceback_files
from wsgidev.daemon.monitor.listing import watch_list
from wsgidev.daemon.monitor.opened import OpenedFiles
from wsgidev.daemon.monitor.state import STALE, FileState, file_state, touched_after
from wsgidev.daemon.monitor.watched import SCAN_INTERVAL_S, WatchedFiles
from wsgidev.shared import events, protocol
from wsgidev.shared.mounts import MountTable
from wsgidev.shared.protocol import MAX_EVENT_FILES
from wsgidev.shared.spec import MAX_SETTLE_S, STAGING_SETTLE_S

if TYPE_CHECKING:
    from wsgidev.daemon.monitor.django_signals import DjangoSignals

OnChange = Callable[[list[str]], None]
# The longest a burst holds a reload back: this many settle times, and never less than this.
SETTLE_LIMIT_FACTOR = 30
MIN_SETTLE_LIMIT_S = 2.0


def log(message: str) -> None:
    """One plain line in the error log."""
    sys.stderr.write(f"wsgidev monitor: {message}\n")
    sys.stderr.flush()


class Monitor:
    """Watches the running code's files and restarts the process once when any of them changes."""

    name: ClassVar[str] = "base"

    def __init__(
        self,
        *,
        on_change: OnChange,
        watch: Iterable[str] = (),
        poll_interval_s: float = 1.0,
        settle_s: float = STAGING_SETTLE_S,
        max_settle_s: float | None = None,
        safety_interval_s: float = 60.0,
        process_started_ns: int | None = None,
        exclude: Iterable[str] = (),
        project_dir: str | None = None,
        watch_opened: bool = False,
        script: str | None = None,
        server_root: str | None = None,
    ) -> None:
        """exclude: glob patterns of files that never reload (exclude.py), relative ones
        anchored at project_dir (default: the working directory); watch_opened: also watch the
        files opened for reading until import_done() (opened.py), except in server_root (wsgidev's);
        script: the WSGI script file, which is run without an import."""
        self.on_change = on_change
        self.poll_interval_s = poll_interval_s
        if not 0 <= settle_s <= MAX_SETTLE_S:  # also nan
            raise ValueError(f"settle_s must be 0 to {MAX_SETTLE_S:g} seconds, got {settle_s}")
        self.settle_s = settle_s
        # A file written without a pause (a log beside the code) must not hold a reload back
        # for ever; a deploy that pauses less than settle_s for this long gets a reload midway.
        self.max_settle_s = (
            max(MIN_SETTLE_LIMIT_S, SETTLE_LIMIT_FACTOR * settle_s)
            if max_settle_s is None
            else max_settle_s
        )
        self.safety_interval_s = safety_interval_s
        self._watch_specs = list(watch)
        self._script = script
        self._started_ns = process_started_ns
        self.project_dir = os.path.abspath(project_dir or os.getcwd())
        self._recorder = ImportRecorder(self._import_recorded)
        self._exclusions = Exclusions(exclude, self.project_dir)
        self._files = WatchedFiles(self._recorder, self._exclusions)
        self._server_root = server_root
        self._opened = (
            OpenedFiles(
                self.project_dir,
                [server_root] if server_root else [],
                on_written=self._files.forget,
            )
            if watch_opened
            else None
        )
        self._listed = False  # the listing of what is watched was emitted
        self._lock = threading.Lock()  # guards _queued, filled from other threads
        self._queued: list[tuple[str, FileState | None]] = []
        self._scan_requested = True
        self._app_loaded = False
        self._django: DjangoSignals | None = None
        self._armed = False
        self._polling = False  # a notification backend that ran out of watches polls instead
        self._counted_dirs = 0  # the folder count last reported
        # Watched folders on mounts whose changes made elsewhere send no event (wsgidev/shared/mounts.py):
        # their files are compared every poll_interval_s as well.
        self._silent_dirs: set[str] = set()
        self._silent_mounts: set[str] = set()
        self._next_poll = 0.0
        self._restarting = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # How wsgidev.monitor.start() made it, for resume() after a deferred start.
        self.backend_name = "auto"
        self.resume_options: dict[str, Any] = {}
        # The WSGI script's and the --watch files' states when the app's import began, for a
        # monitor armed after it (a standby that takes over): see import_starting().
        self._states_at_import: dict[str, FileState | None] = {}
        self._import_started_ns: int | None = None
        # While arm() takes the baselines of a monitor armed after the import (not None): a
        # file found then that was touched after the import began counts as changed.
        self._judge_since_ns: int | None = None
        # Given the changed files, the ones that still count (None: all do); see _dispatch.
        self.relevant: Callable[[list[str]], list[str]] | None = None

    # -- what a backend provides -------------------------------------------------------------

    def _open(self) -> None:
        """Start the backend's machinery; raising here makes start() fall back to polling."""

    def _close(self) -> None:
        """Stop the backend's machinery."""

    def _watch_dirs(self, dirs: set[str]) -> None:
        """Begin watching more directories."""

    def _wait(self, timeout_s: float) -> set[str] | None:
        """Wait for a hint: paths that may have changed, or None to check every file."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Make a waiting _wait() return now."""
        raise NotImplementedError

    def _watch_failed(self, exc: OSError) -> bool:
        """A directory could not be watched: true to go on with the next one (it is gone or
        unreadable: the safety net still stats its files); false once out of watches, when every
        baseline is polled from now on."""
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
            return True
        log(f"{exc}; polling every {self.poll_interval_s:g} s instead")
        self._polling = True
        return False

    def _idle_timeout(self, next_full_check: float) -> float:
        """How long the thread may wait when nothing happens."""
        if self._polling:
            return self.poll_interval_s  # a notification backend out of watches
        remaining = max(0.0, next_full_check - time.monotonic())
        if self._silent_dirs:
            remaining = min(remaining, max(0.0, self._next_poll - time.monotonic()))
        if self._files.has_unchecked():
            return 0.0
        if self._recorder.recent() or self._files.modules_pending():
            return min(remaining, SCAN_INTERVAL_S)  # an import may be under way: look again soon
        self._recorder.wake_on_next_record()  # a request-time import ends the long wait
        return remaining

    # -- public API ----------------------------------------------------------------------------

    @property
    def watching(self) -> bool:
        """Whether start() has been called (a deferred monitor only records imports)."""
        return self._thread is not None

    def is_watching(self, path: str) -> bool:
        """Whether a file has a baseline, so a change to it is noticed."""
        return os.path.abspath(path) in self._files

    def arm(self) -> None:
        """Open the backend, start recording imports and take the baselines; no thread (see start)."""
        if self._armed:
            return
        self._open()
        self._recorder.install()
        self._record_opens()
        # Modules already imported are judged against the process start: their import came after it.
        if not self._files.last_scan_ns:
            self._files.last_scan_ns = self._started_ns or process_start_ns() or time.time_ns()
        # Files first found from here to the end of arm() (globs' files, Django's template and
        # locale folders) were not stat'ed when the import began: one touched since then counts
        # as changed.
        self._judge_since_ns = self._import_started_ns
        try:
            for spec in self._watch_specs:
                glob = WatchGlob.parse(spec, "--watch")
                if glob is not None:
                    self._files.add_glob(glob, self._baseline)
                else:
                    path = os.path.abspath(spec)
                    self._files.add(path, self._state_at_import(path), reason="--watch")
            if self._script:
                # Exec'd without an import finder: its state is taken before it runs (here, or
                # when the import began if that came first).
                path = os.path.abspath(self._script)
                self._files.add(
                    path, self._state_at_import(path), restart=True, reason="the WSGI script"
                )
            self._refresh()
        finally:
            self._judge_since_ns = None
        # Kept until here: a fallback made after a failed arm takes them (take_import_notes).
        self._states_at_import = {}
        self._armed = True

    def start(self) -> None:
        """Arm, then watch from a daemon thread until a restart or stop()."""
        self.arm()
        self._thread = threading.Thread(target=self._run, name=f"wsgidev-monitor-{self.name}")
        self._thread.daemon = True  # never keep a dying daemon process alive
        self._thread.start()
        atexit.register(self.stop)

    def stop(self) -> None:
        """Stop the thread and the backend and remove the import recorder; safe to call twice."""
        self._stopping.set()
        self._recorder.uninstall()
        self.import_done()
        atexit.unregister(self.stop)
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        # Closed once the thread is out of its wait: it must not wait on a closed descriptor.
        if thread is None or thread is threading.current_thread() or not thread.is_alive():
            self._close()

    def record_imports(self) -> None:
        """Record imports and their files' states, but watch nothing until start() (a standby)."""
        self._recorder.install()
        self._record_opens()
        if not self._files.last_scan_ns:
            self._files.last_scan_ns = self._started_ns or process_start_ns() or time.time_ns()

    def import_starting(self) -> None:
        """The app's import begins now. A monitor armed later (a standby's, at its take-over)
        takes the WSGI script's and the --watch files' baselines from now: their states at
        arm() could already hold a save made during the import (a script saved while a taker
        imported it went unseen), which the import may not have read."""
        if self._armed:
            return
        self._import_started_ns = time.time_ns()
        paths = [os.path.abspath(s) for s in self._watch_specs if WatchGlob.parse(s) is None]
        if self._script:
            paths.append(os.path.abspath(self._script))
        self._states_at_import = {path: file_state(path) for path in paths}

    def take_import_notes(self, other: Monitor) -> None:
        """Take what import_starting() noted in another monitor (one this replaces, unarmed)."""
        self._import_started_ns = other._import_started_ns
        self._states_at_import = dict(other._states_at_import)

    def _state_at_import(self, path: str) -> FileState | None:
        """The file's state when the app's import began if that was noted, else now."""
        if path in self._states_at_import:
            return self._states_at_import[path]
        return self._baseline(path)

    def _baseline(self, path: str) -> FileState | None:
        """A newly found file's baseline: its state now, or STALE while arm() judges the files of
        an import that began earlier and this one was touched since."""
        since_ns = self._judge_since_ns
        if since_ns is not None and touched_after(path, since_ns):
            return STALE
        return file_state(path)

    def stale(self) -> list[str]:
        """The files that changed since their baseline, looked at now; from any thread once
        started, from one thread before (it takes in what was imported meanwhile)."""
        if not self._armed:
            self._intake()
            self._files.scan_modules()
        return self._files.stale()

    def app_loaded(self) -> None:
        """Say the app imported: look for new modules now and, once Django is ready, use its signals."""
        self.import_done()
        self._app_loaded = True
        self._scan_requested = True
        if self._armed:
            self._wake()

    def settle_imported(self, limit_s: float) -> tuple[list[str], float, bool]:
        """From the thread that just imported the app, before it serves: while the code it
        imported (modules, and the files a failed import's traceback names) was saved within
        settle_s (a deploy under way when this process started), wait until it has been quiet
        that long, up to limit_s. The files that changed since their import (this process holds
        a tree half replaced), how long it waited, and whether the code went quiet."""
        started = time.monotonic()
        while True:
            with self._lock:  # the monitor thread moves records from the recorder to baselines
                recorded = [
                    *self._files.baselines().items(),
                    *self._recorder.pending_states(),
                    *self._queued,
                ]
            # Code only: a data file rewritten all the time must not hold every start back.
            imported = {path: state for path, state in recorded if path.endswith(".py")}
            now = {path: file_state(path) for path in imported}
            # STALE: touched after this process started; None: did not exist when imported.
            changed = sorted(path for path, state in now.items() if state != imported[path])
            now_ns = time.time_ns()
            newest_ns = max(
                (s.mtime_ns for s in now.values() if s and s.mtime_ns <= now_ns + NS_PER_S),
                default=0,
            )  # a clock ahead (an NFS server's) would hold every start back
            quiet_in_s = (newest_ns - now_ns) / NS_PER_S + self.settle_s
            waited_s = time.monotonic() - started
            if quiet_in_s <= 0 or self._stopping.is_set():
                return changed, waited_s, True
            if waited_s + quiet_in_s > limit_s:
                return changed, waited_s, False
            self._stopping.wait(quiet_in_s)

    def import_done(self) -> None:
        """The app's import is over (or failed): files opened from now on are not watched."""
        if self._opened is not None:
            self._opened.stop()

    def _record_opens(self) -> None:
        # Once: a standby records from its start, and resume() arms the same monitor later.
        if self._opened is not None and not self._app_loaded and not self._opened.started:
            self._opened.start()

    def watch_exception(self, exc: BaseException) -> None:
        """Watch the files a failed import points at, so that saving a fix restarts the process."""
        # The recorder's state is from before the failed module was read; a later stat could
        # already include the fix.
        found = [(p, self._recorder.state_of(p) or file_state(p)) for p in traceback_files(exc)]
        with self._lock:
            self._queued += found
        if self._armed:
            self._wake()

    def watch_imported(self, found: list[tuple[str, FileState]]) -> None:
        """Watch files another process imported, each against its state then (a pool
        process's, wsgidev/daemon/poolimports.py); safe from any thread."""
        with self._lock:
            self._queued += found
        if self._armed:
            self._wake()

    def watch_files(self, paths: Iterable[str], since_ns: int) -> None:
        """Watch files another process imported: touched after since_ns, each counts as changed."""
        found = [(p, STALE if touched_after(p, since_ns) else file_state(p)) for p in paths]
        with self._lock:
            self._queued += found
        if self._armed:
            self._wake()

    def journal_imports(self, journal: Callable[[str], None] | None) -> None:
        """Tell journal of each file an import finds from now on (None: stop)."""
        self._recorder.journal = journal

    def check_once(self, hint: Iterable[str] | None = None) -> list[str]:
        """One step: take in new files, compare, settle, restart or let Django handle; the changed files."""
        # hint: the paths a notification named; None compares every watched file (polling).
        if self._restarting:
            return []
        self._refresh()
        # Compared after their directories are watched: an edit from now on sends an event.
        fresh = self._files.take_unchecked()
        changed = self._changed(None if hint is None else {*hint, *fresh})
        # Taken after the comparison, not before the refresh: a big site's first look after a
        # take-over refreshes for most of a second, and a save made meanwhile is found by the
        # comparison; dated by a time before it, its stamp was refused as "after it was seen",
        # and a sibling's report of the same save looked like another save (two lines).
        seen_s = time.time()
        if not changed:
            return []
        self._settle(changed)
        if self._stopping.is_set():
            return []  # shutting down already: no signal, no event
        self._dispatch(changed, seen_s)
        return sorted(changed)

    # -- the loop ------------------------------------------------------------------------------

    def _run(self) -> None:
        next_full_check = time.monotonic() + self.safety_interval_s
        while not self._stopping.is_set() and not self._restarting:
            hint = self._wait(self._idle_timeout(next_full_check))
            if self._stopping.is_set():
                break
            if time.monotonic() >= next_full_check:
                hint = None  # the safety net: events can be lost (queue overflow, network mounts)
                self._scan_requested = True
            if hint is None:
                next_full_check = time.monotonic() + self.safety_interval_s
            elif self._silent_dirs and time.monotonic() >= self._next_poll:
                self._next_poll = time.monotonic() + self.poll_interval_s
                hint = hint | self._files.in_dirs(self._silent_dirs)
            try:
                self.check_once(hint)
            except Exception:
                log("check failed:\n" + traceback.format_exc())
                self._stopping.wait(self.poll_interval_s)

    def _intake(self) -> None:
        """Take in the files of failed imports and of modules imported since the last look."""
        with self._lock:  # one move, as settle_imported() reads them
            queued, self._queued = self._queued, []
            for path, state in queued:
                self._files.add(path, state, restart=True)
            for path, state in self._recorder.loaded():
                self._files.add(path, state, restart=True)
        if self._opened is not None:
            # Not marked restart: Django may claim one (a .mo of a locale folder); any other
            # restarts the process, as a module does.
            for path, state in self._opened.take():
                self._files.add(path, state, reason="opened while importing")

    def _refresh(self) -> None:
        """Take in what appeared since the last look, and watch the directories it is in."""
        # Read once, before the intake: app_loaded() (a request thread) may set it meanwhile,
        # and the listing must not be taken before what the app's import added is in.
        app_loaded = self._app_loaded
        self._intake()
        if self._scan_requested or self._files.scan_due():
            self._scan_requested = False
            self._files.scan_modules()
        if app_loaded:
            self._refresh_django()
        self._watch_new_dirs()
        files, dirs = self._files.counts
        if app_loaded and self._armed and dirs > self._counted_dirs * 1.1:
            # When the app is in, and again as request-time imports add a tenth more folders.
            self._counted_dirs = dirs
            events.emit(protocol.Watching(file_count=files, dir_count=dirs, backend=self.name))
            if not self._listed:
                self._listed = True
                events.emit(
                    protocol.WatchList(
                        **watch_list(self._files, self.project_dir, self._server_root)
                    )
                )

    def _changed(self, hint: set[str] | None) -> dict[str, FileState | None]:
        changed = self._files.changed(hint)
        self._watch_new_dirs()  # a glob may have found new directories
        return changed

    def _settle(self, changed: dict[str, FileState | None]) -> None:
        """Collect further changes until the tree is quiet for settle_s, so a burst (an editor's
        save, a git checkout, a deploy) ends in one restart, and the new process imports the
        whole of it. Quiet means no watched file changed and, where the backend names files (not
        polling), no Python file or folder appeared or changed in a watched folder: a deploy's
        new module (not imported yet, so not watched) is written beside the ones that import it."""
        started = time.monotonic()
        quiet_until = started + self.settle_s
        while not self._stopping.is_set():
            now = time.monotonic()
            if now >= quiet_until or now - started >= self.max_settle_s:
                return
            hint = self._wait(quiet_until - now)
            # Judged on what the backend named, before the polled files of silent folders join
            # it: those are named on every pass, changed or not.
            arriving = hint is not None and any(map(self._code_activity, hint))
            if hint is not None and self._silent_dirs:
                # A burst on the far side of a mount (a git checkout on the host) sends no hints.
                hint = hint | self._files.in_dirs(self._silent_dirs)
            more = self._changed(hint)
            new = {path: state for path, state in more.items() if changed.get(path, STALE) != state}
            if new:
                changed.update(new)
            if new or arriving:
                quiet_until = time.monotonic() + self.settle_s

    def _code_activity(self, path: str) -> bool:
        """Whether a hint in a watched folder is part of code arriving: a Python file or a folder
        (a new package), not one the exclude option names or wsgidev's own."""
        if path in self._files:
            return False  # a watched file counts when its state changes, not on every event
        if self._server_root and path.startswith(self._server_root + os.sep):
            return False
        if self._exclusions.rule_for(path) is not None:
            return False
        return path.endswith(".py") or os.path.isdir(path)

    def _dispatch(self, changed: dict[str, FileState | None], seen_s: float) -> None:
        if self.relevant is not None:
            # Files only processes that have exited imported (an RQ job's work horse): not
            # watched any more, until another process imports them.
            keep = set(self.relevant(sorted(changed)))
            for path in set(changed) - keep:
                self._files.drop(path)
                del changed[path]
            if not changed:
                return
        files = sorted(changed)
        saved_at = saved_at_s(files, seen_s, self._started_ns or process_start_ns())
        django = self._django
        if (
            django is not None
            and not any(map(self._files.needs_restart, files))
            and all(django.offer(path) for path in files)
        ):
            # Handled in place (templates, translations): these states are the new baselines.
            self._files.accept(changed)
            events.emit(
                protocol.Handled(
                    files=tuple(files[:MAX_EVENT_FILES]), count=len(files), saved_at=saved_at
                )
            )
            return
        self._restarting = True
        invalidate(files)  # before any new process imports them
        events.emit(
            protocol.Change(
                files=tuple(files[:MAX_EVENT_FILES]),
                count=len(files),
                backend=self.name,
                saved_at=saved_at,
            )
        )
        self.on_change(files)

    def _refresh_django(self) -> None:
        if self._django is None:
            registry = sys.modules.get("django.apps")
            if registry is None or not getattr(getattr(registry, "apps", None), "ready", False):
                return
            from wsgidev.daemon.monitor.django_signals import DjangoSignals

            self._django = DjangoSignals()
        globs, files = self._django.refresh()
        for glob in globs:
            self._files.add_glob(glob, self._baseline)
        for path in files:
            self._files.add(os.path.abspath(path), self._baseline(path), reason="Django autoreload")

    def _watch_new_dirs(self) -> None:
        new = self._files.take_new_dirs()
        if new:
            self._note_silent(new)
            self._watch_dirs(new)

    def _note_silent(self, dirs: set[str]) -> None:
        """Poll the folders among dirs whose mount sends no event for changes made elsewhere
        (an edit on the host beneath a container's bind mount); say so once per mount."""
        if self.name == "poll":
            return  # every file is compared each interval already
        table = MountTable()
        for directory in dirs:
            mount = table.silent(directory)
            if mount is None:
                continue
            if not self._silent_dirs:
                self._next_poll = time.monotonic() + self.poll_interval_s
            self._silent_dirs.add(directory)
            if mount.point not in self._silent_mounts:
                self._silent_mounts.add(mount.point)
                events.emit(
                    protocol.SilentMount(
                        mount=mount.point, fstype=mount.fstype, interval=self.poll_interval_s
                    )
                )

    def _import_recorded(self) -> None:
        if self._armed:
            self._wake()


def saved_at_s(files: Iterable[str], seen_s: float, process_started_ns: int | None) -> float:
    """When the earliest of these changes was saved: the files' ctime or mtime where plausible
    (after this process started, not after it was seen), else when the change was seen."""
    # ctime is the kernel's own stamp of the change (a restored older mtime leaves it now);
    # mtime is taken too, where a filesystem keeps no better ctime.
    floor_ns = process_started_ns or 0
    seen_ns = int(seen_s * 1_000_000_000)
    earliest_ns = seen_ns
    for path in files:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue  # deleted: only the notification's time is known
        for stamp in (st.st_ctime_ns, st.st_mtime_ns):
            if floor_ns <= stamp < earliest_ns:
                earliest_ns = stamp
    return earliest_ns / 1_000_000_000
