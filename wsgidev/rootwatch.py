"""Notice the server root going away while Apache runs (an `rm -rf`, a temp-folder cleaner).

Everything Apache and the daemons need at run time is in it: the entry script each request maps
to, the daemons' sockets, the hand-over's route and control files. Without it every request gets
a 403 and no edit brings the server back, so `wsgidev start` stops with one line instead.
Rebuilding it in place is not offered: the daemons' sockets are bound once, by Apache's parent,
and only a restart of Apache binds them again; a fresh `wsgidev start` is that restart.

On Linux one inotify watch on the root (inotify_simple, as the daemons' monitor uses) wakes this
only when something in it is deleted (a hand-over's route file, a few per reload), and then one
stat says whether the entry script is still there; elsewhere a stat every POLL_S. The root's own
removal is not waited for: the kernel reports it only once no process holds the folder any more.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

POLL_S = 1.0


def watch_root(root: Path, sentinel: str, gone: Callable[[], None]) -> threading.Thread:
    """Call gone() once, from a daemon thread, when root/sentinel is deleted (or root moved)."""
    thread = threading.Thread(
        target=_watch, args=(root / sentinel, gone), name="wsgidev-root-watch", daemon=True
    )
    thread.start()
    return thread


def _watch(sentinel: Path, gone: Callable[[], None]) -> None:
    try:
        from inotify_simple import INotify, flags

        from wsgidev.shared.inotifylibc import use_loaded_libc
    except ImportError:  # not Linux: inotify_simple is installed only there
        _poll(sentinel, gone)
        return
    try:
        use_loaded_libc()
        notify = INotify()
    except OSError:  # out of inotify instances: stat instead
        _poll(sentinel, gone)
        return
    moved = flags.DELETE_SELF | flags.MOVE_SELF
    with notify:
        try:
            notify.add_watch(sentinel.parent, flags.DELETE | flags.MOVED_FROM | moved)
        except OSError:  # gone before the watch was set
            gone()
            return
        while True:
            events = notify.read()
            if any(event.mask & moved for event in events) or not sentinel.exists():
                gone()
                return


def _poll(sentinel: Path, gone: Callable[[], None]) -> None:
    identity = _identity(sentinel)
    stop = threading.Event()
    while not stop.wait(POLL_S):
        if _identity(sentinel) != identity:
            gone()
            return


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino
