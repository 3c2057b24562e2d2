"""The parts a daemon process plays (wsgidev/daemon/entry.py picks one at start):

- a serving process imports the app at once and watches its files (under `wsgidev start`
  the import runs in a thread of its own while requests wait for it);
- a standby process (a group the hand-over has not sent requests to, see handover.py) warms up,
  records imports, and imports the app when told to take over or when a request reaches it;
- under a system Apache the serving process imports during mod_wsgi's preload, and waits for a
  deploy's code to be quiet before it serves (appimport.settle_before_serving).
"""

from __future__ import annotations

import threading
from typing import Any

from wsgidev.daemon import modwsgi, restart
from wsgidev.daemon.appimport import (
    LazyApplication,
    failed_app,
    import_app,
    one_line,
)
from wsgidev.daemon.handover import Handover
from wsgidev.daemon.importguard import Failure, ImportGuard
from wsgidev.shared import events, protocol
from wsgidev.shared.spec import EntrySpec, WSGIApp


def start_handover(spec: EntrySpec) -> Handover | None:
    """This process's part in hand-overs between daemon groups, where the plan has them."""
    plan = spec.monitor.plan if spec.monitor is not None else None
    if plan is None or plan.mode != "standby" or plan.server_root is None:
        return None
    try:
        return Handover(plan.server_root, plan.groups, modwsgi.process_group() or "")
    except Exception as exc:
        events.emit(protocol.Refused(reason=f"standby hand-over unavailable: {one_line(exc)}"))
        return None


def start_monitor(spec: EntrySpec, handover: Handover | None, *, deferred: bool = False) -> Any:
    """The reload monitor the spec asks for (deferred: a standby's, recording imports only);
    None, after one log line, where it cannot start: serving matters more than reloading."""
    options = spec.monitor
    if options is None:
        return None
    try:
        from wsgidev.daemon import monitor

        return monitor.start(
            options.watch,
            options.backend,
            options.poll_interval_s,
            settle_s=options.settle_s,
            plan=options.plan,
            on_change=restart.on_change_for(options.plan, handover),
            deferred=deferred,
            exclude=options.exclude,
            project_dir=options.project_dir,
            # Settings files the app reads while importing reload it like its modules do.
            watch_opened=options.watch_opened,
            # The script is exec'd without an import finder: naming it has its state taken
            # before it runs, as the import recorder does for modules.
            script=spec.script_path if spec.kind == "script" else None,
        )
    except Exception as exc:
        events.emit(protocol.Refused(reason=f"reload monitor failed to start: {one_line(exc)}"))
        return None


class ServingProcess:
    """A process of the group Apache sends requests to: it imports the app now."""

    def __init__(self, spec: EntrySpec, handover: Handover | None, guard: ImportGuard | None):
        self.spec, self.handover, self.guard = spec, handover, guard
        self.monitor = start_monitor(spec, handover)  # first: a broken app is watched too
        if guard is not None:
            guard.monitor = self.monitor
        self.app = LazyApplication(self._import, before=self._before)

    def start(self) -> WSGIApp:
        """The app mod_wsgi calls."""
        if self.guard is None and self.handover is None:
            # A system Apache: mod_wsgi's preload, before the request threads start.
            settle = self.spec.monitor.serve_wait_s if self.spec.monitor is not None else 0.0
            return import_app(self.spec, self.monitor, settle=settle)
        if self.handover is not None:
            self.handover.mark_loading()
            # Before the import: a hand-over that retires this process must reach it even
            # while the import hangs.
            stale = self.monitor.stale if self.monitor else list
            self.handover.listen(self.app.load, stale, guard=self.guard)
        # In a thread of its own, so that mod_wsgi's request threads start meanwhile: they wait
        # for it, and get a page saying where it is stuck when it takes too long.
        self.app.start()
        return self.app

    def _before(self) -> None:
        pass  # marked loading already, before the hand-over listens

    def _import(self) -> WSGIApp:
        application = import_app(self.spec, self.monitor, self.guard, on_slow=self._slow)
        if self.handover is not None:
            self.handover.record_modules(tell_standby=True)
        return application

    def _slow(self, failure: Failure) -> None:
        self.app.slow(self.spec, self.monitor, failure)


class StandbyProcess:
    """A process of a standby group: it warms up and records imports, and imports the app when
    told to take over (or when a request queued before a flip reaches it)."""

    def __init__(self, spec: EntrySpec, handover: Handover, guard: ImportGuard | None):
        self.spec, self.handover, self.guard = spec, handover, guard
        # It only records imports: the serving group watches the same files, and this
        # process's are looked at once, when it is told to take over.
        self.monitor = start_monitor(spec, handover, deferred=True)
        self._watch_lock = threading.Lock()  # a stray request's import and a take-over
        if guard is not None:
            guard.monitor = self.monitor
        self.app = LazyApplication(
            self._import, before=handover.mark_loading, lock=handover.import_lock
        )

    def start(self) -> WSGIApp:
        """The app mod_wsgi calls."""
        self.handover.listen(
            self.app.load,
            self.stale,
            django=self.spec.django,
            activate=self.watch,
            warm_failed=self._warm_failed,
            guard=self.guard,
        )
        return self.app

    def stale(self) -> list[str]:
        """The files it imported that changed since."""
        return self.monitor.stale() if self.monitor is not None else []

    def watch(self) -> None:
        """Start watching: this process serves now (once, whichever thread asks first)."""
        with self._watch_lock:
            if self.monitor is not None and not self.monitor.watching:
                from wsgidev.daemon import monitor

                self.monitor = monitor.resume(self.monitor)
                if self.guard is not None:
                    self.guard.monitor = self.monitor

    def _import(self) -> WSGIApp:
        if self.handover.warm_error is not None:
            application = failed_app(self.spec, self.monitor, self.handover.warm_error)
        else:
            application = import_app(self.spec, self.monitor, self.guard, on_slow=self._slow)
        if self.handover.serving() and not self.handover.taking_over:
            self.watch()  # a request after a flip that missed this process (it started late)
        # Told to take over: its take-over thread starts watching once this returns. Watching
        # a large site (thousands of folders) takes a few hundred ms; the requests waiting for
        # the new code need none of it (a save meanwhile differs from its import's baseline).
        return application

    def _slow(self, failure: Failure) -> None:
        self.watch()  # stuck importing: an edit must still be seen
        self.app.slow(self.spec, self.monitor, failure)

    def _warm_failed(self, exc: BaseException) -> None:
        if self.monitor is not None:
            self.monitor.watch_exception(exc)
