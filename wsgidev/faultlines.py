"""What the terminal says about faults the daemons report: a request cut past
--shutdown-timeout, a standby that had died when a hand-over asked it or while it imported.

Only the words; wsgidev/logstream.py decides when to say them."""

from __future__ import annotations

from wsgidev.shared import protocol

# mod_wsgi's shutdown reasons for a stop a reload asked (SIGINT from the monitor or hand-over).
RELOAD_REASONS = ("shutdown_signal", "graceful_signal")
# What mod_wsgi logs in Apache's child when a daemon ended a request without answering, and for
# how long after a cut such errors are taken as its requests'.
DAEMON_GONE = "from daemon process"
CUT_ERRORS_S = 5.0


def cut_line(event: protocol.Cut) -> tuple[str, int]:
    """The line for a Cut event, and how many of mod_wsgi's errors it stands for."""
    requests = list(event.requests)
    timeout_s, pid = f"{event.timeout_s:g}", event.pid
    why = " for a reload" if event.shutdown_reason in RELOAD_REASONS else ""
    what = ", ".join(requests[:3]) + (" ..." if len(requests) > 3 else "")
    line = (
        f"wsgidev: {what or 'a request'} cut: still running {timeout_s} s after process "
        f"{pid} was told to stop{why} (its client gets a 502 page saying so); for longer "
        f"requests pass a larger --shutdown-timeout (now {timeout_s})"
    )
    return line, max(1, len(requests))


def gone_note(
    event: protocol.Handover | protocol.RestartInPlace, takers: set[int] | None, exited: set[int]
) -> str:
    """What a hand-over (or restart in place) did about standby processes that had died when
    asked; '' when none had. One that said it exits (it retired) is no news."""
    said = {**event.passed, **event.answers}
    if not said and takers is None:
        return (
            "no standby process was there to take over (none had started): the serving "
            "group restarted in place"
        )
    gone = sorted(
        int(pid) for pid, answer in said.items() if answer == "gone" and int(pid) not in exited
    )
    if not gone:
        return ""
    dead = f"standby process {_pids(gone)} had died (killed?)"
    if takers:
        return f"{dead}: process {_pids(sorted(takers))} took over"
    if takers is None:
        return f"{dead}: its group was passed over and the serving group restarted in place"
    return f"{dead}: the hand-over went to its group as Apache starts it again"


def lost_taker_note(lost: list[int], serving: list[int]) -> str:
    """A hand-over's taker died before it had imported the new code; others serve it."""
    return (
        f"standby process {_pids(lost)} died while importing the new code; "
        f"process {_pids(serving)} serves it"
    )


def _pids(pids: list[int]) -> str:
    return ", ".join(map(str, pids))
