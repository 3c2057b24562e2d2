"""The reload tracker (wsgidev/reloads.py) fed typed events, with a clock, live pids and timers of
its own: no Apache, no threads. And the protocol's encoding (wsgidev/shared/protocol.py)."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
from collections.abc import Callable

import pytest

from wsgidev.logstream import LogPrinter
from wsgidev.reloads import ReloadDone, ReloadTracker, Subscriber
from wsgidev.shared import events, protocol

SAVED = 1000.0
APP = "/site/app.py"


class Recorder(Subscriber):
    """A subscriber that writes down what it hears: a new subscriber is a class like this one
    and one line, tracker.subscribe(...)."""

    def __init__(self) -> None:
        self.heard_kinds: list[str] = []
        self.said: list[tuple[str, object]] = []

    def heard(self, event: protocol.Event) -> None:
        self.heard_kinds.append(event.KIND)

    def reload_started(self, reload: object) -> None:
        self.said.append(("started", reload))

    def new_code(self) -> None:
        self.said.append(("new code", None))

    def reload_done(self, done: ReloadDone) -> None:
        self.said.append(("done", done))

    def taken_in_place(self, files: tuple[str, ...], first: bool) -> None:
        self.said.append(("taken", (files, first)))

    def import_failed(self, event: protocol.ImportFailed, repeated: bool) -> None:
        self.said.append(("failed", repeated))

    def held_by_debugger(self, event: protocol.DebugHeld) -> None:
        self.said.append(("held", event.pid))

    def done(self) -> list[ReloadDone]:
        return [what for name, what in self.said if name == "done"]  # type: ignore[misc]


class Machine:
    """A tracker for 2 processes per group, on a clock and a pid table the test moves."""

    def __init__(self) -> None:
        self.now = SAVED
        self.live: set[int] = set()
        self.timers: list[tuple[float, Callable[[], None]]] = []
        self.tracker = ReloadTracker(
            2, clock=lambda: self.now, alive=self.live.__contains__, schedule=self._schedule
        )
        self.heard = Recorder()
        self.tracker.subscribe(self.heard)

    def _schedule(self, delay_s: float, callback: Callable[[], None]) -> None:
        self.timers.append((self.now + delay_s, callback))

    def at(self, t: float, event: protocol.Event) -> None:
        self.now = t
        if isinstance(event, protocol.Ready):
            self.live.add(event.pid)  # a process that says it is ready is there
        self.tracker.feed(dataclasses.replace(event, t=t))

    def ready(self, t: float, pid: int, began: float, group: str) -> None:
        """pid of group has imported the app, its import begun at began."""
        self.at(t, protocol.Ready(pid=pid, started_at=began, group=group))

    def change(self, t: float, pid: int, saved: float) -> None:
        """pid tells of a save of APP (one file) made at saved."""
        self.at(t, protocol.Change(pid=pid, files=(APP,), count=1, saved_at=saved))

    def started(self, pids: tuple[int, ...] = (11, 12), group: str = "g") -> None:
        """The server's start: pids imported the app well before the save."""
        for pid in pids:
            self.ready(SAVED - 5, pid, SAVED - 5.1, group)

    def hand_over(
        self,
        t: float,
        pid: int,
        to: str,
        takers: tuple[int, ...],
        retiring: tuple[int, ...],
        files: tuple[str, ...] = (APP,),
    ) -> None:
        """pid leads a hand-over of files to group to, whose takers all answered ready."""
        answers = {str(taker): "ready" for taker in takers}
        self.at(
            t, protocol.Handover(pid=pid, to=to, files=files, answers=answers, retiring=retiring)
        )

    def exit(self, t: float, pid: int, last_answer: float) -> None:
        """pid says it exits, its app's last answer given at last_answer, and is gone."""
        self.live.discard(pid)
        self.at(t, protocol.Exit(pid=pid, last_answer_at=last_answer))

    def run_timers(self, until: float) -> None:
        self.now = until
        due, self.timers = (
            [c for at, c in self.timers if at <= until],
            [(at, c) for at, c in self.timers if at > until],
        )
        for callback in due:
            callback()


def hand_over_to_21_and_22(m: Machine, at: float) -> None:
    """Process 11 leads a hand-over of APP from group g (11, 12) to g-b (21, 22)."""
    m.hand_over(at, 11, "g-b", (21, 22), (11, 12))


