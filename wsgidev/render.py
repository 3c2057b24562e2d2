"""A Jinja2 environment over the templates; one function per output (standalone, apache, express)."""

from __future__ import annotations

import dataclasses
import math
import os
import pprint
import shlex
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2

from wsgidev import __version__, apachequote
from wsgidev.errors import WsgidevError
from wsgidev.options import Options
from wsgidev.runplan import RunPlan
from wsgidev.shared.serverroot import APP_ENV_VAR, DEBUG_SOCKET, LIVE_SOCKET, route_name
from wsgidev.shared.spec import (
    DEV_SETTLE_S,
    MAX_SERVE_WAIT_S,
    STAGING_SETTLE_S,
    DebuggerSpec,
    EntrySpec,
    MonitorSpec,
    RestartPlan,
)
from wsgidev.target import Target

ENTRY_SCRIPT_NAME = "entry.wsgi"
# Under `wsgidev start` a request may sit at a (Pdb) prompt for as long as the developer reads:
# Apache waits a day for a daemon's answer instead of answering 504 after Timeout (60 s).
DAEMON_SOCKET_TIMEOUT_S = 86400
# Browser tabs with --live-reload's event stream open, on top of the request workers.
LIVE_TABS = 100
PROCESS_GROUP = "wsgidev"
# The few modules a WSGI dev server needs; each is loaded only where the Apache build lacks it.
MODULES = (
    # Compiled in on Debian; a module of its own in pip's mod_wsgi-httpd, RHEL and Homebrew
    # (without it Apache will not start: AH00136, "MUST relinquish startup privileges").
    ("unixd_module", "mod_unixd.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("mime_module", "mod_mime.so"),
    ("alias_module", "mod_alias.so"),
    ("dir_module", "mod_dir.so"),
    ("env_module", "mod_env.so"),
    ("headers_module", "mod_headers.so"),
    ("log_config_module", "mod_log_config.so"),
    ("reqtimeout_module", "mod_reqtimeout.so"),
    ("setenvif_module", "mod_setenvif.so"),
)


def templates_dir() -> Path:
    """Inside the wheel: wsgidev/templates; in a checkout or editable install: ../templates."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "templates", here.parent / "templates"):
        if (candidate / "standalone.conf.j2").is_file():
            return candidate
    raise FileNotFoundError(f"wsgidev templates not found next to {here}")


@cache
def environment() -> jinja2.Environment:
    """The one Jinja2 environment: strict about undefined names, no HTML escaping (configs)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # Every value any template writes, quoted or not (a comment naming a folder too), is
        # refused if it holds a line end: the next line would be read as a directive.
        finalize=_one_line,
    )
    env.filters["q"] = apachequote.arg
    env.filters["expr"] = apachequote.expr_string
    env.filters["literal"] = apachequote.literal_pattern
    env.filters["sh"] = shlex.quote
    env.filters["rendered"] = Rendered
    env.globals["define_dollar"] = apachequote.DEFINE_DOLLAR
    return env


class Rendered(str):
    """Text written as it is, its values checked already: a macro's output (the `rendered`
    filter), the entry script's spec (Python literals, repr-escaped)."""


