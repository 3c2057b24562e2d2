"""Turn Apache's error and access logs into a terminal log like runserver's, and read the events."""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from typing import TextIO

from wsgidev import faultlines
from wsgidev.reloads import ReloadDone, ReloadTracker, Subscriber
from wsgidev.shared import events, protocol
from wsgidev.shared.processes import short_path
from wsgidev.shared.serverroot import BROWSER_RELOAD_EVENTS_PATH, LIVE_EVENTS_PATH
from wsgidev.watchlist import format_watch_list, listing_key

# Startup and shutdown chatter Apache logs at notice level whatever LogLevel says.
_NOISE = ("AH00489", "AH00094", "AH00491", "AH00492", "AH00493", "AH00169", "AH00490")
# Apache's line for a daemon killed by a signal (a segfault): each process of a group that
# crashes the same way says it; the pid aside, one is shown per FOLD_S.
_CHILD_SIGNAL = re.compile(r"AH0005[12]: child pid \d+ exit signal (?P<signal>.*)")
FOLD_S = 10.0
_STATUS_COLOURS = {"1": "", "2": "\x1b[32m", "3": "\x1b[36m", "4": "\x1b[33m", "5": "\x1b[31;1m"}
_RESET = "\x1b[0m"
# --debug sends access lines down the error log's pipe (stdout is pdb's terminal), marked so.
ACCESS_MARKER = "wsgidev-access\t"
# Begins the verbose line with a reload's parts, after its "Reloaded in" line (bench/ reads it).
TIMELINE_MARK = "Reload timeline: "
STREAM_PATHS = (LIVE_EVENTS_PATH, BROWSER_RELOAD_EVENTS_PATH)


# Access lines remembered for a stop that waits for a paused request's answer.
ANSWERED_KEPT = 256