def test_a_subscriber_hears_a_hand_over_from_the_change_to_the_done_line():
    m = Machine()
    m.live |= {11, 12}
    for pid in (11, 12):
        m.change(SAVED + 0.05, pid, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.08)
    m.ready(SAVED + 0.3, 21, SAVED + 0.1, "g-b")
    m.ready(SAVED + 0.4, 22, SAVED + 0.1, "g-b")
    m.exit(SAVED + 0.45, 11, SAVED + 0.09)
    assert m.heard.done() == []  # process 12 still serves the old code
    m.live.discard(12)
    # A request routed to it before the flip was slow: its old-code answer left after the takers
    # were ready, and the line counts to that answer, not to the exit.
    m.at(SAVED + 0.5, protocol.Exit(pid=12, last_answer_at=SAVED + 0.42))
    names = [name for name, _ in m.heard.said]
    assert names == ["started", "new code", "done"]  # the browsers hear at the flip
    (done,) = m.heard.done()
    assert done.files == (APP,) and done.seconds == pytest.approx(0.42)
    assert m.heard.heard_kinds == ["change"] * 2 + ["handover", "ready", "ready", "exit", "exit"]
    # Where the time went (the verbose line), each part from the save.
    assert done.parts == (
        ("seen", pytest.approx(0.05)),
        ("handed over", pytest.approx(0.08)),
        ("import began", pytest.approx(0.1)),
        ("imported", pytest.approx(0.4)),
        ("old code's last answer", pytest.approx(0.42)),
    )
    out = io.StringIO()
    LogPrinter(out, processes=2, colour=False, verbose=True).reload_done(done)
    assert out.getvalue().splitlines()[-1] == (
        "Reload timeline: seen +0.05 s · handed over +0.08 s · import began +0.10 s · "
        "imported +0.40 s · old code's last answer +0.42 s"
    )
    quiet = io.StringIO()
    LogPrinter(quiet, processes=2, colour=False, verbose=False).reload_done(done)
    assert "timeline" not in quiet.getvalue()


def test_the_line_counts_to_the_last_taker_ready_not_to_the_old_processes_exits():
    # What clients see: the old group answers its last requests just after the flip and exits
    # a few hundred ms later; the requests waiting in the new group get the new code as soon
    # as its processes are ready. The exits are what the tracker waits for, not what it times.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.08)
    m.ready(SAVED + 0.2, 21, SAVED + 0.1, "g-b")
    m.ready(SAVED + 0.25, 22, SAVED + 0.1, "g-b")
    for pid, t in ((11, 0.4), (12, 0.6)):
        m.live.discard(pid)
        assert m.heard.done() == []
        m.at(SAVED + t, protocol.Exit(pid=pid, last_answer_at=SAVED + 0.09))
    (done,) = m.heard.done()
    assert done.seconds == pytest.approx(0.25)


def test_siblings_that_caught_different_saves_of_a_storm_get_one_line():
    # Saves every 20 ms; on a busy machine each process of the old group settles at its own
    # moment and reports the save its look caught, 0.2 s apart: two reloads the same hand-over
    # serves. Their lines came together (3 lines for one storm in compat): one line now.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.change(SAVED + 0.05, 11, SAVED)
    m.change(SAVED + 0.25, 12, SAVED + 0.2)
    hand_over_to_21_and_22(m, SAVED + 0.3)
    m.ready(SAVED + 0.5, 21, SAVED + 0.32, "g-b")
    m.ready(SAVED + 0.6, 22, SAVED + 0.32, "g-b")
    for pid in (11, 12):
        m.exit(SAVED + 0.7, pid, SAVED + 0.29)
    (done,) = m.heard.done()
    assert done.files == (APP,) and done.seconds == pytest.approx(0.6)
    # A save the takers' import did not read is a reload of its own.
    m.change(SAVED + 0.9, 21, SAVED + 0.4)
    assert len(m.heard.done()) == 1


