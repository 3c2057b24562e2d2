"""Turn Apache's error and access logs into a terminal log like runserver's, and read the events."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from wsgidev import events

# Startup and shutdown chatter Apache logs at notice level whatever LogLevel says.
_NOISE = ("AH00489", "AH00094", "AH00491", "AH00492", "AH00493", "AH00169", "AH00490")
_STATUS_COLOURS = {"1": "", "2": "\x1b[32m", "3": "\x1b[36m", "4": "\x1b[33m", "5": "\x1b[31;1m"}
_RESET = "\x1b[0m"
# --debug sends access lines down the error log's pipe (stdout is pdb's terminal), marked so.
ACCESS_MARKER = "wsgidev-access\t"


@dataclass
class _Reload:
    started: float
    files: list[str]
    ready_pids: set[int] = field(default_factory=set)


class LogPrinter:
    """Formats log lines and reload events; safe to call from the two pipe-reader threads."""

    def __init__(
        self, out: TextIO, *, processes: int, colour: bool, verbose: bool, reload: bool = True
    ) -> None:
        self.out = out
        self.reload = reload
        self.processes = processes
        self.colour = colour
        self.verbose = verbose
        self.lock = threading.Lock()
        self.first_ready = threading.Event()
        self.import_error: str | None = None
        self.last_traceback = ""
        self.pending: _Reload | None = None
        self.apache_errors: list[str] = []
        self._last_once = ""

    def write(self, text: str) -> None:
        """One or more finished lines to the terminal."""
        with self.lock:
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def error_line(self, raw: str) -> None:
        """A line of the error log: level TAB pid TAB module TAB message."""
        if raw.startswith(ACCESS_MARKER):
            self.access_line(raw[len(ACCESS_MARKER) :])
            return
        parts = raw.rstrip("\n").split("\t", 3)
        if len(parts) != 4:
            if raw.strip():
                self.write(raw)
            return
        level, pid_text, module, message = parts
        event = events.parse(message)
        if event is not None:
            self._event(event)
            return
        if module == "wsgi" and level == "error" and "[client" not in message:
            # The app's print() and logging output, as written.
            self.write(_strip_remote(message))
            return
        if any(code in message for code in _NOISE) and not self.verbose:
            return
        if level in ("emerg", "alert", "crit", "error"):
            self.apache_errors.append(message)
        self.write(f"[apache {module}:{level}] {message}")

    def access_line(self, raw: str) -> None:
        """A line of the access log: time TAB request line TAB status TAB bytes TAB microseconds."""
        parts = raw.rstrip("\n").split("\t")
        if len(parts) != 5:
            self.write(raw)
            return
        when, request, status, size, micros = parts
        ms = int(micros) / 1000 if micros.isdigit() else 0.0
        line = f'[{when}] "{request}" {status} {size} {ms:.0f}ms'
        if self.colour:
            line = f"{_STATUS_COLOURS.get(status[:1], '')}{line}{_RESET}"
        self.write(line)

    def _event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        pid = int(event.get("pid", 0))
        if kind == "ready":
            self._ready(pid, float(event.get("t", time.time())))
        elif kind == "import-error":
            self._import_error(pid, event)
        elif kind == "change":
            files = [str(f) for f in event.get("files", [])]
            with self.lock:
                if self.pending is None:
                    self.pending = _Reload(started=float(event.get("t", time.time())), files=files)
                else:
                    self.pending.files.extend(f for f in files if f not in self.pending.files)
        elif kind == "handover":
            if self.verbose:
                self.write(
                    f"Handed over to {event.get('to')} in {float(event.get('seconds', 0)):.3f} s: "
                    f"{event.get('answers')}"
                )
            # Normally every standby's "ready" has completed the reload already; this covers a
            # hand-over to fewer ready processes (a stale one was restarting).
            self._reloaded(float(event.get("t", time.time())))
        elif kind == "handled":
            names = ", ".join(str(f) for f in event.get("files", []))
            self._once(f"handled:{names}", f"Picked up {names} without a restart")
        elif kind == "preloaded" and self.verbose:
            django = " and Django's setup" if event.get("django_error") is None else ""
            self.write(
                f"Standby process {pid} warmed: {event.get('imported', 0)} modules{django} "
                f"in {float(event.get('seconds', 0)):.2f} s"
            )
        elif kind == "refused":
            self.write(f"wsgidev monitor: {event.get('reason', 'refused')}")

    def _once(self, key: str, text: str) -> None:
        # Each daemon process reports the same thing; say it once.
        with self.lock:
            if key == self._last_once:
                return
            self._last_once = key
        self.write(text)

    def _ready(self, pid: int, when: float) -> None:
        with self.lock:
            self.import_error = None
            complete = False
            if self.pending is not None and when >= self.pending.started:
                self.pending.ready_pids.add(pid)
                complete = len(self.pending.ready_pids) >= self.processes
        self.first_ready.set()
        if complete:
            self._reloaded(when)

    def _reloaded(self, when: float) -> None:
        with self.lock:
            done, self.pending = self.pending, None
        if done is not None and when >= done.started:
            changed = ", ".join(done.files[:3]) + (" ..." if len(done.files) > 3 else "")
            self.write(f"Reloaded in {when - done.started:.2f} s: {changed} changed")

    def _import_error(self, pid: int, event: dict[str, Any]) -> None:
        text = str(event.get("traceback", ""))
        with self.lock:
            self.import_error = str(event.get("error", "import failed"))
            repeated = text == self.last_traceback
            self.last_traceback = text
            self.pending = None
        self.first_ready.set()
        if not repeated:
            self.write(f"The app failed to import: {self.import_error}\n{text.rstrip()}")
            if self.reload:
                self.write("Fix the code and save; every request gets this error page until then.")


def _strip_remote(message: str) -> str:
    """mod_wsgi prefixes app output with '[remote addr:port] [script path] '; the terminal needs none."""
    while message.startswith(("[remote ", "[script ", "[client ")) and "] " in message:
        message = message.split("] ", 1)[1]
    return message