class LogPrinter(Subscriber):
    """Formats log lines, and what the daemons' events say; safe to call from the two
    pipe-reader threads. The events go to its ReloadTracker first; the printer subscribes to
    it like any other subscriber (wsgidev.reloads)."""

    def __init__(
        self,
        out: TextIO,
        *,
        processes: int,
        colour: bool,
        verbose: bool,
        reload: bool = True,
    ) -> None:
        self.out = out
        # The access line's separator before a request's queries: a middle dot where the
        # terminal's encoding has one.
        self._dot = _encodable("\u00b7", getattr(out, "encoding", None)) or "-"
        self.reload = reload
        self.processes = processes
        self.colour = colour
        self.verbose = verbose
        self.lock = threading.Lock()
        self.first_ready = threading.Event()
        self.import_error: str | None = None
        self.last_traceback = ""
        self._last_trouble = ""  # the last stuck import or request SystemExit shown
        self._slow_pids: set[int] = set()  # processes said to be stuck importing: say when done
        self._folds: dict[str, float] = {}  # a repeated Apache line -> when it was last shown
        self.apache_errors: list[str] = []
        # Set once wsgidev has said why it stops: the stop's chatter would bury that line.
        self.muted = False
        # How many access lines came, and the latest ones' requests ("GET /path") with their
        # number: a stop waits for the answer to a request it ended in pdb.
        self.access_count = 0
        self._answered: deque[tuple[int, str]] = deque(maxlen=ANSWERED_KEPT)
        self._access_seen = threading.Condition(self.lock)
        self._pin_said: str | None = None
        self._last_once = ""
        # The services (wsgidev/services.py) a save restarted too: named on its reload's line.
        self.services_restarted_by: Callable[[tuple[str, ...], float], list[str]] | None = None
        # Mounts said to send no events (the banner names those it could foresee).
        self.silent_mounts: set[str] = set()
        self._listed = ""  # the watch listing last printed (listing_key)
        # While a debugger session has the terminal: the lines held back, and how wsgidev's own
        # short lines are shown (above the prompt).
        self._held_lines: list[str] | None = None
        self._interject: Callable[[str], None] | None = None
        # Requests a stopping process cut, whose mod_wsgi errors are still to come (and when
        # to stop expecting them).
        self._cut_errors_left = 0
        self._cut_until = 0.0
        self.tracker = ReloadTracker(processes)
        self.tracker.subscribe(self)

    @property
    def stopping(self) -> bool:
        """Set when the server stops: a debugger session's process keeps no old code then."""
        return self.tracker.stopping

    @stopping.setter
    def stopping(self, value: bool) -> None:
        self.tracker.stopping = value

    def _cut_error(self) -> bool:
        """Whether an error mod_wsgi logged about a daemon gone belongs to a cut request."""
        with self.lock:
            if self._cut_errors_left and time.monotonic() < self._cut_until:
                self._cut_errors_left -= 1
                return True
            self._cut_errors_left = 0
            return False

    def hold(self, interject: Callable[[str], None]) -> None:
        """Hold back log lines (a debugger session is on the terminal); say() goes to interject."""
        with self.lock:
            if self._held_lines is None:
                self._held_lines = []
            self._interject = interject

    def release(self) -> None:
        """Print the lines held back."""
        with self.lock:
            lines, self._held_lines, self._interject = self._held_lines or [], None, None
            for text in lines:
                self.out.write(text)
            self.out.flush()

    def say(self, text: str) -> None:
        """A line of wsgidev's own (a reload, a debugger line): shown even during a session."""
        with self.lock:
            if self._interject is not None:
                self._interject(text.rstrip("\n"))
                return
            self.out.write(text if text.endswith("\n") else text + "\n")
            self.out.flush()

    def write(self, text: str) -> None:
        """One or more finished lines to the terminal (held back during a debugger session)."""
        text = text if text.endswith("\n") else text + "\n"
        with self.lock:
            if self.muted:
                return
            if self._held_lines is not None:
                self._held_lines.append(text)
                return
            self.out.write(text)
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
        if module == "wsgi" and faultlines.DAEMON_GONE in message and self._cut_error():
            return  # a request cut past --shutdown-timeout: said already
        if module == "wsgi" and level == "error" and "[client" not in message:
            # The app's print() and logging output, as written.
            self.write(_strip_remote(message))
            return
        if any(code in message for code in _NOISE) and not self.verbose:
            return
        if self._folded(message):
            return
        if level in ("emerg", "alert", "crit", "error"):
            self.apache_errors.append(message)
        self.write(f"[apache {module}:{level}] {message}")

    def access_line(self, raw: str) -> None:
        """A line of the access log: time TAB request line TAB status TAB bytes TAB microseconds
        TAB the request's queries ("count milliseconds", "-" for none: wsgidev/daemon/queries.py)."""
        parts = raw.rstrip("\n").split("\t")
        if len(parts) == 5:
            parts.append("-")  # a config written before the queries' field (config standalone)
        if len(parts) != 6:
            self.write(raw)
            return
        when, request, status, size, micros, queries = parts
        if request.split(" ")[1:2] and request.split(" ")[1].startswith(STREAM_PATHS):
            return  # the browsers' event stream: wsgidev's plumbing, not the app's traffic
        ms = int(micros) / 1000 if micros.isdigit() else 0.0
        line = f'[{when}] "{request}" {status} {size} {ms:.0f}ms{_queries(queries, self._dot)}'
        if self.colour:
            line = f"{_STATUS_COLOURS.get(status[:1], '')}{line}{_RESET}"
        self.write(line)
        method, _, rest = request.partition(" ")
        target = rest.rsplit(" ", 1)[0].split("?", 1)[0]
        with self._access_seen:
            self._answered.append((self.access_count, f"{method} {urllib.parse.unquote(target)}"))
            self.access_count += 1
            self._access_seen.notify_all()

    def wait_answered(self, requests: list[str], since: int, timeout_s: float) -> bool:
        """Wait until an access line after the first `since` answered each of these requests
        ("GET /path?query" as the debugger names them), or timeout_s passed; whether they were."""
        wanted = [request.split("?", 1)[0] for request in requests]

        def answered() -> bool:
            left = [request for number, request in self._answered if number >= since]
            for request in wanted:
                if request not in left:
                    return False
                left.remove(request)
            return True

        with self._access_seen:
            return self._access_seen.wait_for(answered, timeout_s)

    def _event(self, event: protocol.Event) -> None:
        try:
            self.tracker.feed(event)  # which tells this printer, one of its subscribers
        except Exception as exc:  # a bug here must not stop the reading of Apache's log
            self.write(f"wsgidev: the {event.KIND} event of process {event.pid} failed: {exc!r}")

    # -- what the events say, and what the tracker tells ----------------------------------------

    def heard(self, event: protocol.Event) -> None:
        """The lines an event is worth by itself (a reload's own come from the tracker)."""
        match event:
            case protocol.Ready():
                self._ready(event)
            case protocol.ImportSlow() | protocol.RequestExit():
                self._app_trouble(event)
            case protocol.Handover() | protocol.RestartInPlace():
                self._handed_over(event)
            case protocol.StandbyRefresh() if self.verbose:
                names = ", ".join(short_path(f) for f in event.files)
                self.write(
                    f"Standby process {event.pid} refreshing: it had loaded {names}, which changed"
                )
            case protocol.SilentMount():
                self._silent_mount(event)
            case protocol.Watching() if self.verbose:
                self.write(
                    f"Process {event.pid} watches {event.file_count} files in "
                    f"{event.dir_count} folders ({event.backend})"
                )
            case protocol.WatchList() if self.verbose:
                record = protocol.encode(event)
                key = listing_key(record)
                with self.lock:
                    first, self._listed = key != self._listed, key
                if first:  # each serving process sends one; print it again only when it differs
                    self.write(format_watch_list(record))
            case protocol.Preloaded() if self.verbose:
                self._preloaded(event)
            case protocol.Cut():
                self._cut(event)
            case protocol.Sql():
                self.write(f"SQL ({event.ms:.1f} ms, {event.request}): {event.sql}")
            case protocol.RepeatedQuery():
                where = f", first from {event.where}" if event.where else ""
                sql = event.sql if len(event.sql) <= 160 else event.sql[:157] + "..."
                writes = event.sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))
                one = (
                    "bulk_create/bulk_update/update()"
                    if writes
                    else "select_related/prefetch_related"
                )
                self.write(
                    f"N+1? {event.request} ran one query {event.runs} times{where}: {sql} "
                    f"({one} do it in one)"
                )
            case protocol.DebuggerPin():
                with self.lock:  # every process sends it, again at each reload: said once
                    said, self._pin_said = self._pin_said, event.pin
                if said == event.pin:
                    return
                self.write(
                    f"Werkzeug's debugger: PIN {event.pin} (its console asks once per browser)"
                    if event.pin
                    else "Werkzeug's debugger: no PIN (WERKZEUG_DEBUG_PIN=off): whoever reaches "
                    "its console on this machine runs code as the server's user",
                )
            case protocol.Refused():
                self.write(f"wsgidev {event.part}: {event.reason or 'refused'}")
            case protocol.Unreadable():
                self._once(
                    f"unreadable {event.kind} {event.problem}",
                    f"wsgidev: an event from process {event.pid} did not decode "
                    f"({event.kind or 'no kind'}: {event.problem}); is every daemon running "
                    "this version of wsgidev?",
                )

    def reload_done(self, done: ReloadDone) -> None:
        names = [short_path(f) for f in done.files]
        changed = ", ".join(names[:3]) + (f" and {done.count - 3} more" if done.count > 3 else "")
        services = (
            self.services_restarted_by(done.files, done.saved_at)
            if self.services_restarted_by
            else []
        )
        said = ([", ".join(["web", *services])] if services else []) + list(done.notes)
        notes = f" ({'; '.join(said)})" if said else ""
        self.say(f"Reloaded in {done.seconds:.2f} s: {changed} changed{notes}")
        if self.verbose and done.parts:
            self.say(timeline(done.parts, self._dot))  # as the line above: at once, beside it

    def taken_in_place(self, files: tuple[str, ...], first: bool) -> None:
        if first:
            self.write(f"Picked up {', '.join(files)} without a restart")

    def held_by_debugger(self, event: protocol.DebugHeld) -> None:
        pid, reason = event.pid, event.reason
        if reason in ("", "shutdown_signal", "graceful_signal"):
            self.say(f"Process {pid} keeps the old code until the debugger session ends")
        else:
            why = reason.replace("_", "-")  # mod_wsgi's name: request_timeout is request-timeout
            self.say(
                f"Process {pid} stops ({why}) once the debugger session ends; "
                "the other processes take its requests"
            )

    def note(self, text: str) -> None:
        self.say(text[0].upper() + text[1:])

    def import_failed(self, event: protocol.ImportFailed, repeated: bool) -> None:
        with self.lock:
            self.import_error = event.error or "import failed"
            self.last_traceback = event.traceback
        self.first_ready.set()
        if not repeated:
            self.write(f"The app failed to import: {self.import_error}\n{event.traceback.rstrip()}")
            if self.reload:
                self.write("Fix the code and save; every request gets this error page until then.")

    def _handed_over(self, event: protocol.Handover | protocol.RestartInPlace) -> None:
        for pid, answer in {**event.passed, **event.answers}.items():
            if answer == "timeout":
                self.say(
                    f"Standby process {pid} did not answer within 2 s (stopped or hung?): "
                    "its group was passed over"
                )
        if not self.verbose:
            return
        if isinstance(event, protocol.RestartInPlace):
            self.write(f"Standbys stale ({event.answers}): restarting the serving group")
        else:
            self.write(f"Handed over to {event.to} in {event.seconds:.3f} s: {event.answers}")

    def _preloaded(self, event: protocol.Preloaded) -> None:
        if not event.full:
            what = " (libraries; the rest when its group is next)"
        elif event.django and event.django_error is None:
            what = " and Django's setup"
        else:
            what = ""
        self.write(
            f"Standby process {event.pid} warmed: {event.imported} modules{what} "
            f"in {event.seconds:.2f} s"
        )

    def _cut(self, event: protocol.Cut) -> None:
        """One line for the requests a stopping process ended past --shutdown-timeout; the
        error mod_wsgi logs for each of them (its client got the 502 page) goes unsaid."""
        line, errors = faultlines.cut_line(event)
        with self.lock:
            self._cut_errors_left += errors
            self._cut_until = time.monotonic() + faultlines.CUT_ERRORS_S
        self.say(line)

    def _silent_mount(self, event: protocol.SilentMount) -> None:
        with self.lock:
            if event.mount in self.silent_mounts:
                return
            self.silent_mounts.add(event.mount)
        self.write(
            f"Polling the watched files under {event.mount} every {event.interval:g} s: "
            f"a {event.fstype} mount sends no notification of changes made beneath it"
        )

    def _once(self, key: str, text: str) -> None:
        # Each daemon process reports the same thing; say it once.
        with self.lock:
            if key == self._last_once:
                return
            self._last_once = key
        self.write(text)

    def _ready(self, event: protocol.Ready) -> None:
        with self.lock:
            self.import_error = None
            self._last_trouble = ""  # a fresh import: the same trouble again is news
            slow = event.pid in self._slow_pids
            if slow:
                self._slow_pids.clear()
        if slow:
            self.write(f"The app has imported, in {event.import_s:.1f} s; requests get it now")
        self.first_ready.set()

    def _folded(self, message: str) -> bool:
        """Whether an Apache line repeats one shown within FOLD_S (then it is not shown)."""
        match = _CHILD_SIGNAL.search(message)
        if match is None or self.verbose:
            return False
        now = time.monotonic()
        with self.lock:
            shown = self._folds.get(match["signal"])
            if shown is not None and now - shown < FOLD_S:
                return True
            self._folds[match["signal"]] = now
        return False

    def _app_trouble(self, event: protocol.ImportSlow | protocol.RequestExit) -> None:
        """An import stuck past its deadline, or a request that raised SystemExit: once each."""
        text = event.traceback.rstrip()
        slow = isinstance(event, protocol.ImportSlow)
        with self.lock:
            if slow:
                self._slow_pids.add(event.pid)
            if text == self._last_trouble:
                return  # every process of the group says the same
            self._last_trouble = text
        if slow:
            until = "it finishes, or a fix is saved" if self.reload else "it finishes"
            line = f"The app is {event.error}; requests get a 503 page saying so until {until}"
        else:
            line = f"A request raised {event.error}; it got a 500 page with the traceback"
        self.write(f"{line}\n{text}")


def timeline(parts: tuple[tuple[str, float], ...], dot: str = "·") -> str:
    """A reload's parts (ReloadDone.parts) as its verbose line: each as seconds after the save,
    joined by dot (the terminal's: "-" where its encoding lacks "·")."""
    said = f" {dot} ".join(f"{name} +{seconds:.2f} s" for name, seconds in parts)
    return f"{TIMELINE_MARK}{said}"


def _strip_remote(message: str) -> str:
    """mod_wsgi prefixes app output with '[remote addr:port] [script path] '; the terminal needs none."""
    while message.startswith(("[remote ", "[script ", "[client ")) and "] " in message:
        message = message.split("] ", 1)[1]
    return message


def _encodable(text: str, encoding: str | None) -> str | None:
    try:
        text.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return None
    return text


def _queries(field: str, dot: str) -> str:
    """The access line's end for a request's queries: " · 14 queries 9ms"; "" for none."""
    count, _, ms = field.partition(" ")
    if not count.isdigit() or count == "0":
        return ""
    try:
        took = f" {float(ms):.0f}ms"
    except ValueError:
        took = ""
    return f" {dot} {count} {'query' if count == '1' else 'queries'}{took}"