def test_the_next_save_handed_over_before_the_old_group_exits_is_a_reload_of_its_own():
    # A save every time the clients have the last one: the next hand-over comes while the group
    # the last one retired is still exiting. That reload is served already: its line comes at
    # the exits, dated by its own takers, not by the next save's.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.08)
    m.ready(SAVED + 0.2, 21, SAVED + 0.1, "g-b")
    m.ready(SAVED + 0.3, 22, SAVED + 0.1, "g-b")
    m.change(SAVED + 0.55, 21, SAVED + 0.5)
    m.hand_over(SAVED + 0.6, 21, "g", (31, 32), (21, 22))
    for pid in (11, 12):
        m.exit(SAVED + 0.7, pid, SAVED + 0.09)
    (first,) = m.heard.done()
    assert first.seconds == pytest.approx(0.3)
    m.ready(SAVED + 0.8, 31, SAVED + 0.65, "g")
    m.ready(SAVED + 0.9, 32, SAVED + 0.65, "g")
    for pid in (21, 22):
        m.exit(SAVED + 1.0, pid, SAVED + 0.61)
    assert [done.seconds for done in m.heard.done()] == [
        pytest.approx(0.3),
        pytest.approx(0.4),
    ]


def test_a_storm_sibling_told_after_the_hand_over_waits_for_the_old_group_and_joins_it():
    # The same storm, process 12's report read after the hand-over: its reload has no takers
    # of its own. 11 and 12 still hold the old code until they exit; then one line.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.started()
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.3)
    m.change(SAVED + 0.31, 12, SAVED + 0.2)
    m.ready(SAVED + 0.5, 21, SAVED + 0.32, "g-b")
    m.ready(SAVED + 0.6, 22, SAVED + 0.32, "g-b")
    assert m.heard.done() == []
    for pid in (11, 12):
        m.exit(SAVED + 0.7, pid, SAVED + 0.29)
    assert [done.seconds for done in m.heard.done()] == [pytest.approx(0.6)]


def test_a_reload_whose_taker_died_is_not_moved_onto_the_next_save():
    # Taker 22 was killed while importing and 23 took its place; the next save is handed
    # over before the old group has exited. The first reload keeps its own hand-over.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.08)
    m.ready(SAVED + 0.2, 21, SAVED + 0.1, "g-b")
    m.live.discard(22)
    m.ready(SAVED + 0.4, 23, SAVED + 0.25, "g-b")
    m.change(SAVED + 0.55, 21, SAVED + 0.5)
    m.hand_over(SAVED + 0.6, 21, "g", (31, 32), (21, 23))
    for pid in (11, 12):
        m.exit(SAVED + 0.7, pid, SAVED + 0.09)
    # Served from 21's import on (the lost-taker rule of _serves: the surviving takers and the
    # group's first process with the new code), with a note that 22 was lost.
    (first,) = m.heard.done()
    assert first.seconds == pytest.approx(0.2) and first.notes
    m.ready(SAVED + 0.8, 31, SAVED + 0.65, "g")
    m.ready(SAVED + 0.9, 32, SAVED + 0.65, "g")
    for pid in (21, 23):
        m.exit(SAVED + 1.0, pid, SAVED + 0.61)
    assert [done.seconds for done in m.heard.done()][1:] == [pytest.approx(0.4)]


def test_a_fresh_process_a_debugger_holds_does_not_serve_for_its_sibling():
    # 31 imported the new code, then saw the next save and a debugger session holds it while
    # it stops; 12 has not seen the first save yet and still has the old code.
    m = Machine()
    m.started()
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=(APP,), saved_at=SAVED))
    m.exit(SAVED + 0.06, 11, SAVED + 0.04)
    m.ready(SAVED + 0.4, 31, SAVED + 0.3, "g")
    m.at(SAVED + 0.55, protocol.Change(pid=31, files=(APP,), saved_at=SAVED + 0.5))
    m.at(SAVED + 0.56, protocol.DebugHeld(pid=31, reason="shutdown_signal"))
    assert m.heard.done() == []


def test_a_storm_sibling_dated_after_the_flip_joins_the_reload_that_retired_it():
    # 12, still settling while the storm goes on, reports the save its look caught, dated
    # after the hand-over flipped. The hand-over retired it: its save is that reload's (the
    # takers' import began after it), and one line comes once the old group has exited.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.started()
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.15)
    m.change(SAVED + 0.25, 12, SAVED + 0.2)
    m.ready(SAVED + 0.5, 21, SAVED + 0.32, "g-b")
    m.ready(SAVED + 0.6, 22, SAVED + 0.32, "g-b")
    assert m.heard.done() == []
    for pid in (11, 12):
        m.exit(SAVED + 0.7, pid, SAVED + 0.65)
    assert [(d.saved_at, d.seconds) for d in m.heard.done()] == [(SAVED, pytest.approx(0.65))]


