"""The reload as `wsgidev start` follows it: fed the daemons' events, a ReloadTracker tells its
subscribers when a reload starts, when requests get the new code, and when it is done.

The daemons only say what each of them sees (a change, an import, a hand-over, an exit); the
tracker puts one reload together from them. A reload is done when every request gets the new
code: the processes that bring it (a hand-over's takers, or as many processes of the group as
serve) began their import after the save's last write, and the processes retiring from the old
code have exited. The terminal's "Reloaded in" line, the browsers' live reload and anything
else that cares subscribe (a Subscriber, registered with ReloadTracker.subscribe); the tracker
prints nothing and knows none of them.

Pure but for its clock, its look at whether a pid is alive and its timers (all three can be
given), so tests feed it events and read what subscribers heard, without Apache.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wsgidev import faultlines
from wsgidev.shared import protocol
from wsgidev.shared.processes import pid_alive

# Change events from sibling processes saved within this of each other, naming a file in
# common, are one reload (each process of a group sees the same save and says so, dated by the
# same ctime). A save of the same file a moment later is a reload of its own. A sibling may
# also report a save after its reload has completed (it saw it later): the same window applies,
# as an in-place save truncates, then writes, and a writer descheduled between the two (a busy
# machine) leaves tens of ms between the stamps two daemons saw (a third "Reloaded" line for
# two saves, seen under load with 10 ms).
SAME_SAVE_S = 0.05
# Pending reloads that wait for retiring processes to exit are looked at again this often.
RECHECK_S = 0.25
RECHECK_FOR_S = 60.0  # ...for at most this long after the save
# A daemon that still holds code from before a save this long after it is not waited for (it
# is looked at again until RECHECK_FOR_S, so this comes first).
STALE_FOR_S = 30.0
# A template edit counts as taken once every serving process said so, or after this.
HANDLED_WAIT_S = 1.0
TOLD_KEPT = 32  # saves taken in place whose late reports are recognised


@dataclass
class Reload:
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
    # Daemons seen holding code imported before the save while no hand-over named takers (a
    # sibling that has not looked yet): waited for like the retiring ones.
    stale: set[int] = field(default_factory=set)
    # The processes that reported it: one that reports two saves saw them one after the other.
    reporters: set[int] = field(default_factory=set)
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
    # Once done: when the earliest import that serves it began. A change saved before then, of
    # a file in common, is this reload told late (a sibling that saw a git checkout's files
    # one by one), not a new one.
    served_from: float | None = None
    # Once done: when the last client got the old code or, if later, the last process it
    # waited for was ready with the new one (the daemons' clocks): the moment every request
    # got the new code, which the line tells, not the moment the tracker learnt it (a
    # retiring process says it answered last at its exit, some 0.1-0.3 s later).
    served_at: float | None = None
    # Its parts, for the verbose line (daemons' clocks; 0.0 or None: not part of this reload):
    # the first report of the change, the hand-over's flip or the in-place restart's start
    # (flip_kind says which), the last process it waited for ready with the new code, and the
    # old code's last answer.
    seen_at: float = 0.0
    flipped_at: float | None = None
    flip_kind: str = ""
    ready_at: float = 0.0
    old_answer_at: float = 0.0

    def __post_init__(self) -> None:
        self.last_saved_at = max(self.last_saved_at, self.saved_at)

    def absorb(self, other: Reload) -> None:
        """Take in another report of this reload (a sibling's, or a save one import took
        with it): the earliest save and sighting, the latest write, every file and note, and
        once served, from the earliest import to the last moment an old answer was given."""
        self.saved_at = min(self.saved_at, other.saved_at)
        self.last_saved_at = max(self.last_saved_at, other.last_saved_at)
        self.files.extend(f for f in other.files if f not in self.files)
        self.count = max(self.count, other.count)
        self.seen_at = min(filter(None, (self.seen_at, other.seen_at)), default=0.0)
        self.reporters |= other.reporters
        self.notes.extend(n for n in other.notes if n not in self.notes)
        self.announced = self.announced or other.announced
        self.served_from = min(filter(None, (self.served_from, other.served_from)), default=None)
        self.served_at = max(filter(None, (self.served_at, other.served_at)), default=None)
        self.ready_at = max(self.ready_at, other.ready_at)
        self.old_answer_at = max(self.old_answer_at, other.old_answer_at)

    def same_save(
        self, saved_at: float, files: Iterable[str], reporter_since: float | None = None
    ) -> bool:
        """Whether a change saved then, naming these files, is this reload told again;
        reporter_since: when the reporting process began importing (None: not known)."""
        if not set(files) & set(self.files):
            return False
        if abs(saved_at - self.saved_at) < SAME_SAVE_S:
            return True
        # Told late by a process that held the old code, of a save the new code's imports read.
        # A process that imported since reports only what was saved after its import, whatever
        # the date says (a copy that keeps mtimes, a clock behind): that is a new save.
        return (
            self.served_from is not None
            and saved_at < self.served_from
            and (reporter_since is None or reporter_since < self.served_from)
        )


@dataclass(frozen=True)
class ReloadDone:
    """A reload whose new code every request gets, as the terminal's line tells it."""

    seconds: float  # from the save to the new code serving
    files: tuple[str, ...]
    count: int  # how many files changed, named or not
    notes: tuple[str, ...] = ()
    saved_at: float = 0.0  # when the earliest file was saved
    # Where the time went, each part as seconds after the save (the verbose line): the change
    # seen, the route flipped (or the group told to restart), the new code's import began and
    # was done, the old code's last answer. A part that did not happen is left out.
    parts: tuple[tuple[str, float], ...] = ()


