"""Turn Apache's error and access logs into a terminal log like runserver's, and read the events."""

from __future__ import annotations

import re
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from wsgidev import events, faultlines
from wsgidev.shared import (
    BROWSER_RELOAD_EVENTS_PATH,
    LIVE_EVENTS_PATH,
    pid_alive,
    short_path,
)
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
STREAM_PATHS = (LIVE_EVENTS_PATH, BROWSER_RELOAD_EVENTS_PATH)


# Change events from sibling processes saved within this of each other, naming a file in
# common, are one reload (each process of a group sees the same save and says so, dated by the
# same ctime). A save of the same file a moment later is a reload of its own. A sibling may
# also report a save after its reload has completed (it saw it later): the same window applies,
# as an in-place save truncates, then writes, and a writer descheduled between the two (a busy
# machine) leaves tens of ms between the stamps two daemons saw (a third "Reloaded" line for
# two saves, seen under load with 10 ms).
SAME_SAVE_S = 0.05
# Access lines remembered for a stop that waits for a paused request's answer.
ANSWERED_KEPT = 256


@dataclass
class _Reload:
    """A change reported by the daemons, until its new code serves."""

    saved_at: float  # when the earliest file was saved (the daemons' estimate, see saved_at_s)
    files: list[str]  # those named (an event names at most MAX_EVENT_FILES)
    count: int = 0  # how many changed, named or not
    # When the latest write of this save landed (an in-place save truncates, then writes): a
    # process whose import began before it may hold the old or half-written code.
    last_saved_at: float = 0.0
    # Processes that served the old code and are retiring: until they have exited, a request
    # routed to them before the hand-over still gets the old code.
    retiring: set[int] = field(default_factory=set)
    # The daemon group whose processes bring the new code (a hand-over's taker, or the group
    # restarting in place); None: any (one group, --restart-mode process or server).
    group: str | None = None
    # A hand-over's processes that answered ready: the ones that serve the new code (a process
    # Apache starts later in that group imports the new code anyway). None: count the group's.
    takers: set[int] | None = None

    # The browsers were told already (at the hand-over's flip: requests get the new code then).
    announced: bool = False
    # What went otherwise than planned (a standby had died), for the reload's line.
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.last_saved_at = max(self.last_saved_at, self.saved_at)

    def same_save(self, saved_at: float, files: list[str], within_s: float = SAME_SAVE_S) -> bool:
        return abs(saved_at - self.saved_at) < within_s and bool(set(files) & set(self.files))


class Listener(Protocol):
    """Who hears that browsers should refresh (wsgidev.livereload.LiveReload)."""

    def new_code(self) -> None: ...
    def refreshed(self) -> None: ...
    def watch_static(self, folders: Iterable[tuple[str, str]]) -> None: ...


# Pending reloads that wait for retiring processes to exit are looked at again this often.
RECHECK_S = 0.25
RECHECK_FOR_S = 60.0  # ...for at most this long after the save
# A template edit counts as taken once every serving process said so, or after this.
HANDLED_WAIT_S = 1.0