def test_a_standby_a_stray_request_reached_is_not_waited_for():
    # 41, a standby of another group, imported the app for a stray request before the save
    # and serves no one. The storm sibling's reload (told after the hand-over) does not wait
    # for it: one line, and the next edit has its own.
    m = Machine()
    m.live |= {11, 12, 21, 22, 41, 13, 14}
    m.started()
    m.ready(SAVED - 4, 41, SAVED - 4.1, "g-c")
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.3)
    m.change(SAVED + 0.31, 12, SAVED + 0.2)
    m.ready(SAVED + 0.5, 21, SAVED + 0.32, "g-b")
    m.ready(SAVED + 0.6, 22, SAVED + 0.32, "g-b")
    for pid in (11, 12):
        m.exit(SAVED + 0.7, pid, SAVED + 0.29)
    assert [done.seconds for done in m.heard.done()] == [pytest.approx(0.6)]
    later = SAVED + 120
    m.change(later + 0.05, 21, later)
    m.hand_over(later + 0.1, 21, "g", (13, 14), (21, 22))
    for pid in (21, 22):
        m.exit(later + 0.2, pid, later + 0.09)
    m.ready(later + 0.6, 13, later + 0.15, "g")
    m.ready(later + 0.6, 14, later + 0.15, "g")
    assert [(d.saved_at, d.seconds) for d in m.heard.done()][1:] == [(later, pytest.approx(0.6))]


def test_a_taker_still_importing_keeps_its_reload_on_its_own_hand_over():
    # 22 answered ready mid-warm-up and imports 2 s later; 21 serves save 1 from 0.5. Save 2
    # is handed over before 22 said Ready: reload 1 is not moved onto it, and each save has
    # its line, save 1's once 22 has imported.
    m = Machine()
    m.live |= {11, 12, 21, 22, 31, 32}
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.08)
    m.ready(SAVED + 0.5, 21, SAVED + 0.1, "g-b")
    for pid in (11, 12):
        m.exit(SAVED + 0.2, pid, SAVED + 0.09)
    m.change(SAVED + 1.05, 21, SAVED + 1.0)
    m.hand_over(SAVED + 1.1, 21, "g", (31, 32), (21, 22))
    m.ready(SAVED + 2.1, 22, SAVED + 2.0, "g-b")
    for pid, t in ((21, 2.2), (22, 2.3)):
        m.exit(SAVED + t, pid, SAVED + t - 0.1)
    m.ready(SAVED + 2.5, 31, SAVED + 1.2, "g")
    m.ready(SAVED + 2.6, 32, SAVED + 1.2, "g")
    assert [(d.saved_at, d.seconds) for d in m.heard.done()] == [
        (SAVED, pytest.approx(2.1)),
        (SAVED + 1.0, pytest.approx(1.6)),
    ]


def test_a_pid_a_killed_daemon_left_to_another_program_is_not_waited_for_long():
    # 12 was killed without a word and its pid went to some other program: the stale rule
    # would wait for it for ever. It is given up after STALE_FOR_S (the recheck timer looks).
    m = Machine()
    for pid in (11, 12):
        m.ready(SAVED - 60, pid, SAVED - 61, "g")
    m.live.discard(12)
    m.ready(SAVED - 50, 13, SAVED - 51, "g")
    m.live.add(12)  # another program's now
    for pid in (11, 13):
        m.change(SAVED + 0.05, pid, SAVED)
        m.exit(SAVED + 0.06, pid, SAVED - 1)
    m.ready(SAVED + 1.5, 31, SAVED + 1.1, "g")
    m.ready(SAVED + 1.6, 32, SAVED + 1.2, "g")
    assert m.heard.done() == []
    for second in range(1, 40):
        m.run_timers(SAVED + second)
    assert len(m.heard.done()) == 1


def test_a_restart_in_place_counts_to_the_second_process_ready():
    m = Machine()
    m.live |= {11, 12}
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=(APP,), saved_at=SAVED))
    m.at(
        SAVED + 0.06,
        protocol.RestartInPlace(pid=11, group="g", files=(APP,), retiring=(11, 12)),
    )
    for pid in (11, 12):
        m.exit(SAVED + 0.1, pid, SAVED + 0.07)
    m.live |= {31, 32, 33}
    m.ready(SAVED + 0.9, 31, SAVED + 0.3, "g")
    assert m.heard.done() == []  # one process of two has the new code
    m.ready(SAVED + 1.1, 32, SAVED + 0.3, "g")
    (done,) = m.heard.done()
    assert done.seconds == pytest.approx(1.1)
    assert [name for name, _ in done.parts] == [
        "seen", "restarting", "import began", "imported", "old code's last answer"
    ]  # fmt: skip
    assert dict(done.parts)["restarting"] == pytest.approx(0.06)


