"""The server root both sides agree on: the names of the files in wsgidev start's private
folder that the daemons share, the leader lock, and creating them."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Files in the server root (wsgidev start's private folder) that the daemons share.
CONTROL_DIR = "ctl"  # one datagram socket per daemon process: <group index>.<pid>
IMPORT_MARKS = "importing"  # <pid> while a daemon imports the app (wsgidev/daemon/importguard.py)
# Keys a daemon holds state for (Werkzeug's console), and its hand-off socket
# (wsgidev/daemon/handoff.py): owners/<key hash> holds the pid, owners/<pid>.sock listens.
OWNERS_DIR = "owners"
# django-debug-toolbar's store, shared by every daemon (wsgidev/daemon/toolbar.py).
TOOLBAR_DIR = "toolbar"
HANDOVER_LOCK = "handover.lock"  # who leads a hand-over
RESTART_LOCK = "restart.lock"  # who asks Apache for a graceful restart (--restart-mode server)
PRELOAD_NAME = "preload.json"  # the serving process's library modules, for the standbys
DEBUG_SOCKET = "debug.sock"  # wsgidev start's terminal, for debugger sessions (only with a tty)
LIVE_SOCKET = "live.sock"  # wsgidev start's event stream for browsers (--live-reload)
# Served by wsgidev (Apache proxies them to LIVE_SOCKET), so no tab holds a daemon thread:
# The app's --env/--env-file values under wsgidev start: a JSON object in Apache's environment,
# which the daemons inherit and take out of os.environ before the app runs. Not in the entry
# script: where the daemons run as www-data (a root start without user namespaces), every
# www-data process could read that file; a process's environment is readable by root alone
# once it has switched users (the kernel marks it not dumpable).
APP_ENV_VAR = "WSGIDEV_APP_ENV"
LIVE_EVENTS_PATH = "/__wsgidev__/events"  # --live-reload's own stream
BROWSER_RELOAD_EVENTS_PATH = "/__reload__/events/"  # django-browser-reload's, at its usual mount
HELD_PREFIX = "held"  # ctl/held.<group index>.<pid>: a retiring process a debugger session holds


def route_name(index: int) -> str:
    """The file whose presence sends requests to group index (the highest present wins; none: 0)."""
    return f"route-{index}"


class LeaderLock:
    """Who leads a restart among sibling processes: a generation number in a locked file.

    Each process notes the generation when it starts serving its code. On a change, the first to
    take the lock finds the generation it noted, leads, and counts one up; a sibling that comes
    second finds a newer generation (a restart that covers it is under way) and does not lead.
    A counter needs no clock: comparing a lock file's mtime with time.time_ns() mixes the
    kernel's coarse file clock with the fine one.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def create(self) -> None:
        """Write generation 0 (the command does, before any daemon starts)."""
        self.path.write_text("0\n", encoding="ascii")

    def generation(self) -> int:
        """The generation now (0 when the file is missing or unreadable)."""
        try:
            return int(self.path.read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    @contextmanager
    def lead(self, noted: int) -> Iterator[bool]:
        """Hold the lock; true (and the generation counted up) when it is still `noted`."""
        with self.path.open("r+", encoding="ascii") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = int(lock.read().strip() or 0)
            except ValueError:
                current = 0
            leads = current == noted
            if leads:
                lock.seek(0)
                lock.write(f"{current + 1}\n")
                lock.truncate()
                lock.flush()
            yield leads


def prepare_server_root(server_root: Path) -> None:
    """Create what the daemons share in the server root: the control folder and the locks."""
    (server_root / CONTROL_DIR).mkdir(exist_ok=True)
    (server_root / IMPORT_MARKS).mkdir(exist_ok=True)
    (server_root / OWNERS_DIR).mkdir(exist_ok=True)
    (server_root / TOOLBAR_DIR).mkdir(exist_ok=True)
    LeaderLock(server_root / HANDOVER_LOCK).create()
    LeaderLock(server_root / RESTART_LOCK).create()