class Subscriber:
    """Hears what the tracker learns; a subscriber overrides what it cares about."""

    def heard(self, event: protocol.Event) -> None:
        """Any event from a daemon, before the tracker acts on it."""

    def reload_started(self, reload: Reload) -> None:
        """A change needs new processes (several daemons' reports of one save: told once)."""

    def new_code(self) -> None:
        """Requests get new code from now: a hand-over flipped, a reload is done, or the
        import failed (its error page is what serves)."""

    def reload_done(self, done: ReloadDone) -> None:
        """Every request gets the new code."""

    def taken_in_place(self, files: tuple[str, ...], first: bool) -> None:
        """Django took these files without a restart: first when the first process of a save
        said so; again (first false) once every serving process has, or HANDLED_WAIT_S passed."""

    def import_failed(self, event: protocol.ImportFailed, repeated: bool) -> None:
        """The app failed to import (repeated: the same traceback as the last failure)."""

    def held_by_debugger(self, event: protocol.DebugHeld) -> None:
        """A stopping process stays alive for a debugger session; reloads do not wait for it."""

    def note(self, text: str) -> None:
        """A hand-over went otherwise than planned, with no reload to carry the note."""


Schedule = Callable[[float, Callable[[], None]], None]


def _reload_done(done: ReloadDone) -> Callable[[Subscriber], None]:
    return lambda subscriber: subscriber.reload_done(done)


def _parts(reload: Reload) -> tuple[tuple[str, float], ...]:
    """A done reload's parts, as seconds after the save (ReloadDone.parts)."""
    moments = [
        ("seen", reload.seen_at),
        (reload.flip_kind, reload.flipped_at or 0.0),
        ("import began", reload.served_from or 0.0),
        ("imported", reload.ready_at),
        ("old code's last answer", reload.old_answer_at),
    ]
    # A part before the save is none of this reload's (a retiring process idle since before it).
    return tuple(
        (name, round(at - reload.saved_at, 3))
        for name, at in moments
        if name and at and at >= reload.saved_at
    )


