"""What the command writes into the generated entry script for the daemons, as literals (the
daemon cannot receive the Options object): the entry spec, the monitor's and debugger's, and
the restart plan."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import InitVar, dataclass, field
from typing import Any

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
    django_static: str = "off"  # "finders", "root" or "off" (Options.django_static)
    random_delay_ms: int = 0
    debugger: DebuggerSpec | None = None
    live_reload: bool = False  # inject the refresh script into HTML pages
    # Count a Django request's queries for the access line (wsgidev start's; queries.py) and
    # print each (--print-sql).
    count_queries: bool = False
    print_sql: bool = False
    # Werkzeug's debugger around the app (--werkzeug; wsgidev/daemon/werkzeugdebug.py), its
    # console for requests naming these hosts (wsgidev's own host check lets no other in).
    werkzeug: bool = False
    trusted_hosts: tuple[str, ...] = ()
    # wsgidev start's server root, where a daemon marks that it imports the app; None elsewhere.
    server_root: str | None = None
    # What an entry script an earlier wsgidev wrote names server_root.
    state_dir: InitVar[str | None] = None
    # wsgidev start reads the daemons' events from the error log; elsewhere a person reads it,
    # and each event is one plain line there (wsgidev.shared.events).
    events_read: bool = False
    django: bool = field(init=False, repr=False, default=False)  # from kind and environ

    def __post_init__(self, state_dir: str | None) -> None:
        if state_dir is not None:
            object.__setattr__(self, "server_root", state_dir)
        is_django = self.kind == "django" or any(
            name == "DJANGO_SETTINGS_MODULE"
            for name in (*(n for n, _ in self.environ), *self.environ_names)
        )
        object.__setattr__(self, "django", is_django)
