"""What the `wsgidev` command and the code inside the mod_wsgi daemons share: a leaf module.

The command writes an EntrySpec into the generated entry script as a literal (the daemon cannot
receive the Options object), and both sides agree on the names of the files in the server root.
Nothing here imports the rest of wsgidev; the command side never imports wsgidev.daemon, and the
daemon side never imports options or target.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import IO, Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# How new code comes in (see wsgidev/daemon/restart.py, which holds the table of strategies).
RESTART_MODES = ("standby", "process", "server")

# How long the watched tree must stay quiet before a reload (--reload-settle): under wsgidev
# start an editor's save is over within milliseconds; where code arrives by a deploy (a system
# Apache, a hand-written script) a git pull or rsync writes hundreds of files over seconds, and
# a restart in the middle would import a half-copied tree.
DEV_SETTLE_S = 0.05
STAGING_SETTLE_S = 1.0
MAX_SETTLE_S = 60.0
MAX_SERVE_WAIT_S = 20.0  # see MonitorSpec.serve_wait_s

# Files in the server root (wsgidev start's private folder) that the daemons share.
CONTROL_DIR = "ctl"  # one datagram socket per daemon process: <group index>.<pid>
IMPORT_MARKS = "importing"  # <pid> while a daemon imports the app (wsgidev/daemon/importguard.py)
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


@dataclass(frozen=True, kw_only=True)
class RestartPlan:
    """How the daemons bring new code in: decided once, on the command side
    (wsgidev.render.restart_plan), and looked up by the daemon (wsgidev/daemon/restart.py)."""

    mode: str = "process"  # one of RESTART_MODES
    # wsgidev start owns this Apache: the server root is its own, a whole-server restart is
    # allowed, and a daemon ends itself without tearing the interpreter down.
    owned: bool = False
    server_root: str | None = None  # the owned server's root (locks, control sockets, routes)
    groups: tuple[str, ...] = ()  # standby: the hand-over's daemon groups, serving one first

    def __post_init__(self) -> None:
        if self.mode not in RESTART_MODES:
            raise ValueError(
                f"restart must be one of {', '.join(RESTART_MODES)}, got {self.mode!r}"
            )
        if self.mode != "process" and not (self.owned and self.server_root):
            raise ValueError(
                f"restart mode {self.mode} needs the server root of a server wsgidev owns"
            )
        if self.mode == "standby" and len(self.groups) < 2:
            raise ValueError("restart mode standby needs two daemon groups or more")


@dataclass(frozen=True, kw_only=True)
class MonitorSpec:
    """How the daemon's reload monitor runs."""

    watch: tuple[str, ...] = ()
    backend: str = "auto"
    poll_interval_s: float = 1.0
    plan: RestartPlan = field(default_factory=RestartPlan)
    # An entry script an earlier wsgidev wrote (a system Apache's, until `wsgidev config apache`
    # writes it again) names these three instead of plan: they are read into it.
    restart: InitVar[str | None] = None
    state_dir: InitVar[str | None] = None
    groups: InitVar[tuple[str, ...] | None] = None
    exclude: tuple[str, ...] = ()  # glob patterns of files that never reload
    project_dir: str | None = None  # relative exclude patterns are anchored here
    watch_opened: bool = True  # non-Python files opened while the app imports are watched
    settle_s: float = STAGING_SETTLE_S  # quiet time before a reload (--reload-settle)
    # Under a system Apache, how long a process started during a deploy may wait for the code
    # to be quiet before serving: half of mod_wsgi's queue-timeout, which its requests share.
    serve_wait_s: float = MAX_SERVE_WAIT_S

    def __post_init__(
        self, restart: str | None, state_dir: str | None, groups: tuple[str, ...] | None
    ) -> None:
        if restart is not None:
            plan = RestartPlan(
                mode=restart,
                owned=state_dir is not None,
                server_root=state_dir,
                groups=tuple(groups or ()),
            )
            object.__setattr__(self, "plan", plan)


@dataclass(frozen=True, kw_only=True)
class DebuggerSpec:
    """Where a daemon's breakpoints and post-mortems go (wsgidev/daemon/debugger.py)."""

    # wsgidev start's terminal (a Unix socket in its server root); None: there is none (a
    # system Apache), and a breakpoint is skipped with a log line.
    socket_path: str | None = None
    post_mortem: bool = False  # --pdb: an exception escaping a view opens pdb on it
    # --debug: the app runs in Apache's own process with the terminal as stdin: plain pdb.
    local: bool = False
    # wsgidev enforces --shutdown-timeout itself (mod_wsgi's is off), except while a debugger
    # session is open; None: mod_wsgi's shutdown-timeout applies (a system Apache).
    shutdown_timeout_s: int | None = None


@dataclass(frozen=True, kw_only=True)
class EntrySpec:
    """What a daemon process needs to load the app, written into the entry script."""

    kind: str  # "script", "module" or "django"
    label: str
    script_path: str | None = None
    module: str | None = None
    callable: str = "application"
    environ: tuple[tuple[str, str], ...] = ()
    # wsgidev start: the --env/--env-file values are not in this file but in Apache's
    # environment, under this name as one JSON object (see APP_ENV_VAR).
    environ_var: str | None = None
    # Their names, for what the daemon decides from them (Django or not).
    environ_names: tuple[str, ...] = ()
    monitor: MonitorSpec | None = None
    django_static: str = "none"  # "finders", "root" or "none"
    random_delay_ms: int = 0
    debugger: DebuggerSpec | None = None
    live_reload: bool = False  # inject the refresh script into HTML pages
    # wsgidev start's server root, where a daemon marks that it imports the app; None elsewhere.
    state_dir: str | None = None
    # wsgidev start reads the daemons' events from the error log; elsewhere a person reads it,
    # and each event is one plain line there (wsgidev.events).
    events_read: bool = False
    django: bool = field(init=False, repr=False, default=False)  # from kind and environ

    def __post_init__(self) -> None:
        is_django = self.kind == "django" or any(
            name == "DJANGO_SETTINGS_MODULE"
            for name in (*(n for n, _ in self.environ), *self.environ_names)
        )
        object.__setattr__(self, "django", is_django)


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


def prepare_state_dir(state_dir: Path) -> None:
    """Create what the daemons share in the server root: the control folder and the locks."""
    (state_dir / CONTROL_DIR).mkdir(exist_ok=True)
    (state_dir / IMPORT_MARKS).mkdir(exist_ok=True)
    LeaderLock(state_dir / HANDOVER_LOCK).create()
    LeaderLock(state_dir / RESTART_LOCK).create()


def short_path(path: str) -> str:
    """A file as a terminal line shows it: relative to the working directory when inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def send_message(sock: socket.socket, message: dict[str, Any]) -> None:
    """One message of a debugger session: a JSON object on a line (both ends use these two)."""
    sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")


def read_message(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next message of a debugger session; None at the end of the connection."""
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return {"op": "bad"}
    return message if isinstance(message, dict) else {"op": "bad"}


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
