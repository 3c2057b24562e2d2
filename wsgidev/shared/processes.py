"""Processes and files as both sides see them."""

from __future__ import annotations

import os


def short_path(path: str) -> str:
    """A file as a terminal line shows it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def pid_alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not): /proc's state where there is one, else kill 0."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except (OSError, IndexError):
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# A Python service (wsgidev.daemon.service) exits with this when a file it imported changed:
# wsgidev start (wsgidev/services.py) starts it again at once, without a back-off.
SERVICE_EXIT_CHANGED = 75
# What wsgidev start tells a Python service (a JSON object in its environment, taken out before
# the program runs): its name, the monitor's settle, --exclude, --reload-backend and
# --poll-interval, and the terminal's debugger socket.
SERVICE_ENV_VAR = "WSGIDEV_SERVICE"