def test_a_process_restarting_again_does_not_count_for_its_sibling():
    # --restart-mode process: each process restarts on its own when it sees a change. Process
    # 11 saw the save at once and the next one too; its sibling 12 polls late. Two processes
    # imported since the first save, but one has exited: 12 still answers with the old code.
    m = Machine()
    m.started()
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=(APP,), saved_at=SAVED))
    m.exit(SAVED + 0.06, 11, SAVED + 0.04)
    m.ready(SAVED + 0.4, 31, SAVED + 0.3, "g")
    m.at(SAVED + 0.55, protocol.Change(pid=31, files=(APP,), saved_at=SAVED + 0.5))
    m.exit(SAVED + 0.56, 31, SAVED + 0.54)
    m.ready(SAVED + 0.9, 41, SAVED + 0.8, "g")
    assert m.heard.done() == []
    m.at(SAVED + 1.5, protocol.Change(pid=12, files=(APP,), saved_at=SAVED))
    m.exit(SAVED + 1.51, 12, SAVED + 1.5)
    # From 12's last answer every request gets the first save's code (41 has it; 31 had it):
    # that reload's line. The second save waits for as many processes as the group with it.
    (first,) = m.heard.done()
    assert first.seconds == pytest.approx(1.5)
    m.ready(SAVED + 2.1, 42, SAVED + 2.0, "g")
    assert [done.seconds for done in m.heard.done()] == [pytest.approx(1.5), pytest.approx(1.6)]


def test_a_process_that_restarted_again_still_counts_once_its_sibling_has_the_new_code():
    # Both processes saw the save; 31 then restarted for a second one, half a second later.
    # From 32's import on no process has the old code: the first save is served then.
    m = Machine()
    m.started()
    for pid, t in ((11, 0.05), (12, 0.1)):
        m.at(SAVED + t, protocol.Change(pid=pid, files=(APP,), saved_at=SAVED))
        m.exit(SAVED + t + 0.01, pid, SAVED + t - 0.01)
    m.ready(SAVED + 0.4, 31, SAVED + 0.2, "g")
    m.at(SAVED + 0.55, protocol.Change(pid=31, files=(APP,), saved_at=SAVED + 0.5))
    m.exit(SAVED + 0.56, 31, SAVED + 0.54)
    m.ready(SAVED + 0.6, 32, SAVED + 0.3, "g")
    assert [done.seconds for done in m.heard.done()] == [pytest.approx(0.6)]


def test_a_retiring_process_that_ends_silently_is_looked_at_again():
    m = Machine()
    m.live |= {11}
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=(APP,), saved_at=SAVED))
    m.at(
        SAVED + 0.06,
        protocol.RestartInPlace(pid=11, group="g", files=(APP,), retiring=(11,)),
    )
    m.ready(SAVED + 0.5, 21, SAVED + 0.2, "g")
    m.ready(SAVED + 0.6, 22, SAVED + 0.2, "g")
    assert m.heard.done() == []
    m.live.discard(11)  # killed past --shutdown-timeout: no exit event comes
    m.run_timers(SAVED + 1.0)
    assert len(m.heard.done()) == 1


def test_a_taker_that_had_imported_the_app_already_counts_from_its_take_over():
    # A standby process took a request queued on its socket before an earlier flip, and
    # imported the app then. Asked to take over, it answered ready (nothing it imported had
    # changed) and imports nothing more: it says Ready again, dated when it checked (see
    # test_standby.py). Seen end to end (tests/test_reload.py): the edit was served, and no
    # "Reloaded" line came.
    m = Machine()
    m.live |= {11, 21}
    m.ready(SAVED - 5, 21, SAVED - 5.1, "g")
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=("/site/lazy.py",), saved_at=SAVED))
    m.hand_over(SAVED + 0.07, 11, "g", (21,), (11,), files=("/site/lazy.py",))
    m.ready(SAVED + 0.08, 21, SAVED + 0.06, "g")
    assert m.heard.done() == []  # process 11 still serves the old code
    m.live.discard(11)
    m.at(SAVED + 0.2, protocol.Exit(pid=11, last_answer_at=SAVED + 0.15))  # a slow request
    assert [done.seconds for done in m.heard.done()] == [pytest.approx(0.15)]


