"""Hand-over between daemon groups: how `wsgidev start` brings new code in by default.

The floor of the ``process`` recipe is Apache's parent: it notices a dead daemon only in a
maintenance loop that sleeps a second between looks. So `wsgidev start` runs a ring of daemon
groups of ``processes`` x ``threads`` each (1 + --standbys), and Apache sends every request to the group
the route files name (route-<index>: the highest present wins; none, group 0). The other groups
are standbys: started, warmed by preload.py, and idle, with nothing of the app itself imported.

On a change, the first monitor of the serving group to see it leads a hand-over to the next
group in the ring (the one retired longest ago):

1. it sends ``go`` to each of that group's processes (a datagram to the socket each one binds
   in the server root); each one answers at once, from a stat of the files it has imported so
   far: ``ready``, or ``stale`` when one of them changed (then the group after it is asked);
2. it flips the route: the next request goes to that group, and waits there while its
   processes finish warming and import the app - the new code - and start watching;
3. it sends ``retire`` to its own group: mod_wsgi lets their requests in flight finish, and
   Apache starts them again in its own time, as a standby. The machine is the import's.

Requests never wait for a process to start, and none is refused: every group's socket stays
bound the whole time (unlike a graceful restart of Apache, which rebinds them).
The second monitor of the serving group to see the change finds the lock's generation counted up
since it loaded the app (wsgidev.shared.serverroot.LeaderLock) and waits to be retired. A standby only
records what it imports; it looks at those files once, when it is told to take over.

When the standbys are stale (the edit was to settings.py, a models.py, a library: files
django.setup() imported), no standby can serve it. The leader then restarts its own group in
place, exactly as ``--restart-mode process`` would, and its new processes, once serving, tell
every standby to look again: the stale ones restart then, after the new code serves rather
than beside it, and warm afresh.

A standby that had died when asked (killed; or, under rapid edits, a process of the group that
had just retired) answers nothing: its group is taken if another of its processes answered
ready (Apache's replacement accepts requests only once it has imported the app). When none is
left, the leader waits for the processes Apache starts in their place and asks them to answer
once warm, so the old code is served meanwhile instead of requests waiting for a process to
start; with none in REPLACEMENT_WAIT_S the group is passed over like a stale one.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wsgidev.daemon import modwsgi, preload
from wsgidev.daemon.answers import last_answer_at
from wsgidev.daemon.debugsession import sessions_open
from wsgidev.daemon.importguard import ImportGuard
from wsgidev.daemon.monitor.base import log
from wsgidev.daemon.restart import restart_process
from wsgidev.daemon.ring import Ring, collect, route_to, serving_group, serving_index
from wsgidev.shared import events, protocol
from wsgidev.shared.protocol import MAX_EVENT_FILES
from wsgidev.shared.serverroot import (
    CONTROL_DIR,
    HANDOVER_LOCK,
    HELD_PREFIX,
    LeaderLock,
)

# Grace between the flip and retiring the old group: requests Apache routed to it just before
# the flip are taken by its processes instead of waiting for their successors.
RETIRE_DELAY_S = 0.1
# How long a non-leading sibling waits to be retired by the leader before restarting itself.
IMPORT_TIMEOUT_S = 60.0
# How long a hand-over waits for a standby's answer to go. A standby answers from a stat of what
# it has imported, from a thread of its own, in milliseconds even mid-warm-up; one silent this
# long is stopped or hung (SIGSTOP, a debugger, swapping), and its group is passed over rather
# than given requests it would never take.
GO_TIMEOUT_S = 2.0
# A standby group whose processes had all died (killed) when asked is given this long for the
# ones Apache starts in their place (its maintenance loop notices a death within a second).
REPLACEMENT_WAIT_S = 4.0
# ...and this long to warm up (libraries, Django's setup) before it answers.
REPLACEMENT_WARM_S = 20.0
POLL_S = 0.02
# A process that took over starts watching once it has answered a request, or after this.
FIRST_ANSWER_WAIT_S = 0.3
# Warm levels of a standby. Only the group next in the ring warms fully (for Django: settings,
# every app and its models); a group further round holds the libraries imported before that
# (less than half the memory on a Wagtail site) and completes when the hand-over before its own
# makes it next. It is running already then: no wait for Apache to start a process.
LIBRARIES, FULL = 1, 2


class Handover:
    """This daemon process's part in hand-overs: its control socket, and the swap it may lead."""

    def __init__(self, server_root: str, groups: Sequence[str], group: str) -> None:
        if len(groups) < 2 or group not in groups:
            raise ValueError(f"process group {group!r} is not one of {list(groups)}")
        self.server_root = Path(server_root)
        self.groups = tuple(groups)
        self.group = group
        self.index = self.groups.index(group)
        self.control_dir = self.server_root / CONTROL_DIR
        self.address = self.control_dir / f"{self.index}.{os.getpid()}"
        # Held while warming and while importing the app: a request that reaches a standby
        # (queued just before a flip) must not import alongside the warm-up.
        self.import_lock = threading.RLock()
        self._lock = LeaderLock(self.server_root / HANDOVER_LOCK)
        # The lock's generation when this process began importing the app (None: not yet).
        self.generation: int | None = None
        self._stray = False  # a standby that imported the app for a stray request (mark_loading)
        # Told to take over (go answered ready): the take-over thread starts its watching once
        # the app is imported, after the requests waiting for it have it, not before.
        self.taking_over = False
        self._noting = threading.Lock()  # generation and _stray: the request and listen threads
        self.retired = threading.Event()
        self._load: Callable[[], object] | None = None
        self._stale: Callable[[], list[str]] = list
        self._thread: threading.Thread | None = None
        # How warm this standby is: 0 nothing, LIBRARIES, or FULL (Django's setup too).
        self._warm_level = 0
        self._warm_wanted = threading.Event()
        self._warmed = threading.Event()  # warmed, or the app imported: nothing to warm
        self._activate: Callable[[], None] | None = None
        self._warm_failed: Callable[[BaseException], None] | None = None
        self._django = False
        self._guard: ImportGuard | None = None
        # django.setup() failed while warming: unless a file changed since (then the process is
        # stale), importing the app fails the same way, and it cannot be set up twice.
        self.warm_error: BaseException | None = None
        with contextlib.suppress(FileNotFoundError):
            self.address.unlink()  # a pid reused after a process that ended without cleaning up
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(self.address))
        self.ring = Ring(self.server_root, self._socket)

    def serving(self) -> bool:
        """Whether Apache sends requests to this process's group."""
        return serving_group(self.server_root, self.groups) == self.group

    def mark_loading(self) -> None:
        """Note that the app is being imported now (a later hand-over covers this process)."""
        with self._noting:
            if self.generation is None:
                self.generation = self._lock.generation()
                # A standby that was not told to take over: a request queued on its group's
                # socket before a flip reached it. It holds the app's code from now on.
                self._stray = not self.serving()

    def listen(
        self,
        load: Callable[[], object],
        stale: Callable[[], list[str]],
        *,
        django: bool = False,
        activate: Callable[[], None] | None = None,
        warm_failed: Callable[[BaseException], None] | None = None,
        guard: ImportGuard | None = None,
    ) -> None:
        """Answer hand-over messages from a daemon thread: load imports the app (once). A
        standby (no app imported yet) first imports the libraries the serving process recorded
        (preload.py), and sets Django up where django is true; activate: called once this process has taken over (it starts
        watching files); warm_failed: told of a failed Django setup (its files must count in
        stale(), or a fix saved before the hand-over would go unseen)."""
        self._load, self._stale, self._activate = load, stale, activate
        self._warm_failed = warm_failed
        self._django = django
        self._guard = guard
        # Registered after the monitor's quick exit (atexit runs last-in first-out), so it runs.
        atexit.register(self._remove_address)
        atexit.register(self._remove_held_mark)
        modwsgi.subscribe_shutdown(self._stopping)  # a stopping process is no member any more
        # Warming runs in a thread of its own, so the control socket answers meanwhile: a
        # hand-over must not wait for a warm-up to learn whether this process is stale.
        self._warm_wanted.set()  # at start: the serving group's record may be there already
        warmer = threading.Thread(target=self._warm_loop, name="wsgidev-warm", daemon=True)
        warmer.start()
        self._thread = threading.Thread(target=self._listen, name="wsgidev-handover", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop listening and remove the socket (tests; a daemon process just exits)."""
        if self._socket.fileno() < 0:
            return  # closed already
        if self._thread is not None:
            with contextlib.suppress(OSError):
                self._socket.sendto(protocol.pack(protocol.Close()), str(self.address))
            self._thread.join(timeout=5)
        self._socket.close()
        self._remove_address()

    def _remove_address(self) -> None:
        with contextlib.suppress(OSError):
            self.address.unlink()

    def _held_mark(self) -> Path:
        return self.control_dir / f"{HELD_PREFIX}.{self.index}.{os.getpid()}"

    def _remove_held_mark(self) -> None:
        with contextlib.suppress(OSError):
            self._held_mark().unlink()

    def _stopping(self, name: str = "", **event: Any) -> None:
        """mod_wsgi's process_stopping: if a debugger session holds this process, no hand-over
        may pick it (it stopped taking requests, and Apache starts no process in its place until
        it exits): it leaves its group and marks itself held. A process stopping as usual is
        gone in milliseconds and stays a member until then (its answer to go is still right)."""
        if sessions_open():
            self._remove_address()
            with contextlib.suppress(OSError):
                self._held_mark().touch()

    # -- the serving side ---------------------------------------------------------------------

    def on_change(self, files: list[str]) -> None:
        """The monitor's on_change: lead a hand-over, or restart where this process is a standby."""
        if not self.serving() or self.generation is None:
            restart_process(files)  # nobody's requests wait on this process
            return
        try:
            # Not leading: a sibling led a hand-over since this process imported; the new group
            # is newer than this process's code, and the retire message is on its way.
            with self._lock.lead(self.generation) as leads:
                if leads and self.serving():
                    self._lead(files)
        except OSError as exc:
            log(f"hand-over failed ({exc}); restarting this process")
            restart_process(files)
            return
        if not self.retired.wait(IMPORT_TIMEOUT_S + 5):
            restart_process(files)  # the leader went away before retiring this group

    def _lead(self, files: list[str]) -> None:
        started = time.time()
        reply = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        reply_path = self.control_dir / f"reply.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            reply_path.unlink()
        reply.bind(str(reply_path))
        go = protocol.Go(reply=str(reply_path))
        answers: dict[str, str] = {}
        passed: dict[str, str] = {}  # the answers of the groups passed over
        taker = None
        try:
            # The next group (the warmest), else the one after it: that one only holds the
            # libraries, so an edit that made the next stale (settings.py, a models.py: files
            # Django's setup imports) usually leaves it clean.
            for step in range(1, len(self.groups)):
                candidate = (self.index + step) % len(self.groups)
                members = self.ring.wait_for_members(candidate)
                if not members and self.ring.held(candidate):
                    # Its only processes are paused in a debugger: no process to take over.
                    answers = {str(pid): "debugging" for pid in self.ring.held(candidate)}
                    passed.update(answers)
                    continue
                answers = self._ask(candidate, members, go, reply)
                said = set(answers.values())
                # Passed over: a stale or silent process, only dead ones ("gone"), or none at
                # all after EMPTY_GROUP_WAIT_S (one may be starting, or stopped before it could
                # listen: requests routed there could wait for good).
                if not {"stale", "timeout"} & said and "ready" in said:
                    taker = candidate
                    break
                passed.update(answers)
        finally:
            reply.close()
            with contextlib.suppress(FileNotFoundError):
                reply_path.unlink()
        retiring = sorted(self.ring.members(self.index))
        # No standby warms until the new code serves: a warm-up now (this group's processes
        # respawning, the one next after the taker) would slow the import clients wait for.
        # The new serving processes write a fresh record and tell every standby (op warm).
        preload.forget(str(self.server_root))
        if taker is None:
            # Every standby had imported a file that changed (a library after pip install):
            # none can serve it. Restart this group in place, as --restart-mode process does;
            # once its new processes serve, they tell every standby to look, and the stale ones
            # restart then, off the new code's way.
            events.emit(
                protocol.RestartInPlace(
                    group=self.groups[self.index],
                    files=tuple(files[:MAX_EVENT_FILES]),
                    answers=answers,
                    passed=passed,
                    retiring=tuple(retiring),
                    seconds=round(time.time() - started, 4),
                )
            )
        else:
            route_to(self.server_root, taker, len(self.groups))
            events.emit(
                protocol.Handover(
                    to=self.groups[taker],
                    files=tuple(files[:MAX_EVENT_FILES]),
                    answers=answers,
                    passed=passed,
                    retiring=tuple(retiring),
                    seconds=round(time.time() - started, 4),
                )
            )
            time.sleep(RETIRE_DELAY_S)
        # This process last: its retire ends it within milliseconds (mod_wsgi's shutdown, then the
        # quick exit), and a sibling not told by then would serve on until IMPORT_TIMEOUT_S.
        for pid in sorted(retiring, key=lambda pid: pid == os.getpid()):
            self.ring.send(self.index, pid, protocol.Retire())

    def _ask(
        self, index: int, members: set[int], go: protocol.Go, reply: socket.socket
    ) -> dict[str, str]:
        """Each member's answer to go by pid ("gone": it had died, killed or just retired). A
        group whose processes had all died gets the ones Apache starts in their place, asked
        once they are warm: a flip to a group with no process would make requests wait for a
        cold start, while the old group serves them at once meanwhile."""
        answers: dict[str, str] = {}
        timeout_s = GO_TIMEOUT_S
        for _ in range(2):
            sent = {pid for pid in members if self.ring.send(index, pid, go)}
            answers.update((str(pid), "gone") for pid in members - sent)
            answers.update(collect(reply, sent, timeout_s))
            if set(answers.values()) != {"gone"}:
                break  # a process answered (or none was there: Apache is starting them)
            gone = {int(pid) for pid in answers}
            members = self.ring.wait_for_members(index, REPLACEMENT_WAIT_S, exclude=gone)
            # Answered once warm: until then the old code is served at once.
            go, timeout_s = dataclasses.replace(go, warm_first=True), REPLACEMENT_WARM_S
        return answers

    # -- every process: the control socket ----------------------------------------------------

    def record_modules(self, *, tell_standby: bool = False) -> None:
        """Tell the next standby processes what to preload: this process's library modules."""
        try:
            preload.record(str(self.server_root))
        except OSError as exc:
            log(f"cannot record modules to preload: {exc}")
            return
        if tell_standby:  # the standby groups started with us, before there was a record
            for index in range(len(self.groups)):
                if index != self.index:
                    for pid in self.ring.members(index):
                        self.ring.send(index, pid, protocol.Warm())

    def is_next(self) -> bool:
        """Whether this process's group is the one the next hand-over goes to."""
        serving = serving_index(self.server_root, len(self.groups))
        return (serving + 1) % len(self.groups) == self.index

    def _preload(self) -> None:
        """Warm this standby: fully when its group is next, else only its libraries."""
        if self.generation is not None:
            return  # the app is imported: nothing to warm
        level = FULL if self.is_next() else LIBRARIES
        if self._warm_level >= level:
            return
        names = preload.recorded(str(self.server_root))
        if names is None:
            return  # the serving group is still importing; it sends "warm" when done
        guard = self._guard
        with self.import_lock:
            if guard is not None and guard.failure() is not None:
                return  # a process died importing this code: warming would die the same way
            if guard is not None:
                guard.begin()  # a death while warming (settings.py, a models.py) is marked too
            try:
                warmed = preload.preload(names, django=self._django and level == FULL)
            finally:
                if guard is not None:
                    guard.end()
        self._warm_level = level
        self.warm_error = warmed.django_error
        if warmed.django_error is not None and self._warm_failed is not None:
            self._warm_failed(warmed.django_error)
        events.emit(
            protocol.Preloaded(
                imported=warmed.imported,
                seconds=round(warmed.seconds, 3),
                stopped_at=warmed.stopped_at,
                full=level == FULL,
                django=self._django,
                django_error=repr(warmed.django_error) if warmed.django_error else None,
            )
        )

    def _warm_loop(self) -> None:
        """Warm this standby whenever asked, until it has imported the app."""
        while self.generation is None and self._socket.fileno() >= 0:
            self._warm_wanted.wait()
            self._warm_wanted.clear()
            self._preload()
            if self._warm_level:
                self._warmed.set()  # as warm as its place in the ring asks
        self._warmed.set()

    def _listen(self) -> None:
        while True:
            try:
                message = protocol.unpack(self._socket.recv(4096))
            except OSError:
                return  # closed
            if isinstance(message, protocol.Close):
                self._warm_wanted.set()  # the warm-up thread ends too
                return
            if isinstance(message, protocol.Warm):
                # Also a standby that imported the app for a request queued on its socket
                # before a flip: it is no less stale for having served it.
                standby = self.generation is None or self._stray
                if standby and self._refresh_if_stale():
                    return
                self._warm_wanted.set()
            elif isinstance(message, protocol.Go):
                if message.warm_first:
                    self._warm_wanted.set()
                    self._warmed.wait(REPLACEMENT_WARM_S)
                self._go(message.reply)
            elif isinstance(message, protocol.Retire):
                # mod_wsgi finishes the requests in flight, then exits. So does a process of the
                # retired group that never imported the app (it joined the group after the
                # hand-over that made the group serve, and no request reached it): it holds no
                # old code, but the leader named it among the retiring, and the reload is done
                # only once they have exited (a compat run's "Reloaded" line came 55 s late,
                # after the clients had had the new code for 54 s).
                restart_process([])
                self.retired.set()

    def _refresh_if_stale(self) -> bool:
        """Restart this standby if a file it imported changed since; whether it does."""
        stale = self._stale()
        if stale:
            events.emit(
                protocol.StandbyRefresh(files=tuple(stale[:MAX_EVENT_FILES]), count=len(stale))
            )
            restart_process(stale)
        return bool(stale)

    def _go(self, reply_path: str) -> None:
        # Answered at once, from the files it has imported so far (a stat each), while a
        # warm-up may still be running: the route flips now, the old group retires and gives
        # the machine to this one, and requests wait here for the new code, not elsewhere for
        # the old. Under a busy load that is what brings the new code soonest.
        checked_at = time.time()
        stale = self._stale()
        # Stale: it imported old code before, and only a new process is clean. It restarts when
        # the serving group's new processes say they serve (op warm), not now, beside them.
        answer = "stale" if stale else "ready"
        try:
            self._socket.sendto(
                protocol.pack(protocol.Answer(answer=answer, pid=os.getpid())), reply_path
            )
        except OSError:
            return  # the leader stopped waiting (this process was stopped past GO_TIMEOUT_S)
        if stale:
            return
        # A hand-over from here on is one this process leads: noted now, even where a request
        # queued on this group's socket before an earlier flip had it import the app (and note
        # the generation then); a stale note would have no process of the group lead the next
        # change, and the edit wait IMPORT_TIMEOUT_S.
        with self._noting:
            imported, self._stray = self._stray, False
            self.generation = self._lock.generation()
            self.taking_over = True
        # The rest in a thread of its own: this one must go on answering (a retire, should the
        # import hang and a fix be saved).
        threading.Thread(
            target=self._take_over,
            args=(checked_at if imported else None,),
            name="wsgidev-take-over",
            daemon=True,
        ).start()

    def _take_over(self, current_since: float | None) -> None:
        """Import the app (unless a stray request had it imported: current_since, when what it
        imported was found unchanged), start watching, and have the standbys look again."""
        assert self._load is not None
        # Before the import: a request that waited for it may answer before this thread wakes.
        imported_at = time.time()
        self._load()  # after the warm-up, under its lock; an import error serves its error page
        if current_since is not None:
            # It imported before the save, and says so no more: it serves the new code from
            # the check on (wsgidev start counts it then, not at its import).
            events.emit(protocol.Ready(started_at=current_since, group=self.group))
        if self._activate is not None:
            # Watching once imported and once the requests that waited for the new code have
            # had their first answer: registering a large site's folders (thousands) holds the
            # GIL for a few hundred ms that those requests need. A save meanwhile is still a
            # change: baselines are the states noted when the import began, and a file first
            # found at the arm (a glob's, Django's template folders) counts as changed if
            # touched since then (Monitor.import_starting).
            deadline = time.monotonic() + FIRST_ANSWER_WAIT_S
            while last_answer_at() < imported_at and time.monotonic() < deadline:
                time.sleep(POLL_S / 2)
            self._activate()
        self._warm_wanted.set()  # the warm-up thread sees the app imported and ends
        # The leader forgets the old group's record before it flips the route: a record written
        # before the flip (an import quicker than the leader's next steps) would be forgotten.
        # The leader flips once the group's every process answered (one asked once warm, the
        # longest); a group it passed over (a sibling was stale) never serves, and records not.
        deadline = time.monotonic() + GO_TIMEOUT_S + REPLACEMENT_WAIT_S + REPLACEMENT_WARM_S
        while not self.serving():
            if time.monotonic() >= deadline:
                return
            time.sleep(POLL_S)
        # With what it imported; and every standby looks again: one made stale by this edit
        # (it was passed over) restarts now, after the new code serves.
        self.record_modules(tell_standby=True)