def _one_line(value: object) -> object:
    if isinstance(value, str) and not isinstance(value, Rendered):
        apachequote.check(value)
    return value


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Values computed once from the options, so templates stay flat."""

    entry_script_path: str
    entry_dir: str
    entry_name: str
    python_path: tuple[str, ...]
    process_group: str
    # The standby groups of the hand-over (wsgidev/daemon/handover.py): (name, display name).
    standby_groups: tuple[tuple[str, str], ...]
    display_name: str
    listen: str
    url: str
    server_name: str
    static: tuple[tuple[str, str], ...]
    proxies: tuple[tuple[str, str], ...]  # (path, URL): other local servers under the site
    daemon_user: str | None
    daemon_group: str | None


def layout(plan: RunPlan, entry_script_path: Path) -> Layout:
    """Decide the names, paths and addresses every output shares."""
    options, target = plan.options, plan.target
    host = options.bare_host
    project = _project_name(target)
    python_path = tuple(dict.fromkeys((target.project_dir, *options.python_path)))
    for folder in python_path:
        if ":" in folder:  # mod_wsgi splits python-path= (and WSGIPythonPath) at each ':'
            raise WsgidevError(
                f"the folder {folder!r} holds ':', which separates mod_wsgi's python-path entries",
                "rename it, or move the project to a folder without ':'",
            )
    groups = process_groups(options, target)
    return Layout(
        entry_script_path=str(entry_script_path),
        entry_dir=str(entry_script_path.parent),
        entry_name=entry_script_path.name,
        python_path=python_path,
        process_group=groups[0],
        standby_groups=tuple(
            (group, f"(wsgidev.{_group_letter(index)}:{project}:{options.port})")
            for index, group in enumerate(groups)
            if index
        ),
        display_name=f"(wsgidev:{project}:{options.port})",
        listen=f"{options.bracketed_host}:{options.port}",
        url=plan.url,
        # ServerName takes no bare IPv6 literal; the name only matters for self-referring URLs.
        server_name="localhost" if ":" in host else host,
        static=tuple((url.rstrip("/") or "/", folder) for url, folder in plan.static),
        proxies=tuple((path.rstrip("/") or "/", url) for path, url in options.proxy),
        daemon_user=options.user,
        daemon_group=options.group,
    )


def _project_name(target: Target) -> str:
    """The project folder's name as Apache and mod_wsgi take a word: ASCII (mod_wsgi reads a
    process group's name back as Latin-1, so `café` was not found again by name)."""
    return apachequote.ascii_name(Path(target.project_dir).name)


def process_groups(options: Options, target: Target) -> tuple[str, ...]:
    """The daemon group that serves first, then the standby groups of the hand-over."""
    group = f"{PROCESS_GROUP}-{_project_name(target)}"
    return (group, *(f"{group}-{_group_letter(index)}" for index in range(1, options.standbys + 1)))


def _group_letter(index: int) -> str:
    return chr(ord("a") + index)


def restart_mode(options: Options, server_root: str | None) -> str:
    """How the daemons bring new code in: the one place it is decided. Under wsgidev start
    (server_root is its server root) as --restart-mode says, but for --debug (one process, no
    hand-over); a system Apache's daemon restarts itself."""
    if server_root is None:
        return "process"
    if options.restart_mode == "standby" and (options.debug or not options.reload):
        return "process"
    return options.restart_mode


def restart_plan(options: Options, target: Target, server_root: str | None) -> RestartPlan:
    """The restart plan written into the daemons' spec (see restart_mode)."""
    mode = restart_mode(options, server_root)
    return RestartPlan(
        mode=mode,
        owned=server_root is not None,
        server_root=server_root,
        groups=process_groups(options, target) if mode == "standby" else (),
    )


def uses_standby(options: Options, server_root: str | None) -> bool:
    """Whether new code comes in by a hand-over between two daemon groups (wsgidev start only)."""
    return restart_mode(options, server_root) == "standby"


def settle_s(options: Options, server_root: str | None) -> float:
    """How long the code must stay unchanged before a reload: --reload-settle, else an editor's
    pace under wsgidev start (server_root is its server root) and a deploy's elsewhere."""
    if options.reload_settle_s is not None:
        return options.reload_settle_s
    return DEV_SETTLE_S if server_root is not None else STAGING_SETTLE_S


