"""The leader of a service's process group, between wsgidev and the service (any command, a
Python service under wsgidev.daemon.service too):

    python -m wsgidev.daemon.leader [--grace SECONDS] [--signal N] COMMAND [ARGS...]

SECONDS (5 if not given): how long what the service leaves in the group has after SIGTERM.
N: the signal the service gets when the leader gets SIGTERM (its graceful stop: SIGINT for
Huey's consumer); SIGTERM if not given.

A module of its own, importing the standard library only: one runs per service and standby, for
as long as they run, and the service's module (the monitor, the debugger) would cost each one
megabytes it never uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    grace_s, stop = 5.0, signal.SIGTERM
    while len(argv) > 2 and argv[0] in ("--grace", "--signal"):
        if argv[0] == "--grace":
            grace_s = float(argv[1])
        else:
            stop = signal.Signals(int(argv[1]))
        argv = argv[2:]
    return _lead(argv, grace_s, stop)


def _lead(argv: list[str], grace_s: float, stop: signal.Signals = signal.SIGTERM) -> int:
    """The leader of a service's process group, between wsgidev and the service (any command,
    a Python service too). A SIGTERM (wsgidev stops it, or the kernel's when wsgidev dies:
    PR_SET_PDEATHSIG reaches only this process) goes to the service alone (a Celery worker's
    pool must not get one: its tasks would die); once the service has exited, what it left in
    the group (a shell's children, a helper) gets SIGTERM, then SIGKILL after --shutdown-timeout."""
    child: subprocess.Popen[bytes] | None = None
    asked: int | None = None

    def ask(signum: int, frame: object) -> None:
        nonlocal asked
        if asked is None:
            asked = stop if signum == signal.SIGTERM else signum
            if child is not None:
                child.send_signal(asked)

    signal.signal(signal.SIGTERM, ask)  # before the child exists: no SIGTERM is lost
    signal.signal(signal.SIGINT, ask)
    child = subprocess.Popen(argv)
    if asked is not None:
        child.send_signal(asked)
    status = child.wait()
    _end_the_rest_of_the_group(grace_s)
    return status if status >= 0 else 128 - status


def _end_the_rest_of_the_group(grace_s: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.killpg(0, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _others_in_group() and time.monotonic() < deadline:
        time.sleep(0.05)
    if _others_in_group():
        for pid in _others_in_group():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _others_in_group() -> list[int]:
    """The other live processes of this process group (Linux's /proc)."""
    me, group = os.getpid(), os.getpgid(0)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(entry))
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
