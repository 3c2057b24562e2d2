"""One honest line per reload: the terminal's reading of the daemons' events (wsgidev/logstream.py).

Events go through their real encoding (events.emit into an error-log line), as from Apache."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from typing import Any

import pytest

from wsgidev.logstream import LogPrinter
from wsgidev.shared import events, protocol


class Terminal:
    """A LogPrinter for 2 processes and what it printed."""

    def __init__(self) -> None:
        self.out = io.StringIO()
        self.printer = LogPrinter(self.out, processes=2, colour=False, verbose=False)

    def event(self, kind: str, pid: int, t: float, **fields: Any) -> None:
        """An event as a daemon process emits it, read from the error log."""
        made = protocol.decode({"event": kind, **fields})  # lists as JSON has them
        assert not isinstance(made, protocol.Unreadable), made
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            events.emit(made)
        message = stderr.getvalue().strip()
        # The event's own pid and time are what a daemon would have put there.
        parsed = events.parse(message)
        assert parsed is not None and parsed == dataclasses.replace(
            made, pid=parsed.pid, t=parsed.t
        )
        self.printer._event(dataclasses.replace(parsed, pid=pid, t=t))  # as error_line does

    def lines(self) -> list[str]:
        return [line for line in self.out.getvalue().splitlines() if line.startswith("Reloaded")]


SAVED = 1000.0
APP = "/site/app.py"


def test_process_mode_line_counts_from_the_save_to_the_last_new_import():
    term = Terminal()
    for pid in (11, 12):  # both old processes see the save, dated alike
        term.event("change", pid, SAVED + 0.3, files=[APP], saved_at=SAVED)
    term.event("ready", 21, SAVED + 1.0, started_at=SAVED + 0.6)
    assert term.lines() == []  # one of two processes has the new code
    term.event("ready", 22, SAVED + 1.4, started_at=SAVED + 0.9)
    assert term.lines() == [f"Reloaded in 1.40 s: {APP} changed"]


def test_an_import_begun_between_an_in_place_saves_two_writes_does_not_count():
    # An in-place save truncates, then writes: a process that began importing in between (it
    # read a half-written file) sees the second write and restarts; seen in process mode.
    term = Terminal()
    term.event("change", 11, SAVED + 0.05, files=[APP], saved_at=SAVED)
    term.event("ready", 12, SAVED + 0.003, started_at=SAVED + 0.001)
    term.event("change", 12, SAVED + 1.5, files=[APP], saved_at=SAVED + 0.002)
    term.event("ready", 21, SAVED + 1.0, started_at=SAVED + 0.9)
    assert term.lines() == []  # process 12 began before the last write
    term.event("ready", 22, SAVED + 2.0, started_at=SAVED + 1.9)
    assert term.lines() == [f"Reloaded in 2.00 s: {APP} changed"]


def test_an_import_begun_before_the_save_does_not_count():
    term = Terminal()
    term.event("ready", 21, SAVED + 0.5, started_at=SAVED - 0.1)  # read the old file
    term.event("change", 11, SAVED + 0.3, files=[APP], saved_at=SAVED)
    term.event("ready", 22, SAVED + 1.0, started_at=SAVED + 0.6)
    assert term.lines() == []


def test_a_hand_over_waits_for_the_taking_group_and_the_old_group_to_exit():
    term = Terminal()
    # Live pids stand for the retiring processes: until they say they exit, they serve old code.
    retiring = [os.getpid(), os.getppid()]
    term.event("change", retiring[0], SAVED + 0.05, files=[APP], saved_at=SAVED)
    term.event(
        "handover",
        retiring[0],
        SAVED + 0.08,
        to="g-b",
        files=[APP],
        retiring=retiring,
        answers={"21": "ready", "22": "ready"},
    )
    term.event("ready", 31, SAVED + 0.3, started_at=SAVED + 0.1, group="g-c")  # another group
    term.event("ready", 21, SAVED + 0.4, started_at=SAVED + 0.1, group="g-b")
    term.event("ready", 22, SAVED + 0.5, started_at=SAVED + 0.1, group="g-b")
    term.event("exit", retiring[0], SAVED + 0.55, last_answer_at=SAVED + 0.2)
    assert term.lines() == []  # one old process still serves
    # Its last (slow) request got the old code after the new group was ready: counted to it.
    term.event("exit", retiring[1], SAVED + 0.6, last_answer_at=SAVED + 0.52)
    assert term.lines() == [f"Reloaded in 0.52 s: {APP} changed"]


def test_a_late_report_of_a_finished_reload_is_not_a_new_one():
    term = Terminal()
    term.event("change", 11, SAVED + 0.05, files=[APP], saved_at=SAVED)
    term.event("ready", 21, SAVED + 0.4, started_at=SAVED + 0.1)
    term.event("ready", 22, SAVED + 0.5, started_at=SAVED + 0.1)
    term.event("change", 12, SAVED + 0.9, files=[APP], saved_at=SAVED)  # a slow sibling
    # ...one that dated it by the in-place save's truncate, 30 ms before its write (a writer
    # descheduled between the two on a busy machine: a third line for two saves, seen).
    term.event("change", 13, SAVED + 0.9, files=[APP], saved_at=SAVED - 0.03)
    term.event("ready", 23, SAVED + 3.0, started_at=SAVED + 2.0)
    term.event("ready", 24, SAVED + 3.1, started_at=SAVED + 2.0)
    assert len(term.lines()) == 1


@pytest.mark.parametrize("gap_s", [0.2, 1.5])
@pytest.mark.parametrize("other", ["/site/other.py", APP])
def test_two_saves_are_two_lines_each_with_its_own_file(gap_s: float, other: str):
    term = Terminal()
    term.event("change", 11, SAVED + 0.05, files=[APP], saved_at=SAVED)
    term.event("change", 11, SAVED + gap_s + 0.05, files=[other], saved_at=SAVED + gap_s)
    term.event("ready", 21, SAVED + gap_s + 0.5, started_at=SAVED + gap_s + 0.1)
    term.event("ready", 22, SAVED + gap_s + 0.6, started_at=SAVED + gap_s + 0.1)
    lines = term.lines()
    assert len(lines) == 2, lines
    assert lines[0].endswith(f": {APP} changed") and lines[1].endswith(f": {other} changed")


def test_a_hand_over_to_a_group_still_starting_counts_the_processes_that_answered():
    # Apache had started one of the group's two processes again: it answered go and serves
    # every request; the other imports the new code whenever it comes.
    term = Terminal()
    term.event("change", 11, SAVED + 0.05, files=[APP], saved_at=SAVED)
    term.event(
        "handover", 11, SAVED + 0.08, to="g-b", files=[APP], retiring=[], answers={"21": "ready"}
    )
    term.event("ready", 21, SAVED + 0.4, started_at=SAVED + 0.1, group="g-b")
    assert term.lines() == [f"Reloaded in 0.40 s: {APP} changed"]


def test_a_retiring_process_that_ends_without_saying_so_still_gets_the_line():
    import subprocess
    import time

    from conftest import wait_for

    term = Terminal()
    now = time.time()
    retiring = subprocess.Popen(["sleep", "30"])  # stands for an old daemon process
    try:
        term.event("change", 11, now, files=[APP], saved_at=now - 0.1)
        term.event("restart-in-place", 11, now, files=[APP], retiring=[retiring.pid], group="g")
        term.event("ready", 21, now + 0.2, started_at=now, group="g")
        term.event("ready", 22, now + 0.2, started_at=now, group="g")
        assert term.lines() == []  # the retiring process still runs: old code may be served
        retiring.kill()  # killed past --shutdown-timeout: no "exit" event comes
        retiring.wait(5)
        wait_for(lambda: len(term.lines()) == 1, 5, "the line, without a further event")
    finally:
        retiring.kill()


def test_apaches_line_for_each_crashed_daemon_shows_once_and_stuck_imports_once():
    terminal = Terminal()
    for pid in (101, 102, 103):
        terminal.printer.error_line(
            f"notice\t1\tcore\tAH00052: child pid {pid} exit signal Segmentation fault (11)\n"
        )
    terminal.printer.error_line("notice\t1\tcore\tAH00052: child pid 104 exit signal Aborted (6)\n")
    for pid in (101, 102):
        terminal.event(
            "import-slow",
            pid,
            1.0,
            error="still importing after 10 s, at app.py:3",
            traceback="Stack ...\nstill importing after 10 s, at app.py:3",
        )
    for pid in (101, 102):  # the stuck import ends after all
        terminal.event("ready", pid, 12.0, import_s=12.3, started_at=0.0, group="g")
    out = terminal.out.getvalue()
    assert out.count("Segmentation fault") == 1 and out.count("Aborted") == 1, out
    assert out.count("The app is still importing after 10 s, at app.py:3;") == 1, out
    assert out.count("The app has imported, in 12.3 s; requests get it now") == 1, out


def test_a_reload_of_many_files_counts_the_ones_it_does_not_name():
    # An event names at most 20 files and counts the rest; the line names 3 and counts the rest.
    term = Terminal()
    files = [f"/site/app/m{number:02}.py" for number in range(20)]
    for pid in (11, 12):
        term.event("change", pid, SAVED + 0.3, files=files, count=31, saved_at=SAVED)
    for pid in (21, 22):
        term.event("ready", pid, SAVED + 1.0, started_at=SAVED + 0.6)
    names = ", ".join(files[:3])
    assert term.lines() == [f"Reloaded in 1.00 s: {names} and 28 more changed"]


def test_an_access_line_carries_the_requests_queries_and_old_lines_still_read():
    term = Terminal()
    term.printer.access_line("03/Dec/2026 12:00:00\tGET /shop/ HTTP/1.1\t200\t5120\t38000\t14 9.2")
    term.printer.access_line("03/Dec/2026 12:00:01\tGET /one HTTP/1.1\t200\t10\t1000\t1 0.4")
    term.printer.access_line("03/Dec/2026 12:00:02\tGET /static/a.css HTTP/1.1\t200\t9\t500\t-")
    term.printer.access_line("03/Dec/2026 12:00:03\tGET /old HTTP/1.1\t200\t9\t500")
    assert term.out.getvalue().splitlines() == [
        '[03/Dec/2026 12:00:00] "GET /shop/ HTTP/1.1" 200 5120 38ms \u00b7 14 queries 9ms',
        '[03/Dec/2026 12:00:01] "GET /one HTTP/1.1" 200 10 1ms \u00b7 1 query 0ms',
        '[03/Dec/2026 12:00:02] "GET /static/a.css HTTP/1.1" 200 9 0ms',
        '[03/Dec/2026 12:00:03] "GET /old HTTP/1.1" 200 9 0ms',
    ]


def test_a_terminal_without_the_middle_dot_gets_a_dash():
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    printer = LogPrinter(out, processes=1, colour=False, verbose=False)
    printer.access_line("03/Dec/2026 12:00:00\tGET / HTTP/1.1\t200\t1\t1000\t3 1.0")
    out.flush()
    assert out.buffer.getvalue().decode().endswith("200 1 1ms - 3 queries 1ms\n")  # type: ignore[attr-defined]
