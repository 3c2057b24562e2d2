"""Guarding the app's import against what no exception reports: a process that dies or hangs.

An exception while importing the app is caught and shown (appimport.failed_app). Some failures end
the process instead: os._exit() in the app's code, a segfault in a C extension, a kill. mod_wsgi
then starts another process, which imports again and dies again: a restart loop that leaves
requests hanging on the daemons' socket. So before importing, a process writes a mark in the
server root (importing/<pid>) and removes it once the import is over, however it ended. A
process about to import that finds the mark of a dead process whose files have not changed
since knows the import ends the process: it does not import, it serves a page saying how its
predecessor died, and watches the files the predecessor had imported (the mark lists them, from
the monitor's import recorder), so a saved fix brings the import back.

How a process died is written where it can be: os._exit is wrapped during the import (the status
and the caller's stack go into the mark); faulthandler writes a fatal signal's stack to
importing/<pid>.crash. A death with neither (SIGKILL, exit() from C code) may be a one-off (the
OOM killer, a test): it is given one more import before it counts.

A hang is told by a watchdog: SLOW_S after the import began it says, once, where the importing
thread is, and requests waiting for the app get a page naming it while the import goes on.
"""

from __future__ import annotations

import atexit
import contextlib
import faulthandler
import json
import linecache
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from wsgidev.daemon import modwsgi
from wsgidev.daemon.monitor.state import touched_after
from wsgidev.daemon.preload import library_dirs
from wsgidev.shared.processes import pid_alive, short_path
from wsgidev.shared.serverroot import IMPORT_MARKS

# After this long an import is reported as stuck, and waiting requests get a page saying where.
SLOW_S = 10.0
MAX_FRAMES = 16  # of a stack shown
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")
_FAULT_FRAME = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+) in (?P<name>.*)$')
_FAULT_TITLE = re.compile(r"^Fatal Python error: (?P<what>.+)$")
_SIGNALS = {
    "Segmentation fault": "SIGSEGV",
    "Bus error": "SIGBUS",
    "Aborted": "SIGABRT",
    "Floating-point exception": "SIGFPE",
    "Floating point exception": "SIGFPE",
    "Illegal instruction": "SIGILL",
}


@dataclass(frozen=True)
class Frame:
    """One frame of a stack: file, line and function."""

    file: str
    line: int
    name: str


@dataclass
class Failure:
    """Why importing the app cannot work: one line, a stack to show, the files to watch."""

    summary: str
    stack: list[Frame] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    since_ns: int = 0  # files touched after this count as changed

    def text(self) -> str:
        """The summary and the stack, as a traceback reads (most recent call last)."""
        # The innermost frames: an event line must fit Apache's error-log line (8 KB).
        shown = []
        if len(self.stack) > MAX_FRAMES:
            shown.append(f"  ... {len(self.stack) - MAX_FRAMES} frames above")
        for frame in self.stack[-MAX_FRAMES:]:
            shown.append(f'  File "{frame.file}", line {frame.line}, in {frame.name}')
            source = linecache.getline(frame.file, frame.line).strip()
            if source:
                shown.append(f"    {source}")
        head = ["Stack (most recent call last):"] if shown else []
        return "\n".join([*head, *shown, self.summary])