def _one_per_file(served: list[Reload]) -> list[Reload]:
    """Reloads served at the same moment that share a file, where the later was saved before
    the earlier one's first new process began its import and other processes told of it, as
    one line: no client ever had the earlier save's code without the later's. Siblings of an
    edit storm report the save their own look caught, more than SAME_SAVE_S apart on a busy
    machine, and each was a line (3 for one storm, two of them together). Two saves one
    process told of, or saves further apart, keep a line each."""
    merged: list[Reload] = []
    for reload in sorted(served, key=lambda r: r.saved_at):
        into = next(
            (
                m
                for m in merged
                if set(m.files) & set(reload.files)
                and not m.reporters & reload.reporters
                and m.served_from is not None
                and reload.saved_at < m.served_from
            ),
            None,
        )
        if into is None:
            merged.append(reload)
            continue
        into.absorb(reload)
    return merged


def _timer(delay_s: float, callback: Callable[[], None]) -> None:
    timer = threading.Timer(delay_s, callback)
    timer.daemon = True
    timer.start()


class ReloadTracker:
    """Puts reloads together from the daemons' events; safe to feed from several threads."""

    def __init__(
        self,
        processes: int,
        *,
        clock: Callable[[], float] = time.time,
        alive: Callable[[int], bool] = pid_alive,
        schedule: Schedule = _timer,
    ) -> None:
        self.processes = processes
        self._clock, self._alive, self._schedule = clock, alive, schedule
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()
        self.pending: list[Reload] = []
        self._done: deque[Reload] = deque(maxlen=32)  # reported already: late siblings are not new
        # pid -> when its latest import of the app began, and its daemon group
        self._imported_at: dict[int, tuple[float, str | None]] = {}
        # Daemon processes that said they exit -> when their app last answered (0.0: never).
        self._exited: dict[int, float] = {}
        self._ready_at: dict[int, float] = {}  # pid -> when its latest import was done
        # Daemon processes a debugger session keeps alive after they were told to stop: pid ->
        # group. A reload does not wait for them (they serve only the paused request).
        self._debug_held: dict[int, str | None] = {}
        self._recheck_at: float | None = None  # a look again at pending reloads is scheduled
        self._flipped: deque[tuple[float, set[str]]] = deque(maxlen=16)  # hand-overs: when, files
        # The group the latest hand-over made the serving one (None: none yet, or no hand-overs).
        self._serving: str | None = None
        # Files Django took in place -> the processes that said so (one save, every process),
        # and for the saves told already (complete, or timed out) the processes that said so.
        self._handled: dict[tuple[str, ...], set[int]] = {}
        self._handled_told: dict[tuple[str, ...], set[int]] = {}
        self._last_traceback = ""
        self.stopping = False  # the server stops: a debugger's process keeps no old code then

    def subscribe(self, subscriber: Subscriber) -> None:
        """Tell subscriber from now on."""
        self._subscribers.append(subscriber)

    def feed(self, event: protocol.Event) -> None:
        """One event from a daemon."""
        self._tell(lambda s: s.heard(event))
        match event:
            case protocol.Change():
                self._change(
                    event.pid, event.saved_at or event.t, event.files, event.count, event.t
                )
            case protocol.Ready():
                self._ready(event)
            case protocol.Handover() | protocol.RestartInPlace():
                self._retiring(event)
            case protocol.Exit():
                with self._lock:
                    self._exited[event.pid] = event.last_answer_at
                    self._debug_held.pop(event.pid, None)
                self._look(event.t)
            case protocol.Handled():
                self._handled_by(event.pid, event.files)
            case protocol.DebugHeld():
                self._held_by_debugger(event)
            case protocol.ImportFailed():
                self._import_failed(event)
            case protocol.ImportSlow():
                with self._lock:
                    self.pending = []  # its line replaces the reload's: said when the import ends

    # -- the events -----------------------------------------------------------------------------

    def _change(
        self, pid: int, saved_at: float, files: Iterable[str], count: int, seen_at: float = 0.0
    ) -> None:
        files = [str(f) for f in files]
        with self._lock:
            since = self._imported_at[pid][0] if pid in self._imported_at else None
            if any(done.same_save(saved_at, files, since) for done in self._done):
                return
            reload = Reload(
                saved_at=saved_at, files=files, count=count, seen_at=seen_at, reporters={pid}
            )
            for pending in self.pending:
                if pending.same_save(saved_at, files) or self._brings(
                    pending, pid, saved_at, files
                ):
                    pending.absorb(reload)
                    return
            self.pending.append(reload)
        self._tell(lambda s: s.reload_started(reload))
        self._look(self._clock())  # a process may be ahead

    def _ready(self, event: protocol.Ready) -> None:
        with self._lock:
            self._imported_at[event.pid] = (event.started_at or event.t, event.group)
            self._ready_at[event.pid] = event.t
            # A pid the kernel gave again: the process that had it is gone.
            self._exited.pop(event.pid, None)
            self._debug_held.pop(event.pid, None)
        self._look(event.t)

    def _retiring(self, event: protocol.Handover | protocol.RestartInPlace) -> None:
        """Note the old group's processes for the reloads the leader handed over for."""
        handed = set(event.files)
        pids = set(event.retiring)
        if isinstance(event, protocol.Handover):
            group: str | None = event.to or None
            takers: set[int] | None = event.takers()
        else:
            group, takers = event.group or None, None
        with self._lock:
            exited = set(self._exited)
        note = faultlines.gone_note(event, takers, exited)
        with self._lock:
            matched = False
            for reload in self.pending:
                if handed & set(reload.files):
                    if self._brought(reload):
                        # Its own hand-over's takers serve its code; it waits only for its
                        # old processes to exit. This hand-over is a later save's.
                        continue
                    matched = True
                    reload.retiring |= pids
                    reload.group = group
                    reload.takers = takers
                    reload.announced = takers is not None
                    # With the takers it names: a later hand-over of the same file is the one
                    # this reload waits for.
                    reload.flipped_at = event.t
                    reload.flip_kind = "handed over" if takers is not None else "restarting"
                    reload.notes.extend([note] if note else [])
            if takers is not None:
                self._flipped.append((self._clock(), handed))
                self._serving = group
        if note and not matched:
            self._tell(lambda s: s.note(note))
        if takers is not None:
            # The route has flipped: a refresh now waits for the new code in the new group.
            self._tell(lambda s: s.new_code())
        self._look(event.t)

    @staticmethod
    def _brings(reload: Reload, pid: int, saved_at: float, files: list[str]) -> bool:
        """Whether a change of this reload's files, reported by pid, is one its hand-over
        brings: saved before the flip, or told by a process the hand-over retired (an edit
        storm's sibling telling of the save its own look caught, before or after the flip).
        Its takers import it, or, if their import began before it, the next hand-over does
        (the reload's last save is then after their import: see _brought)."""
        return (
            reload.takers is not None
            and reload.flipped_at is not None
            and (saved_at < reload.flipped_at or pid in reload.retiring)
            and bool(set(files) & set(reload.files))
        )

    def _brought(self, reload: Reload) -> bool:
        """Whether a reload's hand-over takers serve its code: each imported since its last
        save, or is still importing (no Ready yet: it began after the hand-over), or (one died
        first, as in _serves) a process of their group has. Called under the lock."""
        if not reload.takers:
            return False
        since = reload.last_saved_at
        started = {
            pid: self._imported_at[pid][0] for pid in reload.takers if pid in self._imported_at
        }
        if any(at < since and self._alive(pid) for pid, at in started.items()):
            return False
        return all(at >= since for at in started.values()) or bool(
            self._imported_since(reload.group, since)
        )

    def _imported_since(self, group: str | None, since: float) -> list[int]:
        """The processes of a hand-over's group that began importing since then: where a
        taker died before it had imported, the one Apache started in its place, or a sibling,
        serves its reload. Called under the lock."""
        return sorted(
            pid for pid, (at, of) in self._imported_at.items() if at >= since and of == group
        )

    def _held_by_debugger(self, event: protocol.DebugHeld) -> None:
        with self._lock:
            self._debug_held[event.pid] = event.group or None
        if self.stopping:
            return  # the server stops: nothing is kept, and no reload waits
        self._tell(lambda s: s.held_by_debugger(event))
        self._look(event.t)

    def _import_failed(self, event: protocol.ImportFailed) -> None:
        with self._lock:
            repeated = event.traceback == self._last_traceback
            self._last_traceback = event.traceback
            self.pending = []
        if not repeated:
            self._tell(lambda s: s.new_code())  # the error page is what serves now: show it
        self._tell(lambda s: s.import_failed(event, repeated))

    def _handled_by(self, pid: int, files: tuple[str, ...]) -> None:
        """Tell subscribers when a save's first process took it, and once every serving process
        has (or after a while)."""
        with self._lock:
            told = self._handled_told.get(files)
            if files not in self._handled and told is not None and pid not in told:
                told.add(pid)  # a sibling late for a save told already (past HANDLED_WAIT_S)
                return
            first = files not in self._handled
            pids = self._handled.setdefault(files, set())
            if pid in pids:  # a process that said it already is telling of the next save
                pids.clear()
                first = True
            if first:
                self._handled_told.pop(files, None)
            pids.add(pid)
            complete = len(pids) >= self.processes
            if complete:
                self._told(files, self._handled.pop(files))
        if first:
            self._tell(lambda s: s.taken_in_place(files, True))
        if complete:
            self._tell(lambda s: s.taken_in_place(files, False))
        elif first:
            self._schedule(HANDLED_WAIT_S, lambda: self._handled_late(files))

    def _handled_late(self, files: tuple[str, ...]) -> None:
        with self._lock:
            waiting = self._handled.pop(files, None)
            if waiting is not None:
                self._told(files, waiting)
        if waiting is not None:
            self._tell(lambda s: s.taken_in_place(files, False))

    def _told(self, files: tuple[str, ...], pids: set[int]) -> None:
        """Remember who said a save was taken, once subscribers were told (under the lock)."""
        self._handled_told[files] = pids
        while len(self._handled_told) > TOLD_KEPT:
            del self._handled_told[next(iter(self._handled_told))]

    # -- when a reload is done ------------------------------------------------------------------

    def _look(self, when: float) -> None:
        """Tell subscribers of each pending reload that now serves."""
        with self._lock:
            served = [reload for reload in self.pending if self._serves(reload)]
            self.pending = [reload for reload in self.pending if reload not in served]
            self._done.extend(served)
            finished = _one_per_file(served)
            recent = self._clock() - RECHECK_FOR_S
            waiting_on_exits = any(
                (r.retiring or r.stale) and r.saved_at > recent for r in self.pending
            )
            unannounced = any(
                not reload.announced and not self._flipped_for(reload) for reload in served
            )
        if waiting_on_exits:
            # A retiring process may end without saying so (killed past --shutdown-timeout):
            # look again, rather than wait for an event that may not come.
            self._look_again_soon()
        if unannounced:
            self._tell(lambda s: s.new_code())
        for reload in finished:
            done = ReloadDone(
                seconds=max(0.0, (reload.served_at or when) - reload.saved_at),
                files=tuple(reload.files),
                count=max(reload.count, len(reload.files)),
                notes=tuple(reload.notes),
                saved_at=reload.saved_at,
                parts=_parts(reload),
            )
            self._tell(_reload_done(done))

    def _look_again_soon(self) -> None:
        with self._lock:
            if self._recheck_at is not None:
                return
            self._recheck_at = self._clock()
        self._schedule(RECHECK_S, self._look_again)

    def _look_again(self) -> None:
        with self._lock:
            self._recheck_at = None
        self._look(self._clock())

    def _flipped_for(self, reload: Reload) -> bool:
        """Whether a hand-over for this reload's files was announced (its event came first)."""
        return any(
            at >= reload.saved_at and files & set(reload.files) for at, files in self._flipped
        )

    def _serves(self, reload: Reload) -> bool:
        """Whether as many processes as the group have imported the app since the save, and
        the processes retiring from the old code have exited: every request gets the new code
        (a hand-over flips the route first; its requests wait for the import). A taker that
        died before importing is noted on the reload, for its line. Called under the lock."""
        held = {pid for pid in self._debug_held if self._alive(pid)}
        if any(
            pid not in self._exited and pid not in held and self._alive(pid)
            for pid in reload.retiring
        ):
            return False
        since = reload.last_saved_at
        if reload.takers:
            started = {pid: self._imported_at.get(pid, (0.0, None))[0] for pid in reload.takers}
            if any(at < since and self._alive(pid) for pid, at in started.items()):
                return False
            lost = sorted(pid for pid, at in started.items() if at < since)
            fresh = [at for at in started.values() if at >= since]
            if lost:
                # A taker died before it had imported the new code (killed): the reload is done
                # once a process of its group has, the one Apache started in its place or a
                # sibling.
                serving = self._imported_since(reload.group, since)
                if not serving:
                    return False
                note = faultlines.lost_taker_note(lost, serving)
                if note not in reload.notes:
                    reload.notes.append(note)
                fresh += [self._imported_at[pid][0] for pid in serving]
                # The takers that did import, and the first process of the group that has.
                ready = [self._ready_at.get(pid, 0.0) for pid, at in started.items() if at >= since]
                ready.append(min(self._ready_at.get(pid, 0.0) for pid in serving))
            else:
                ready = [self._ready_at.get(pid, 0.0) for pid in reload.takers]
            reload.served_from = min(fresh)
            reload.ready_at = max(ready)
            reload.old_answer_at = self._last_old_answer(reload)
            reload.served_at = max(reload.ready_at, reload.old_answer_at)
            return True
        # A daemon that imported before the save and is still there serves the old code (in
        # --restart-mode process a sibling that has not looked yet, while the other process
        # restarted twice): waited for, and its last answer counts, like a retiring one's.
        # Only in the group that serves (a standby a stray request reached serves no one), and
        # for STALE_FOR_S (a pid a daemon killed without a word left may be another program's).
        serving_group = reload.group or self._serving
        stale = {
            pid
            for pid, (at, group) in self._imported_at.items()
            if at < since
            and group
            and serving_group in (None, group)
            and pid not in held
            and pid not in self._exited
            and self._alive(pid)
        }
        if self._clock() - reload.saved_at > STALE_FOR_S:
            stale = set()
        reload.stale |= stale
        if stale:
            return False
        # A process a debugger session holds serves only its paused request: not one to wait for.
        fresh_by_pid = {
            pid: at
            for pid, (at, group) in self._imported_at.items()
            if at >= since and reload.group in (None, group) and pid not in held
        }
        held_here = sum(1 for pid in held if reload.group in (None, self._debug_held.get(pid)))
        needed = self.processes - held_here
        if len(fresh_by_pid) < needed:
            return False
        reload.served_from = min(fresh_by_pid.values(), default=since)
        # Served once the needed-th of them was ready (the earliest ones: more may have started).
        ready = sorted(self._ready_at.get(pid, 0.0) for pid in fresh_by_pid)[: max(needed, 0)]
        reload.ready_at = max(ready, default=0.0)
        reload.old_answer_at = self._last_old_answer(reload)
        reload.served_at = max(reload.ready_at, reload.old_answer_at)
        return True

    def _last_old_answer(self, reload: Reload) -> float:
        """When a process retiring from the old code last answered (0.0: none said so; one
        killed, or held by a debugger, answers no one else). Called under the lock."""
        return max(
            (self._exited.get(pid, 0.0) for pid in reload.retiring | reload.stale), default=0.0
        )

    def _tell(self, call: Callable[[Subscriber], None]) -> None:
        for subscriber in self._subscribers:
            try:
                call(subscriber)
            except Exception as exc:  # one subscriber's bug must not stop the others, or the log
                sys.stderr.write(f"wsgidev: {type(subscriber).__name__} failed: {exc!r}\n")
