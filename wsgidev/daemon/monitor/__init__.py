"""The reload monitor that runs inside each mod_wsgi daemon process.

It watches the file of every imported module (judged against its state when it was imported),
the non-Python files the app opened while importing (settings, .env), files a failed import
points at, the `watch` option's files and globs, and what Django's autoreload receivers ask
for; never what the `exclude` option's patterns match. On a change it waits for the burst to settle, then either lets
Django handle it (templates, translations) or calls on_change once: by default the mod_wsgi
daemon-mode way, SIGINT to itself, after which mod_wsgi shuts the process down and Apache starts
a fresh one; under `wsgidev start`, a hand-over to a warmed standby group. What on_change does
is chosen in wsgidev/daemon/restart.py; the hand-over is wsgidev/daemon/handover.py.

Hand-written WSGI scripts use it as ``import wsgidev.monitor; wsgidev.monitor.start()``
(wsgidev/monitor.py is that public name).

    base.py            Monitor: baselines, settling, the restart decision, the thread
    inotify.py         InotifyMonitor: one inotify descriptor, read by the monitor thread (Linux)
    notify.py          NotifyMonitor: watchdog's native observer elsewhere (macOS FSEvents)
    bytecode.py        no changed source runs from a bytecode cache of an older content
    polling.py         PollingMonitor: stat every file each interval
    watched.py         WatchedFiles: every file's baseline, globs, directories to watch
    imports.py         the import recorder, module files, traceback files
    state.py           FileState and how a change is told
    globs.py           watched globs
    exclude.py         the exclude option's patterns
    opened.py          non-Python files opened while the app imports (an audit hook)
    listing.py         what is watched, summed up for --log-level info
    django_signals.py  Django's autoreload_started / file_changed
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from wsgidev.daemon import modwsgi
from wsgidev.daemon.monitor.base import Monitor, OnChange, log
from wsgidev.daemon.monitor.polling import PollingMonitor
from wsgidev.shared import events, protocol
from wsgidev.shared.spec import STAGING_SETTLE_S, RestartPlan

__all__ = [
    "BACKENDS",
    "Monitor",
    "PollingMonitor",
    "create",
    "resume",
    "start",
]

BACKENDS = ("auto", "inotify", "poll")


def start(
    watch: Iterable[str] = (),
    backend: str = "auto",
    poll_interval_s: float = 1.0,
    *,
    settle_s: float = STAGING_SETTLE_S,
    safety_interval_s: float = 60.0,
    restart: str = "process",
    state_dir: str | None = None,
    plan: RestartPlan | None = None,
    on_change: OnChange | None = None,
    deferred: bool = False,
    exclude: Iterable[str] = (),
    project_dir: str | None = None,
    watch_opened: bool = False,
    script: str | None = None,
) -> Monitor | None:
    """Start watching from a daemon thread; None (after one log line) where restarting is impossible.

    restart: "process" (the default) or "server" (wsgidev/daemon/restart.py); on_change replaces it.
    state_dir: the server root of a server wsgidev owns. plan: both, as wsgidev start's entry
    script gives them (RestartPlan).

    settle_s: a reload waits until the code has not changed for this long (a deploy's pace by
    default: a git pull or rsync of hundreds of files over seconds ends in one restart).

    deferred: only record imports for now (a standby process, see wsgidev/daemon/handover.py);
    resume() starts it.

    exclude: glob patterns of files that never reload (exclude.py); watch_opened: also watch the
    non-Python files opened for reading until monitor.import_done() or app_loaded() (opened.py);
    script: a WSGI script file run without an import.
    """
    explicit_on_change = on_change is not None
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown monitor backend {backend!r}; expected one of {', '.join(BACKENDS)}"
        )
    from wsgidev.daemon import restart as restarts  # it imports this package's base

    if plan is None:  # ValueError for a bad name, or server mode without a server root
        plan = RestartPlan(mode=restart, owned=state_dir is not None, server_root=state_dir)
    if on_change is None:
        on_change = restarts.on_change_for(plan)
    reason = _refusal(explicit_on_change=explicit_on_change)
    if reason is not None:
        events.emit(protocol.Refused(reason=reason))
        return None
    options: dict[str, Any] = {
        "watch": list(watch),
        "poll_interval_s": poll_interval_s,
        "settle_s": settle_s,
        "safety_interval_s": safety_interval_s,
        "on_change": on_change,
        "exclude": list(exclude),
        "project_dir": project_dir,
        "watch_opened": watch_opened,
        "script": script,
        "server_root": plan.server_root,
    }
    if deferred:
        monitor = create(backend, **options)
        monitor.record_imports()
        monitor.backend_name, monitor.resume_options = backend, options
    else:
        monitor = _started(create(backend, **options), backend, options)
    if plan.owned:
        # Only where wsgidev owns the server: a quick exit makes the next process come sooner.
        restarts.exit_without_teardown()  # after monitor.start(), so it runs before the monitor's stop
    return monitor


def resume(monitor: Monitor) -> Monitor:
    """Start watching with a monitor start(deferred=True) made; the one that watches is returned."""
    return _started(monitor, monitor.backend_name, monitor.resume_options)


def _started(monitor: Monitor, backend: str, options: dict[str, Any]) -> Monitor:
    try:
        monitor.start()
        return monitor
    except Exception as exc:
        if backend == "poll":
            raise
        monitor.stop()  # whatever it had started: the recorder, the observer
        # Notifications are an optimisation; polling sees every change too.
        interval = options["poll_interval_s"]
        log(f"{backend} backend failed to start ({exc}); polling every {interval:g} s")
        fallback = PollingMonitor(**options)
        fallback.take_import_notes(monitor)  # a deferred one's import began before this
        fallback.start()
        return fallback


def create(backend: str = "auto", **options: Any) -> Monitor:
    """A Monitor for the backend name ("auto", "inotify", "poll"), neither armed nor started."""
    if backend == "poll":
        return PollingMonitor(**options)
    if backend in ("auto", "inotify"):
        if sys.platform.startswith("linux"):
            from wsgidev.daemon.monitor.inotify import InotifyMonitor

            return InotifyMonitor(**options)
        from wsgidev.daemon.monitor.notify import NotifyMonitor

        return NotifyMonitor(**options)  # watchdog's native observer: FSEvents, kqueue
    raise ValueError(f"unknown monitor backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def _refusal(*, explicit_on_change: bool) -> str | None:
    """Why this process must not be watched, or None."""
    if modwsgi.embedded():
        return "mod_wsgi embedded mode: SIGINT would stop an Apache child, not reload the app; use daemon mode"
    if modwsgi.process_group() is None and not explicit_on_change:
        return (
            "not in a mod_wsgi daemon process, where SIGINT would stop the server; pass on_change"
        )
    return None
