"""How a monitor brings new code in: restart its own daemon, or gracefully restart the server.

``process`` is the mod_wsgi daemon-mode recipe: SIGINT to itself. mod_wsgi lets requests in
flight finish and exits; Apache's parent notices the death from its maintenance loop, which
sleeps a second between looks, and starts a fresh process. That second is the floor of every
reload, and each process pays it on its own.

``server`` is for an Apache that wsgidev owns (`wsgidev start`): SIGUSR1 to the Apache parent
asks for a graceful restart. The parent wakes at once, keeps the listening socket, starts new
daemon processes, and lets the old children and daemons finish what they are serving: all
processes get the new code in about 0.1 s plus the app's import time. Never used on a system
Apache (`wsgidev config apache`, hand-written scripts): it would restart every site there.
Every daemon sees the change; a lock file in the server root lets only the first one ask.
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections.abc import Callable
from pathlib import Path

from wsgidev.monitor.base import log

STRATEGIES = ("process", "server")
LOCK_NAME = "restart.lock"


def create_lock(state_dir: Path) -> None:
    """The lock file restart_server needs, dated long before any daemon started."""
    path = state_dir / LOCK_NAME
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