def test_a_branch_switch_seen_in_two_pieces_is_one_reload():
    # git checkout writes 30 files over a while: one process saw them all at once, its sibling
    # the last ones later, dated later than two daemons' reports of one save ever are. Both
    # were served by the new processes, which began importing after the last of them: one
    # line (two were seen on django-oscar's sandbox).
    m = Machine()
    files = tuple(f"/site/shop/m{n:02}.py" for n in range(30))
    m.at(SAVED + 0.3, protocol.Change(pid=11, files=files[:20], count=30, saved_at=SAVED))
    m.at(SAVED + 0.4, protocol.Ready(pid=21, started_at=SAVED + 0.35))
    m.at(SAVED + 0.5, protocol.Ready(pid=22, started_at=SAVED + 0.35))
    assert len(m.heard.done()) == 1
    m.at(SAVED + 0.6, protocol.Change(pid=12, files=files[10:30], count=20, saved_at=SAVED + 0.2))
    m.at(SAVED + 0.9, protocol.Ready(pid=23, started_at=SAVED + 0.7))
    m.at(SAVED + 1.0, protocol.Ready(pid=24, started_at=SAVED + 0.7))
    assert len(m.heard.done()) == 1, m.heard.done()
    # A save after the new processes began importing is a reload of its own.
    m.at(SAVED + 1.3, protocol.Change(pid=23, files=files[:1], saved_at=SAVED + 1.2))
    m.at(SAVED + 1.6, protocol.Ready(pid=25, started_at=SAVED + 1.4))
    m.at(SAVED + 1.7, protocol.Ready(pid=26, started_at=SAVED + 1.4))
    assert len(m.heard.done()) == 2
    # ...and so is one dated earlier by a copy that keeps mtimes, told by a process that
    # imported after that date: it reports only what changed since its import.
    m.at(SAVED + 2.0, protocol.Change(pid=25, files=files[:1], saved_at=SAVED + 1.0))
    m.at(SAVED + 2.3, protocol.Ready(pid=27, started_at=SAVED + 2.1))
    m.at(SAVED + 2.4, protocol.Ready(pid=28, started_at=SAVED + 2.1))
    assert len(m.heard.done()) == 3


def test_a_template_edit_is_taken_when_every_process_said_so_or_after_a_second():
    m = Machine()
    page = ("/site/templates/page.html",)
    m.at(SAVED + 0.1, protocol.Handled(pid=21, files=page, saved_at=SAVED))
    m.at(SAVED + 0.2, protocol.Handled(pid=22, files=page, saved_at=SAVED))
    m.at(SAVED + 2.1, protocol.Handled(pid=21, files=page, saved_at=SAVED + 2))
    assert [what for name, what in m.heard.said] == [(page, True), (page, False), (page, True)]
    m.run_timers(SAVED + 3.2)  # process 22 had not said so for the second save
    assert m.heard.said[-1] == ("taken", (page, False))
    m.at(SAVED + 3.5, protocol.Handled(pid=22, files=page, saved_at=SAVED + 2))  # late
    assert len(m.heard.said) == 4  # not a new save: told already
    m.at(SAVED + 5.1, protocol.Handled(pid=22, files=page, saved_at=SAVED + 5))  # the next
    assert m.heard.said[-1] == ("taken", (page, True))


def test_an_import_error_is_new_code_once_per_traceback():
    m = Machine()
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=(APP,), saved_at=SAVED))
    for pid in (21, 22):
        m.at(SAVED + 0.3, protocol.ImportFailed(pid=pid, error="SyntaxError", traceback="tb"))
    names = [name for name, _ in m.heard.said]
    assert names == ["started", "new code", "failed", "failed"]
    assert [what for name, what in m.heard.said if name == "failed"] == [False, True]
    assert m.tracker.pending == []  # no "Reloaded" line for code that did not import


def test_a_process_held_by_a_debugger_is_not_waited_for():
    m = Machine()
    m.live |= {11, 12}
    m.at(SAVED + 0.05, protocol.Change(pid=11, files=(APP,), saved_at=SAVED))
    m.at(SAVED + 0.06, protocol.DebugHeld(pid=12, reason="shutdown_signal"))
    m.at(SAVED + 0.5, protocol.Ready(pid=21, started_at=SAVED + 0.2))
    assert ("held", 12) in m.heard.said
    assert len(m.heard.done()) == 1  # one fresh process of two: the other is paused in pdb