def entry_spec(
    plan: RunPlan,
    server_root: str | None,
    env_in_process: bool = False,
    events_read: bool = False,
) -> EntrySpec:
    """What the daemon needs to know, written into the entry script as a literal.
    env_in_process: the --env values reach the daemons in Apache's environment (APP_ENV_VAR),
    not through this file (wsgidev start). events_read: wsgidev start reads the daemons' events
    from the error log (elsewhere a person does: wsgidev.shared.events)."""
    options, target = plan.options, plan.target
    given = dict(plan.env)
    environ = {} if env_in_process else dict(given)
    if target.django_settings and "DJANGO_SETTINGS_MODULE" not in given:
        environ["DJANGO_SETTINGS_MODULE"] = target.django_settings
    monitor = None
    if options.reload:
        monitor = MonitorSpec(
            watch=tuple(str(Path(options.working_dir, w)) for w in options.watch),
            backend=options.reload_backend,
            poll_interval_s=options.poll_interval_s,
            settle_s=settle_s(options, server_root),
            serve_wait_s=min(MAX_SERVE_WAIT_S, options.queue_timeout_s / 2 or MAX_SERVE_WAIT_S),
            plan=restart_plan(options, target, server_root),
            exclude=options.exclude,
            project_dir=str(options.working_dir),
        )
    return EntrySpec(
        debugger=debugger_spec(options, server_root),
        kind=target.kind,
        label=target.label,
        script_path=target.script_path,
        module=target.module,
        callable=target.callable_name,
        environ=tuple(environ.items()),
        environ_var=APP_ENV_VAR if env_in_process else None,
        environ_names=tuple(given) if env_in_process else (),
        monitor=monitor,
        django_static=options.django_static,
        live_reload=options.live_reload and server_root is not None and not options.debug,
        # Only wsgidev start's access log has the field, and its terminal prints the queries.
        count_queries=server_root is not None,
        print_sql=options.print_sql and events_read,
        werkzeug=options.werkzeug,
        trusted_hosts=console_hosts(plan),
        random_delay_ms=options.random_delay_ms,
        server_root=None if options.debug else server_root,
        events_read=events_read,
    )


def console_hosts(plan: RunPlan) -> tuple[str, ...]:
    """The Host headers Werkzeug's console answers: what wsgidev's own host check lets through
    (loopback names, --host, --allow-host and ALLOWED_HOSTS; "*" any), as Werkzeug writes them."""
    if not plan.options.werkzeug:
        return ()
    names = ["localhost", ".localhost", "127.0.0.1", "[::1]", plan.options.bracketed_host]
    return tuple(dict.fromkeys([*names, *plan.allow_host]))


def debugger_spec(options: Options, server_root: str | None) -> DebuggerSpec:
    """Where breakpoints go: wsgidev start's terminal, Apache's own (--debug), or nowhere."""
    if options.debug:
        return DebuggerSpec(local=True, post_mortem=options.pdb)
    if server_root is None:  # a system Apache: mod_wsgi's shutdown-timeout, no terminal
        return DebuggerSpec(post_mortem=options.pdb)
    return DebuggerSpec(
        socket_path=str(Path(server_root) / DEBUG_SOCKET),
        post_mortem=options.pdb,
        shutdown_timeout_s=options.shutdown_timeout_s,
    )


def daemon_timeouts(options: Options, owned: bool) -> dict[str, int | None]:
    """WSGIDaemonProcess timeouts: where wsgidev owns the server, its daemons apply
    --shutdown-timeout themselves (never to a process a debugger session holds) and Apache
    waits for a paused request; a system Apache keeps mod_wsgi's own."""
    if owned:
        return {"shutdown": 0, "socket": DAEMON_SOCKET_TIMEOUT_S}
    return {"shutdown": options.shutdown_timeout_s, "socket": None}


def cut_request_page(options: Options) -> str:
    """The 502 page a client gets when its daemon process ends before answering: mod_wsgi's
    Apache side answers 502 then, and Apache's own page speaks of a proxy server."""
    return (
        "wsgidev: the daemon process serving this request ended before it answered. A reload "
        "ends a request still running --shutdown-timeout "
        f"({options.shutdown_timeout_s} s) after its process was told to stop: for longer "
        "requests start wsgidev with a larger --shutdown-timeout. A daemon that was killed or "
        "crashed ends its requests too. The terminal wsgidev runs in says which."
    )


def render_entry(
    plan: RunPlan,
    server_root: str | None = None,
    env_in_process: bool = False,
    events_read: bool = False,
) -> str:
    """The WSGI entry script mod_wsgi loads in every daemon process."""
    entry = entry_spec(plan, server_root, env_in_process, events_read)
    spec = Rendered(pprint.pformat(entry, indent=4, width=96))
    return (
        environment()
        .get_template("entry.wsgi.j2")
        .render(version=__version__, target=plan.target, spec=spec)
    )