class ImportGuard:
    """This process's marks in the server root: before, during and after importing the app."""

    def __init__(self, server_root: str) -> None:
        self.folder = Path(server_root) / IMPORT_MARKS
        self.mark = self.folder / str(os.getpid())
        self._crash = self.folder / f"{os.getpid()}.crash"
        self._file: IO[str] | None = None
        self._crash_file: IO[bytes] | None = None
        self._thread: int | None = None
        self._real_exit: Callable[[int], Any] | None = None
        self._watchdog: threading.Timer | None = None
        self._subscribed = False
        self._lock = threading.Lock()
        self.started_ns = 0
        # The reload monitor, whose import recorder lists the files an import finds (None: none).
        self.monitor: Any = None
        # Dead importers with no known cause, passed over once by failure(): written into this
        # process's mark, so that a second such death counts.
        self.unexplained: list[int] = []

    # -- before importing: did a predecessor die doing it? ------------------------------------

    def failure(self) -> Failure | None:
        """How an earlier process died importing the code as it is now, or None (import it)."""
        try:
            marks = sorted(p for p in self.folder.iterdir() if p.name.isdigit())
        except OSError:
            return None
        found: list[Failure] = []
        self.unexplained = []
        for path in marks:
            pid = int(path.name)
            if pid == os.getpid() or pid_alive(pid):
                continue
            record = _read_mark(path)
            crash = _read_text(self.folder / f"{pid}.crash")
            failure = _failure_of(record, crash)
            files = [*record["files"], *(f.file for f in (failure.stack if failure else []))]
            if any(touched_after(f, record["started_ns"]) for f in files):
                # The code changed since: this mark says nothing about it any more.
                self._forget(pid)
                continue
            if failure is None and not record.get("after_unexplained"):
                # A one-off kill, perhaps: one more try, whose own mark says it follows one.
                self.unexplained.append(pid)
                self._forget(pid)
                continue
            if failure is None:
                failure = Failure(
                    "the process died twice while importing, with no exit status or crash "
                    "report (killed by a signal, or exit() from C code)"
                    + (f"; the last file it imported: {short_path(files[-1])}" if files else "")
                )
            failure.files = sorted(set(files))
            failure.since_ns = record["started_ns"]
            found.append(failure)
        if not found:
            return None
        # The one with a known cause, where there is one (every sibling says the same).
        return min(found, key=lambda f: (not f.stack, f.summary))

    def _forget(self, pid: int) -> None:
        for path in (self.folder / str(pid), self.folder / f"{pid}.crash"):
            with contextlib.suppress(OSError):
                path.unlink()

    # -- while importing ----------------------------------------------------------------------

    def begin(self, on_slow: Callable[[Failure], None] | None = None) -> None:
        """Mark this process as importing, from this thread; say where it is after SLOW_S."""
        self.started_ns = time.time_ns()
        self._thread = threading.get_ident()
        header = {
            "pid": os.getpid(),
            "started_ns": self.started_ns,
            "after_unexplained": list(self.unexplained),
        }
        try:
            self.folder.mkdir(exist_ok=True)
            self._file = self.mark.open("a", encoding="utf-8", buffering=1)
            self._file.write(json.dumps(header) + "\n")
        except OSError:
            self._file = None
            return  # the server root is gone: nothing to mark, the import goes on
        atexit.register(self.end)  # a process told to stop while importing is no failure
        self._subscribe_shutdown()
        if self.monitor is not None:
            self.monitor.journal_imports(self.imported)
        if not faulthandler.is_enabled():
            with contextlib.suppress(OSError, RuntimeError):
                self._crash_file = self._crash.open("wb")
                faulthandler.enable(file=self._crash_file, all_threads=False)
        self._real_exit = os._exit
        setattr(os, "_exit", self._exit)  # noqa: B010 - mypy holds os._exit to NoReturn
        if on_slow is not None:
            self._watchdog = threading.Timer(SLOW_S, self._slow, args=(on_slow,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _subscribe_shutdown(self) -> None:
        """Once: a process mod_wsgi stops (a retire, a graceful restart) leaves no mark, even
        if it is killed before its import ends: that death is not the app's."""
        if self._subscribed:
            return
        self._subscribed = True
        modwsgi.subscribe_shutdown(self._stopping)

    def _stopping(self, name: str = "", **event: Any) -> None:
        with self._lock:
            if self._file is not None:
                self._forget(os.getpid())

    def imported(self, path: str) -> None:
        """Note a file the import found (the monitor's import recorder calls this)."""
        file = self._file
        if file is not None:
            with contextlib.suppress(OSError, ValueError):
                file.write(f"file\t{path}\n")

    def end(self) -> None:
        """The import is over (it worked, or raised): remove the mark; safe to call twice."""
        with self._lock:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            if self._real_exit is not None and os._exit == self._exit:
                setattr(os, "_exit", self._real_exit)  # noqa: B010
            self._real_exit = None
            if self.monitor is not None:
                self.monitor.journal_imports(None)
            if self._crash_file is not None:
                with contextlib.suppress(RuntimeError):
                    faulthandler.disable()
                self._crash_file.close()
                self._crash_file = None
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None
                self._forget(os.getpid())
        atexit.unregister(self.end)

    def _exit(self, status: int) -> Any:
        """os._exit while importing: write down who called it and with what, then exit."""
        file = self._file
        real = self._real_exit or _REAL_EXIT
        if file is not None and threading.get_ident() == self._thread:
            frames = _frames_of(sys._getframe(1))
            with contextlib.suppress(OSError, ValueError):
                file.write("exit\t" + json.dumps({"status": status, "stack": frames}) + "\n")
        return real(status)

    def _slow(self, on_slow: Callable[[Failure], None]) -> None:
        frame = sys._current_frames().get(self._thread or 0)
        frames = [Frame(*f) for f in _frames_of(frame)] if frame is not None else []
        stack = _app_stack(frames)
        where = _where(stack)
        summary = f"still importing after {SLOW_S:g} s" + (f", at {where}" if where else "")
        on_slow(Failure(summary, stack, sorted({f.file for f in stack}), self.started_ns))


_REAL_EXIT = os._exit


def _read_mark(path: Path) -> dict[str, Any]:
    record: dict[str, Any] = {"started_ns": 0, "files": [], "exit": None}
    for number, line in enumerate(_read_text(path).splitlines()):
        kind, _, rest = line.partition("\t")
        try:
            if number == 0:
                record.update(json.loads(line))
            elif kind == "file":
                record["files"].append(rest)
            elif kind == "exit":
                record["exit"] = json.loads(rest)
        except ValueError:
            continue  # a line cut short by the death
    return record


def _failure_of(record: dict[str, Any], crash: str) -> Failure | None:
    """What a dead process's mark and crash report say about its death, or None (nothing)."""
    if record.get("exit"):
        stack = _app_stack([Frame(*f) for f in record["exit"].get("stack", [])])
        status = record["exit"].get("status")
        where = _where(stack)
        return Failure(
            f"the process exited with status {status} (os._exit)"
            + (f" at {where}" if where else ""),
            stack,
        )
    if crash.strip():
        what, frames = _parse_fault(crash)
        stack = _app_stack(frames)
        where = _where(stack)
        signal_name = _SIGNALS.get(what, "a fatal signal")
        return Failure(
            f"the process crashed with {signal_name} ({what})" + (f" at {where}" if where else ""),
            stack,
        )
    return None


def _parse_fault(text: str) -> tuple[str, list[Frame]]:
    """faulthandler's report: what happened, and the crashing thread's frames (oldest first)."""
    what = "crash"
    frames: list[Frame] = []
    for line in text.splitlines():
        title = _FAULT_TITLE.match(line)
        if title:
            what = title["what"].strip()
        match = _FAULT_FRAME.match(line)
        if match:
            frames.append(Frame(match["file"], int(match["line"]), match["name"]))
        elif frames and not line.strip():
            break  # the first thread's stack is the crashing one
    return what, list(reversed(frames))


def _frames_of(frame: FrameType | None) -> list[tuple[str, int, str]]:
    """A stack from its innermost frame, oldest first, as plain values."""
    return [
        (f.filename, f.lineno or 0, f.name) for f in traceback.extract_stack(frame) if f.filename
    ]


def _app_stack(frames: Iterable[Frame]) -> list[Frame]:
    """The stack from the app's first frame on, without wsgidev's and importlib's frames."""
    frames = list(frames)
    ours = [i for i, f in enumerate(frames) if f.file.startswith(_PACKAGE_DIR)]
    after = frames[ours[-1] + 1 :] if ours else frames
    return [f for f in after if not f.file.startswith("<frozen importlib")]


def _where(stack: list[Frame]) -> str:
    """The innermost frame of the app's own code (else the innermost): 'app.py:3'."""
    libraries = library_dirs()
    own = [f for f in stack if not os.path.realpath(f.file).startswith(libraries)]
    frames = own or stack
    return f"{short_path(frames[-1].file)}:{frames[-1].line}" if frames else ""


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