# -- the protocol -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(protocol.EVENTS))
def test_every_event_goes_through_the_error_log_and_back(kind: str):
    event = protocol.EVENTS[kind](pid=7, t=SAVED)
    stderr = io.StringIO()
    import contextlib

    with contextlib.redirect_stderr(stderr):
        events.emit(event)
    parsed = events.parse(stderr.getvalue())
    assert type(parsed) is type(event)
    assert dataclasses.replace(parsed, pid=7, t=SAVED) == event  # type: ignore[type-var]


def test_every_control_message_packs_and_unpacks():
    for message in (
        protocol.Go(reply="/srv/reply.1", warm_first=True),
        protocol.Answer(answer="stale", pid=12),
        protocol.Retire(),
        protocol.Warm(),
        protocol.Close(),
    ):
        assert protocol.unpack(protocol.pack(message)) == message
    assert protocol.unpack(b"not json") is None
    assert protocol.unpack(b'{"op": "dance"}') is None
    assert protocol.unpack(b'{"op": "answer", "pid": "twelve"}') is None


def _line(record: object) -> str:
    payload = base64.b64encode(json.dumps(record).encode()).decode()
    return f"info\t7\twsgi\t{events.MARKER}x: y |{payload}"


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"event": "teleport", "pid": 7}, "teleport: no such event"),
        ({"event": "change", "pid": 7, "files": "app.py"}, "change: bad files"),
        ({"event": "ready", "pid": 7, "import_s": "fast"}, "ready: bad import_s"),
        (["not", "an", "object"], "no kind: not an object"),
        ({"event": "cut", "pid": 7, "timeout_s": 10**400}, "cut: bad timeout_s"),
        ({"event": "handover", "pid": 7, "answers": {"me": "ready"}}, "handover: bad answers"),
        ({"event": "change", "pid": 7, "files": [[[["deep"]]]]}, "change: bad files"),
    ],
)
def test_an_event_that_does_not_decode_is_one_line(record: object, problem: str):
    out = io.StringIO()
    printer = LogPrinter(out, processes=2, colour=False, verbose=False)
    printer.error_line(_line(record))
    printer.error_line(_line(record))  # every process says it: once
    (line,) = out.getvalue().splitlines()
    assert line.startswith("wsgidev: an event from process") and f"({problem})" in line, line


def test_an_event_nested_past_the_parser_is_one_line():
    out = io.StringIO()
    printer = LogPrinter(out, processes=2, colour=False, verbose=False)
    deep = base64.b64encode(b"[" * 100_000 + b"]" * 100_000).decode()
    printer.error_line(f"info\t7\twsgi\t{events.MARKER}x: y |{deep}")
    (line,) = out.getvalue().splitlines()
    assert "(no kind: not base64 JSON)" in line, line


def test_a_reload_whose_takers_died_after_a_later_write_keeps_its_group_replacements():
    # A storm sibling's save joined the reload after its takers' import began; both takers
    # were then killed, and Apache's new processes of their group imported the latest code.
    # The next save's hand-over is not this reload's: it is served by those processes.
    m = Machine()
    m.live |= {11, 12, 21, 22}
    m.started()
    m.change(SAVED + 0.05, 11, SAVED)
    hand_over_to_21_and_22(m, SAVED + 0.08)
    m.ready(SAVED + 0.15, 21, SAVED + 0.1, "g-b")
    m.ready(SAVED + 0.16, 22, SAVED + 0.1, "g-b")
    m.change(SAVED + 0.25, 12, SAVED + 0.2)
    m.live -= {21, 22}
    m.ready(SAVED + 0.4, 23, SAVED + 0.3, "g-b")
    m.ready(SAVED + 0.42, 24, SAVED + 0.3, "g-b")
    m.change(SAVED + 0.55, 23, SAVED + 0.5)
    m.hand_over(SAVED + 0.6, 23, "g", (31, 32), (23, 24))
    for pid in (11, 12):
        m.exit(SAVED + 0.65, pid, SAVED + 0.09)
    (first,) = m.heard.done()
    assert first.seconds == pytest.approx(0.4)
    assert [note for note in first.notes if "21, 22" in note and "23, 24" in note], first.notes