def mpm_sizing(options: Options) -> dict[str, int]:
    """Apache worker threads: room for every daemon thread busy plus as many requests queued;
    one thread in --debug, where the app runs inside Apache and serves one request at a time."""
    if options.debug:
        return {"threads_per_child": 1, "server_limit": 1, "max_request_workers": 1}
    workers = max(50, 2 * options.processes * options.threads)
    if options.live_reload:
        workers += LIVE_TABS  # each open tab's event stream holds an Apache thread (not a daemon's)
    per_child = min(workers, 64)
    children = math.ceil(workers / per_child)
    return {
        "threads_per_child": per_child,
        "server_limit": children,
        "max_request_workers": per_child * children,
    }


def render_standalone(plan: RunPlan, server_root: Path, events_read: bool = False) -> str:
    """The complete httpd.conf `wsgidev start` runs (events_read: it reads the daemons' events
    from the error log), or `config standalone` writes, with everything under server_root."""
    options = plan.options
    return (
        environment()
        .get_template("standalone.conf.j2")
        .render(
            version=__version__,
            options=options,
            target=plan.target,
            apache=plan.apache,
            run_as=plan.run_as,
            server_root=str(server_root),
            conf=layout(plan, server_root / ENTRY_SCRIPT_NAME),
            standby=uses_standby(options, str(server_root)),
            routes=[str(server_root / route_name(index)) for index in range(options.standbys + 1)],
            mpm=mpm_sizing(options),
            modules=MODULES,
            timeouts=daemon_timeouts(options, owned=True),
            cut_page=cut_request_page(options),
            live_paths=plan.stream_paths,
            live_socket=str(server_root / LIVE_SOCKET),
            tls=plan.tls,
            host_regex=host_regex(plan),
            host_page=HOST_PAGE,
            events_read=events_read,
        )
    )


# The 400 page of the Host check (an ErrorDocument: no "%{" or "$", which Apache would expand).
HOST_PAGE = (
    "<!DOCTYPE html><title>400 Host not allowed</title><h1>400 Host not allowed</h1>"
    "<p>wsgidev answers requests for localhost, IP addresses, --host and the names it was "
    "given, so that a web page cannot read this server through a name of its own (DNS "
    "rebinding). To serve this name, restart with <code>wsgidev start --allow-host NAME</code> "
    "(Django: or add it to ALLOWED_HOSTS).</p>"
)


def host_regex(plan: RunPlan) -> str | None:
    """The Host names the server answers, as an ap_expr regex; None answers any (--allow-host '*')."""
    if "*" in plan.allow_host:
        return None
    names = [*plan.allow_host]
    host = plan.options.bare_host
    if host not in ("0.0.0.0", "::") and apachequote.HOST_NAME.fullmatch(host):
        names.append(host)  # a name passed as --host (an address is answered anyway)
    return apachequote.host_regex(names)


def render_apache(plan: RunPlan, entry_script_path: Path) -> str:
    """A snippet a system Apache can Include."""
    options, target = plan.options, plan.target
    conf = layout(plan, entry_script_path)
    # The system Apache listens where it listens: wsgidev's dev port means nothing in ps there.
    conf = dataclasses.replace(conf, display_name=f"(wsgidev:{_project_name(target)})")
    return (
        environment()
        .get_template("apache.conf.j2")
        .render(
            version=__version__,
            options=options,
            target=target,
            apache=plan.apache,
            conf=conf,
            standby=False,
            timeouts=daemon_timeouts(options, owned=False),
            cut_page=None,
        )
    )


def render_express(plan: RunPlan, entry_script_path: Path) -> str:
    """The mod_wsgi-express command line that serves the same app with the same mix; its
    server root sits beside the entry script, so it leaves nothing in /tmp."""
    express = Path(sys.executable).with_name("mod_wsgi-express")
    return (
        environment()
        .get_template("express.j2")
        .render(
            version=__version__,
            options=plan.options,
            target=plan.target,
            run_as=plan.run_as,
            express=str(express) if express.exists() else "mod_wsgi-express",
            server_root=str(entry_script_path.parent / "express"),
            conf=layout(plan, entry_script_path),
            tls=plan.tls,
        )
    )


def write_entry(
    directory: Path,
    plan: RunPlan,
    server_root: str | None,
    env_in_process: bool = False,
    events_read: bool = False,
) -> Path:
    """Write the entry script into directory (created 0700 if missing); return its path."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / ENTRY_SCRIPT_NAME
    tmp = path.with_suffix(".tmp")
    text = render_entry(plan, server_root, env_in_process, events_read)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
