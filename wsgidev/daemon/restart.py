"""How a monitor brings new code in: a hand-over, a restart of its own daemon, or of the server.

STRATEGIES is the one table from a restart mode's name to what a monitor calls on a change.
The default under `wsgidev start` is ``standby``, a hand-over to a warmed standby group
(handover.py); ``process`` and ``server`` are `--restart-mode process` and `--restart-mode server`,
and ``process`` is what a monitor does anywhere else (the `wsgidev config apache` snippet,
hand-written scripts).

``process`` is the mod_wsgi daemon-mode recipe: SIGINT to itself. mod_wsgi lets requests in
flight finish and exits; Apache's parent notices the death from its maintenance loop, which
sleeps a second between looks, and starts a fresh process. That second is the floor of every
such reload, and each process pays it on its own.

``server`` is for an Apache that wsgidev owns (`wsgidev start --restart-mode server`): SIGUSR1
to the Apache parent asks for a graceful restart. The parent wakes at once, keeps the listening
socket, starts new daemon processes and lets old children finish: every process has the new
code about 0.1 s plus the app's import time after the save. The price: the parent removes the
daemons' socket before it binds the new one, and an old-generation Apache child that takes a
request in those milliseconds answers 503 (mod_wsgi retries a refused connect, not a missing
socket). Measured: about one request in three thousand during back-to-back restarts under a
4-client loop. Never used on a system Apache: it would restart every site there. Every daemon
sees the change; a lock file in the server root lets only the first one ask.

Either way the old process should exit quickly, and a big app's daemon spends most of its exit
tearing the interpreter down (0.4-0.6 s for a Wagtail site, about 1,700 modules). Where wsgidev
owns the server, the daemon therefore ends itself with os._exit once the atexit handlers
registered after the monitor (the app's, Django's) have run and logging is flushed: old daemons
are gone in about 10 ms instead.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from wsgidev.daemon.answers import last_answer_at
from wsgidev.daemon.monitor.base import OnChange, log
from wsgidev.shared import events, protocol
from wsgidev.shared.serverroot import RESTART_LOCK, LeaderLock
from wsgidev.shared.spec import RestartPlan

if TYPE_CHECKING:
    from wsgidev.daemon.handover import Handover


def restart_process(files: list[str]) -> None:
    """Ask mod_wsgi to restart this daemon process."""
    # In a daemon process mod_wsgi's handler turns SIGINT into a graceful shutdown (requests in
    # flight finish, up to shutdown-timeout); Apache then starts a fresh process.
    os.kill(os.getpid(), signal.SIGINT)


def restart_server(server_root: str) -> OnChange:
    """An on_change that gracefully restarts the Apache parent, once per round of daemons."""
    lock = LeaderLock(Path(server_root) / RESTART_LOCK)
    noted = lock.generation()  # at start: a restart asked after this covers this process

    def restart(files: list[str]) -> None:
        parent = os.getppid()
        if parent <= 1:  # orphaned: the parent is gone, do not signal init
            restart_process(files)
            return
        try:
            with lock.lead(noted) as leads:
                if leads:
                    os.kill(parent, signal.SIGUSR1)
        except OSError as exc:
            log(f"cannot ask Apache (pid {parent}) to restart ({exc}); restarting this process")
            restart_process(files)

    return restart


def _process(plan: RestartPlan, handover: Handover | None) -> OnChange:
    return restart_process


def _server(plan: RestartPlan, handover: Handover | None) -> OnChange:
    assert plan.server_root is not None  # RestartPlan refuses server mode without one
    return restart_server(plan.server_root)


def _standby(plan: RestartPlan, handover: Handover | None) -> OnChange:
    # No hand-over: it could not start in this process (said in the log): it restarts itself.
    return restart_process if handover is None else handover.on_change


# Restart mode -> what makes the monitor's on_change (wsgidev.shared.spec.RESTART_MODES names them).
STRATEGIES: dict[str, Callable[[RestartPlan, Handover | None], OnChange]] = {
    "standby": _standby,
    "process": _process,
    "server": _server,
}


def on_change_for(plan: RestartPlan, handover: Handover | None = None) -> OnChange:
    """What a monitor calls on a change under this plan (decided by the command: looked up)."""
    return STRATEGIES[plan.mode](plan, handover)


def exit_without_teardown() -> None:
    """Register (last, so it runs before earlier handlers) an exit that skips interpreter teardown."""

    def exit_now() -> None:
        # Requests in flight have finished (mod_wsgi runs atexit after them); what is left is
        # freeing memory the process is about to give back anyway. The event tells wsgidev
        # that no request can get this process's (old) code any more.
        events.emit(protocol.Exit(last_answer_at=last_answer_at()))
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    atexit.register(exit_now)
