"""How a monitor brings new code in without a standby: restart its own daemon, or the server.

The default under `wsgidev start` is a hand-over to a warmed standby group (standby.py); these
two are what `--restart-mode process` and `--restart-mode server` choose, and ``process`` is
what a monitor does anywhere else (the `wsgidev config apache` snippet, hand-written scripts).

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
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from wsgidev.monitor.base import log

STRATEGIES = ("process", "server")
LOCK_NAME = "restart.lock"


def create_lock(state_dir: Path, name: str = LOCK_NAME) -> None:
    """A lock file dated long before any daemon started (restart_server's by default)."""
    path = state_dir / name
    path.touch()
    os.utime(path, ns=(0, 0))


def restart_process(files: list[str]) -> None:
    """Ask mod_wsgi to restart this daemon process."""
    # In a daemon process mod_wsgi's handler turns SIGINT into a graceful shutdown (requests in
    # flight finish, up to shutdown-timeout); Apache then starts a fresh process.
    os.kill(os.getpid(), signal.SIGINT)


def restart_server(state_dir: str, process_started_ns: int) -> Callable[[list[str]], None]:
    """An on_change that gracefully restarts the Apache parent, once per round of daemons."""
    lock_path = Path(state_dir) / LOCK_NAME

    def restart(files: list[str]) -> None:
        parent = os.getppid()
        if parent <= 1:  # orphaned: the parent is gone, do not signal init
            restart_process(files)
            return
        try:
            # wsgidev creates the lock with an old mtime; never create it here, where a fresh
            # mtime would read as "a sibling already asked".
            with lock_path.open("r+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                if os.fstat(lock.fileno()).st_mtime_ns >= process_started_ns:
                    return  # a sibling asked since this process started: the restart is coming
                os.utime(lock.fileno())
                os.kill(parent, signal.SIGUSR1)
        except OSError as exc:
            log(f"cannot ask Apache (pid {parent}) to restart ({exc}); restarting this process")
            restart_process(files)

    return restart


def exit_without_teardown() -> None:
    """Register (last, so it runs before earlier handlers) an exit that skips interpreter teardown."""

    def exit_now() -> None:
        # Requests in flight have finished (mod_wsgi runs atexit after them); what is left is
        # freeing memory the process is about to give back anyway.
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)

    atexit.register(exit_now)