class LogPrinter:
    """Formats log lines and reload events; safe to call from the two pipe-reader threads."""

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
        self.pending: list[_Reload] = []
        self._done: deque[_Reload] = deque(maxlen=32)  # reported already: late siblings are not new
        # pid -> when its latest import of the app began, and its daemon group
        self._imported_at: dict[int, tuple[float, str | None]] = {}
        self._exited: set[int] = set()  # daemon processes that said they exit
        self.apache_errors: list[str] = []
        # Set once wsgidev has said why it stops: the stop's chatter would bury that line.
        self.muted = False
        # Set when the server stops: a debugger session's process is not keeping old code then.
        self.stopping = False
        # How many access lines came, and the latest ones' requests ("GET /path") with their
        # number: a stop waits for the answer to a request it ended in pdb.
        self.access_count = 0
        self._answered: deque[tuple[int, str]] = deque(maxlen=ANSWERED_KEPT)
        self._access_seen = threading.Condition(self.lock)
        self._last_once = ""
        # Files Django took in place -> the processes that said so for the latest save.
        self._picked_up: dict[str, set[int]] = {}
        # Mounts said to send no events (the banner names those it could foresee).
        self.silent_mounts: set[str] = set()
        self._listed = ""  # the watch listing last printed (listing_key)
        # While a debugger session has the terminal: the lines held back, and how wsgidev's own
        # short lines are shown (above the prompt).
        self._held_lines: list[str] | None = None
        self._interject: Callable[[str], None] | None = None
        # Daemon processes a debugger session keeps alive after they were told to stop: pid ->
        # group. A reload does not wait for them (they serve only the paused request).
        self._debug_held: dict[int, str | None] = {}
        self.listener: Listener | None = None
        self._recheck_at: float | None = None  # a look again at pending reloads is scheduled
        self._flipped: deque[tuple[float, set[str]]] = deque(maxlen=16)  # hand-overs: when, files
        # Files Django took in place -> the processes that said so (one save, every process).
        self._handled: dict[tuple[str, ...], set[int]] = {}
        # Requests a stopping process cut, whose mod_wsgi errors are still to come (and when
        # to stop expecting them).
        self._cut_errors_left = 0
        self._cut_until = 0.0

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
        """A line of the access log: time TAB request line TAB status TAB bytes TAB microseconds."""
        parts = raw.rstrip("\n").split("\t")
        if len(parts) != 5:
            self.write(raw)
            return
        when, request, status, size, micros = parts
        if request.split(" ")[1:2] and request.split(" ")[1].startswith(STREAM_PATHS):
            return  # the browsers' event stream: wsgidev's plumbing, not the app's traffic
        ms = int(micros) / 1000 if micros.isdigit() else 0.0
        line = f'[{when}] "{request}" {status} {size} {ms:.0f}ms'
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

    def _event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        pid = int(event.get("pid", 0))
        when = float(event.get("t", time.time()))
        if kind == "ready":
            group = event.get("group")
            started_at = float(event.get("started_at", when))
            import_s = float(event.get("import_s", 0.0))
            self._ready(pid, when, started_at, group and str(group), import_s)
        elif kind == "import-error":
            self._import_error(pid, event)
        elif kind in ("import-slow", "request-exit"):
            self._app_trouble(kind, event)
        elif kind == "change":
            files = [str(f) for f in event.get("files", [])]
            count = int(event.get("count", len(files)))
            self._change(float(event.get("saved_at", when)), files, count)
        elif kind in ("handover", "restart-in-place"):
            self._retiring(event)
            said = {**(event.get("passed") or {}), **(event.get("answers") or {})}
            for pid_text, answer in said.items():
                if answer == "timeout":
                    self.say(
                        f"Standby process {pid_text} did not answer within 2 s (stopped or hung?): "
                        "its group was passed over"
                    )
            if kind == "restart-in-place" and self.verbose:
                self.write(f"Standbys stale ({event.get('answers')}): restarting the serving group")
            elif self.verbose:
                self.write(
                    f"Handed over to {event.get('to')} in {float(event.get('seconds', 0)):.3f} s: "
                    f"{event.get('answers')}"
                )
        elif kind == "exit":
            with self.lock:
                self._exited.add(pid)
                self._debug_held.pop(pid, None)
            self._reloaded(when, self._all_imported_since)
        elif kind == "handled":
            names = ", ".join(str(f) for f in event.get("files", []))
            # Every process says it for one save: said once per save. A process that said it
            # already is telling of the next save.
            with self.lock:
                sayers = self._picked_up.setdefault(names, set())
                new_save = not sayers or pid in sayers
                if new_save:
                    sayers.clear()
                sayers.add(pid)
            if new_save:
                self.write(f"Picked up {names} without a restart")
            self._handled_by(pid, tuple(str(f) for f in event.get("files", [])))
        elif kind == "static-dirs" and self.listener is not None:
            self.listener.watch_static((str(u), str(d)) for u, d in event.get("folders", []))
        elif kind == "standby-refresh" and self.verbose:
            names = ", ".join(short_path(str(f)) for f in event.get("files", []))
            self.write(f"Standby process {pid} refreshing: it had loaded {names}, which changed")
        elif kind == "silent-mount":
            self._silent_mount(event)
        elif kind == "watching" and self.verbose:
            self.write(
                f"Process {pid} watches {event.get('file_count')} files in {event.get('dir_count')} "
                f"folders ({event.get('backend')})"
            )
        elif kind == "watch-list" and self.verbose:
            key = listing_key(event)
            with self.lock:
                first, self._listed = key != self._listed, key
            if first:  # each serving process sends one; print it again only when it differs
                self.write(format_watch_list(event))
        elif kind == "preloaded" and self.verbose:
            if not event.get("full", True):
                what = " (libraries; the rest when its group is next)"
            elif event.get("django") and event.get("django_error") is None:
                what = " and Django's setup"
            else:
                what = ""
            self.write(
                f"Standby process {pid} warmed: {event.get('imported', 0)} modules{what} "
                f"in {float(event.get('seconds', 0)):.2f} s"
            )
        elif kind == "cut":
            self._cut(pid, event)
        elif kind == "refused":
            self.write(f"wsgidev monitor: {event.get('reason', 'refused')}")
        elif kind == "debug-held":
            self._held_by_debugger(pid, event)

    def _cut(self, pid: int, event: dict[str, Any]) -> None:
        """One line for the requests a stopping process ended past --shutdown-timeout; the
        error mod_wsgi logs for each of them (its client got the 502 page) goes unsaid."""
        line, errors = faultlines.cut_line(pid, event)
        with self.lock:
            self._cut_errors_left += errors
            self._cut_until = time.monotonic() + faultlines.CUT_ERRORS_S
        self.say(line)

    def _recheck_soon(self) -> None:
        with self.lock:
            if self._recheck_at is not None:
                return
            self._recheck_at = time.time()
        timer = threading.Timer(RECHECK_S, self._recheck)
        timer.daemon = True
        timer.start()

    def _recheck(self) -> None:
        with self.lock:
            self._recheck_at = None
        self._reloaded(time.time(), self._all_imported_since)

    def _flipped_for(self, reload: _Reload) -> bool:
        """Whether a hand-over for this reload's files was announced (its event came first)."""
        return any(
            at >= reload.saved_at and files & set(reload.files) for at, files in self._flipped
        )

    def _handled_by(self, pid: int, files: tuple[str, ...]) -> None:
        """Tell the browsers once every serving process has taken the edit (or after a while)."""
        if self.listener is None:
            return
        with self.lock:
            first = files not in self._handled
            pids = self._handled.setdefault(files, set())
            pids.add(pid)
            complete = len(pids) >= self.processes
            if complete:
                del self._handled[files]
        if complete:
            self.listener.refreshed()
        elif first:
            timer = threading.Timer(HANDLED_WAIT_S, self._handled_late, args=(files,))
            timer.daemon = True
            timer.start()

    def _handled_late(self, files: tuple[str, ...]) -> None:
        with self.lock:
            waiting = self._handled.pop(files, None)
        if waiting is not None and self.listener is not None:
            self.listener.refreshed()

    def _held_by_debugger(self, pid: int, event: dict[str, Any]) -> None:
        group = event.get("group")
        with self.lock:
            self._debug_held[pid] = str(group) if group else None
        if self.stopping:
            return  # the server stops: nothing is kept, and no reload waits
        reason = str(event.get("reason", ""))
        if reason in ("", "shutdown_signal", "graceful_signal"):
            self.say(f"Process {pid} keeps the old code until the debugger session ends")
        else:
            why = reason.replace("_", "-")  # mod_wsgi's name: request_timeout is request-timeout
            self.say(
                f"Process {pid} stops ({why}) once the debugger session ends; "
                "the other processes take its requests"
            )
        self._reloaded(when=float(event.get("t", time.time())), done=self._all_imported_since)

    def _retiring(self, event: dict[str, Any]) -> None:
        """Note the old group's processes for the reloads the leader handed over for."""
        handed = {str(f) for f in event.get("files", [])}
        pids = {int(pid) for pid in event.get("retiring", [])}
        group = event.get("to") or event.get("group")
        takers = None
        if event["event"] == "handover":
            answers = event.get("answers") or {}
            takers = {int(pid) for pid, answer in answers.items() if answer == "ready"}
        note = self._gone_note(event, takers)
        with self.lock:
            matched = False
            for reload in self.pending:
                if handed & set(reload.files):
                    matched = True
                    reload.retiring |= pids
                    reload.group = str(group) if group else None
                    reload.takers = takers
                    reload.announced = takers is not None
                    reload.notes.extend([note] if note else [])
            if takers is not None:
                self._flipped.append((time.time(), handed))
        if note and not matched:
            self.say(note[0].upper() + note[1:])
        if takers is not None and self.listener is not None:
            # The route has flipped: a refresh now waits for the new code in the new group.
            self.listener.new_code()

    def _gone_note(self, event: dict[str, Any], takers: set[int] | None) -> str:
        """What a hand-over did about standby processes that had died when asked; ''."""
        with self.lock:
            exited = set(self._exited)
        return faultlines.gone_note(event, takers, exited)

    def _silent_mount(self, event: dict[str, Any]) -> None:
        point = str(event.get("mount"))
        with self.lock:
            if point in self.silent_mounts:
                return
            self.silent_mounts.add(point)
        self.write(
            f"Polling the watched files under {point} every {float(event.get('interval', 1)):g} s: "
            f"a {event.get('fstype')} mount sends no notification of changes made beneath it"
        )

    def _once(self, key: str, text: str) -> None:
        # Each daemon process reports the same thing; say it once.
        with self.lock:
            if key == self._last_once:
                return
            self._last_once = key
        self.write(text)

    def _change(self, saved_at: float, files: list[str], count: int = 0) -> None:
        with self.lock:
            if any(done.same_save(saved_at, files) for done in self._done):
                return
            for reload in self.pending:
                if reload.same_save(saved_at, files):
                    reload.saved_at = min(reload.saved_at, saved_at)
                    reload.last_saved_at = max(reload.last_saved_at, saved_at)
                    reload.files.extend(f for f in files if f not in reload.files)
                    reload.count = max(reload.count, count)
                    return
            self.pending.append(_Reload(saved_at=saved_at, files=files, count=count))
        self._reloaded(time.time(), self._all_imported_since)  # a process may be ahead

    def _ready(
        self, pid: int, when: float, started_at: float, group: str | None, import_s: float
    ) -> None:
        with self.lock:
            self.import_error = None
            self._imported_at[pid] = (started_at, group)
            self._last_trouble = ""  # a fresh import: the same trouble again is news
            slow = pid in self._slow_pids
            if slow:
                self._slow_pids.clear()
        if slow:
            self.write(f"The app has imported, in {import_s:.1f} s; requests get it now")
        self.first_ready.set()
        self._reloaded(when, self._all_imported_since)

    def _all_imported_since(self, reload: _Reload) -> bool:
        """Whether as many processes as the group have imported the app since the save, and
        the processes retiring from the old code have exited: every request gets the new code
        (a hand-over flips the route first; its requests wait for the import). A taker that
        died before importing is noted on the reload, for its line."""
        held = {pid for pid in self._debug_held if pid_alive(pid)}
        if any(
            pid not in self._exited and pid not in held and pid_alive(pid)
            for pid in reload.retiring
        ):
            return False
        if reload.takers:
            lost = sorted(
                pid
                for pid in reload.takers
                if self._imported_at.get(pid, (0.0, None))[0] < reload.last_saved_at
                and not pid_alive(pid)
            )
            if any(
                self._imported_at.get(pid, (0.0, None))[0] < reload.last_saved_at and pid_alive(pid)
                for pid in reload.takers
            ):
                return False
            if not lost:
                return True
            # A taker died before it had imported the new code (killed): the reload is done
            # once a process of its group has, the one Apache started in its place or a sibling.
            serving = sorted(
                pid
                for pid, (at, group) in self._imported_at.items()
                if at >= reload.last_saved_at and group == reload.group
            )
            if not serving:
                return False
            note = faultlines.lost_taker_note(lost, serving)
            if note not in reload.notes:
                reload.notes.append(note)
            return True
        fresh = sum(
            1
            for at, group in self._imported_at.values()
            if at >= reload.last_saved_at and reload.group in (None, group)
        )
        # A process a debugger session holds serves only its paused request: not one to wait for.
        held_here = sum(1 for pid in held if reload.group in (None, self._debug_held.get(pid)))
        return fresh >= self.processes - held_here

    def _reloaded(self, when: float, done: Callable[[_Reload], bool]) -> None:
        """Print one line for each pending reload that done() says serves now."""
        with self.lock:
            finished = [reload for reload in self.pending if done(reload)]
            self.pending = [reload for reload in self.pending if reload not in finished]
            self._done.extend(finished)
            recent = time.time() - RECHECK_FOR_S
            waiting_on_exits = any(r.retiring and r.saved_at > recent for r in self.pending)
        if waiting_on_exits:
            # A retiring process may end without saying so (killed past --shutdown-timeout):
            # look again, rather than wait for an event that may not come.
            self._recheck_soon()
        if self.listener is not None and any(
            not reload.announced and not self._flipped_for(reload) for reload in finished
        ):
            self.listener.new_code()
        for reload in finished:
            names = [short_path(f) for f in reload.files]
            total = max(reload.count, len(names))
            changed = ", ".join(names[:3]) + (f" and {total - 3} more" if total > 3 else "")
            seconds = max(0.0, when - reload.saved_at)
            notes = f" ({'; '.join(reload.notes)})" if reload.notes else ""
            self.say(f"Reloaded in {seconds:.2f} s: {changed} changed{notes}")

    def _import_error(self, pid: int, event: dict[str, Any]) -> None:
        text = str(event.get("traceback", ""))
        with self.lock:
            self.import_error = str(event.get("error", "import failed"))
            repeated = text == self.last_traceback
            self.last_traceback = text
            self.pending = []
        self.first_ready.set()
        if not repeated:
            if self.listener is not None:
                self.listener.new_code()  # the error page is what serves now: show it
            self.write(f"The app failed to import: {self.import_error}\n{text.rstrip()}")
            if self.reload:
                self.write("Fix the code and save; every request gets this error page until then.")

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

    def _app_trouble(self, kind: str, event: dict[str, Any]) -> None:
        """An import stuck past its deadline, or a request that raised SystemExit: once each."""
        text = str(event.get("traceback", "")).rstrip()
        with self.lock:
            if kind == "import-slow":
                self._slow_pids.add(int(event.get("pid", 0)))
                self.pending = []  # its line replaces the reload's: said when the import ends
            if text == self._last_trouble:
                return  # every process of the group says the same
            self._last_trouble = text
        error = str(event.get("error", ""))
        if kind == "import-slow":
            until = "it finishes, or a fix is saved" if self.reload else "it finishes"
            line = f"The app is {error}; requests get a 503 page saying so until {until}"
        else:
            line = f"A request raised {error}; it got a 500 page with the traceback"
        self.write(f"{line}\n{text}")


def _strip_remote(message: str) -> str:
    """mod_wsgi prefixes app output with '[remote addr:port] [script path] '; the terminal needs none."""
    while message.startswith(("[remote ", "[script ", "[client ")) and "] " in message:
        message = message.split("] ", 1)[1]
    return message
