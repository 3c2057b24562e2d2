"""Importing the app in a daemon process: the import itself, what answers when it fails or
is stuck, and the wrappers around it (wsgidev/daemon/roles.py decides when it happens)."""

from __future__ import annotations

import contextlib
import html
import importlib
import importlib.machinery
import importlib.util
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from wsgidev.daemon import answers, modwsgi
from wsgidev.daemon.importguard import Failure, ImportGuard
from wsgidev.daemon.livereload import announce_static_folders
from wsgidev.daemon.monitor.bytecode import FreshSourceFileLoader
from wsgidev.shared import events, protocol
from wsgidev.shared.protocol import MAX_EVENT_FILES
from wsgidev.shared.spec import EntrySpec, WSGIApp

SCRIPT_MODULE_NAME = "_wsgidev_target"
_PACKAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "")


# A process started while a deploy was replacing the code (a crash's replacement, a graceful
# restart of Apache, a deploy right after another) imports what is there at that moment. Before
# it serves, it waits for the code it imported to be quiet (requests wait in the daemon group's
# queue meanwhile), at most half of mod_wsgi's queue-timeout (MonitorSpec.serve_wait_s).
# Set when this process imported a tree that changed since: mod_wsgi asks reload_required()
# before each request, and True makes it hand the request back to Apache (which sends it again,
# to a process with the whole new code) and restart this one.
_imported_stale = False


def _settle_before_serving(monitor: Any, limit_s: float, exc: BaseException | None = None) -> bool:
    """Whether the code this process imported is current, once it has been quiet; exc: the
    import's failure (a module the deploy had not copied yet is there now: not current)."""
    global _imported_stale
    try:
        changed, waited_s, quiet = monitor.settle_imported(limit_s)
    except Exception as error:  # serving matters more than this check
        events.emit(protocol.Refused(reason=f"settling before serving failed: {one_line(error)}"))
        return True
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if quiet and missing and not changed:
        importlib.invalidate_caches()  # the finders' listings are from before the copy
        with contextlib.suppress(Exception):
            if importlib.util.find_spec(missing) is not None:
                changed = [missing]
    if changed or waited_s >= 0.1:
        events.emit(
            protocol.Settled(
                waited_s=round(waited_s, 2),
                files=tuple(changed[:MAX_EVENT_FILES]),
                count=len(changed),
                quiet=quiet,
            )
        )
    # Only once the code is quiet: a file rewritten all the time would otherwise restart every
    # new process (the monitor judges it as it always does).
    if changed and quiet:
        _imported_stale = True
        return False
    return True


def _arriving_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """What a stale process answers where mod_wsgi does not ask reload_required() (an entry
    script of an older wsgidev, WSGIScriptReloading Off): never the half-replaced code."""
    body = b"New code is arriving; this process restarts to load it. Retry in a moment.\n"
    start_response(
        "503 Service Unavailable",
        [("Content-Type", "text/plain"), ("Retry-After", "1"), ("Content-Length", str(len(body)))],
    )
    return [body]


def imported_stale() -> bool:
    """Whether this process imported code that changed before it served (see above)."""
    return _imported_stale


def import_app(
    spec: EntrySpec,
    monitor: Any,
    guard: ImportGuard | None = None,
    on_slow: Callable[[Failure], None] | None = None,
    *,
    settle: float = 0.0,
) -> WSGIApp:
    """Import and wrap the app; on failure, an app that shows the traceback (and watch its files).
    With a guard, a process that died importing the same code before is not followed: its
    death is shown instead (wsgidev.daemon.importguard). settle: wait up to this long for the
    code to be quiet before serving (_settle_before_serving); 0: do not."""
    if guard is None:
        return _import_app(spec, monitor, settle)
    failure = guard.failure()
    if failure is not None:
        return died_app(spec, monitor, failure)
    guard.begin(on_slow)
    try:
        return _import_app(spec, monitor)
    finally:
        guard.end()


def _import_app(spec: EntrySpec, monitor: Any, settle: float = 0.0) -> WSGIApp:
    started = time.perf_counter()
    started_at = time.time()  # code saved before this is what the process serves
    if monitor is not None:
        monitor.import_starting()  # the script's baseline: before it runs, not at a later arm
    try:
        # Wrapping can fail too (StaticFilesHandler checks STATIC_URL): show it like an import error.
        application = wrap(import_target(spec), spec)
        if spec.kind == "django":
            _load_django_urls()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        failed = failed_app(spec, monitor, exc)
        # A file half written in place, or a module not copied yet, fails the import too.
        if settle and monitor is not None and not _settle_before_serving(monitor, settle, exc):
            return _arriving_app
        return failed
    if spec.live_reload and spec.django and spec.django_static == "finders":
        announce_static_folders()
    import_s = round(time.perf_counter() - started, 4)
    if monitor is not None:
        monitor.app_loaded()  # catch up on the app's modules; join Django's autoreload signals
        if settle and not _settle_before_serving(monitor, settle):
            return _arriving_app  # its requests are sent again: it restarts, never serving
    events.emit(
        protocol.Ready(import_s=import_s, started_at=started_at, group=modwsgi.process_group())
    )
    return with_exit_page(application, spec.label, monitor)


def failed_app(spec: EntrySpec, monitor: Any, exc: BaseException) -> WSGIApp:
    """Say the import failed (terminal, error page) and watch the files the traceback names."""
    text = app_traceback(exc)
    error = one_line(exc)
    hint = missing_module_hint(spec, exc)
    if hint:
        error += f" ({hint})"
        text = f"{text.rstrip()}\n\n{hint}\n"
    events.emit(protocol.ImportFailed(error=error, traceback=text))
    if monitor is not None:
        monitor.watch_exception(exc)
        monitor.import_done()  # what the error page opens is not the app's
    return error_application(spec.label, text)


def died_app(spec: EntrySpec, monitor: Any, failure: Failure) -> WSGIApp:
    """Say how an earlier process died importing the app (terminal, error page), and watch the
    files it had imported, so that a saved fix imports it again."""
    text = failure.text()
    events.emit(protocol.ImportFailed(error=failure.summary, traceback=text))
    if monitor is not None:
        monitor.watch_files(failure.files, failure.since_ns)
    return error_application(spec.label, text)


# A request waiting for the app's import looks this often whether the import is reported stuck.
WAIT_STEP_S = 0.1


class LazyApplication:
    """A WSGI app imported once, in a thread of its own, started by start() or the first use.

    Requests wait for the import; once the import guard reports it stuck (slow()), they get a
    page saying where, while the import goes on."""

    def __init__(
        self,
        load: Callable[[], WSGIApp],
        before: Callable[[], None],
        lock: threading.RLock | None = None,
    ) -> None:
        self._import = load
        self._before = before
        self._lock = lock or threading.RLock()
        self._application: WSGIApp | None = None
        self._done = threading.Event()
        self._started = threading.Lock()
        self._thread: threading.Thread | None = None
        self._slow_page: WSGIApp | None = None

    def start(self) -> None:
        """Begin the import, unless it has begun."""
        with self._started:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="wsgidev-import", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        try:
            with self._lock:
                if self._application is None:
                    self._before()
                    self._application = self._import()
        except BaseException as exc:  # KeyboardInterrupt: import_app lets it through
            self._application = error_application("The app", app_traceback(exc))
        finally:
            self._done.set()

    def load(self) -> WSGIApp:
        """The app, imported now if it was not yet (waits for the import, however long)."""
        if self._application is not None:
            return self._application  # every request after the first: no lock, no wait
        self.start()
        self._done.wait()
        assert self._application is not None
        return self._application

    def slow(self, spec: EntrySpec, monitor: Any, failure: Failure) -> None:
        """The import is stuck: say where (terminal), watch its files, and answer requests so."""
        text = failure.text()
        events.emit(protocol.ImportSlow(error=failure.summary, traceback=text))
        if monitor is not None:
            monitor.watch_files(failure.files, failure.since_ns)
        self._slow_page = error_application(
            spec.label, text, status="503 Service Unavailable", what="is still importing"
        )

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        application = self._application
        while application is None:
            self.start()
            if self._done.wait(WAIT_STEP_S):
                application = self._application
            elif self._slow_page is not None:
                application = self._slow_page
        return application(environ, start_response)


def _load_django_urls() -> None:
    """Import the URLconf now, as runserver's checks do, rather than in the first request: an
    error there is the app's import error. (Left to the first request, Django's technical 500
    page resolves the URL again to name the view, fails the same way, and the exception escapes
    Django: Apache's bare 500 page.)"""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - a cached property that imports the URLconf


def wrap(application: WSGIApp, spec: EntrySpec) -> WSGIApp:
    """The conveniences around the app the spec asks for: Werkzeug's debugger, Django's static
    files, its queries counted, random delay; and the debug toolbar's store shared by the
    processes (wsgidev.daemon.toolbar)."""
    if spec.server_root and spec.django and _django_ready():
        from wsgidev.daemon import toolbar

        try:
            toolbar.install(spec.server_root)
        except Exception as exc:  # the toolbar keeps its own store: one process's panels
            events.emit(
                protocol.Refused(
                    part="toolbar", reason=f"django-debug-toolbar keeps its own store ({exc!r})"
                )
            )
    if spec.werkzeug:
        from wsgidev.daemon import werkzeugdebug

        application = werkzeugdebug.wrap(application, spec)
    if spec.django_static == "finders" and "django.conf" in sys.modules:
        from wsgidev.daemon.static import with_static_finders

        application = with_static_finders(application)
    if spec.count_queries and "django.db" in sys.modules:
        from wsgidev.daemon.queries import with_query_count

        application = with_query_count(application, spec.print_sql)
    if spec.random_delay_ms:
        application = with_random_delay(application, spec.random_delay_ms)
    return application


def _django_ready() -> bool:
    if "django.apps" not in sys.modules:
        return False
    from django.apps import apps

    return bool(apps.ready)


def with_random_delay(application: WSGIApp, max_ms: int) -> WSGIApp:
    """Sleep a random 0..max_ms before each request, so requests that race in production race
    here too (django-concurrent-server's CONCURRENT_RANDOM_DELAY)."""

    def delayed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(random.uniform(0, max_ms) / 1000)
        return application(environ, start_response)

    return delayed


def import_target(spec: EntrySpec) -> WSGIApp:
    """Import the WSGI callable the spec names: a script file, module:callable, or Django."""
    if spec.kind == "script":
        assert spec.script_path is not None
        module = _exec_script(spec.script_path)
        return _callable(module, spec.callable, spec.script_path)
    if spec.kind == "module":
        assert spec.module is not None
        module = importlib.import_module(spec.module)
        return _callable(module, spec.callable, spec.module)
    from django.core.servers.basehttp import get_internal_wsgi_application

    return get_internal_wsgi_application()  # type: ignore[no-any-return]


def _exec_script(path: str) -> ModuleType:
    """Run a WSGI script file as a module that stays in sys.modules (so it is watched)."""
    # An explicit loader: a .wsgi suffix is not one importlib recognises by itself. The fresh
    # one, as for every other module: a process that starts after a same-size save in the same
    # second as the cache was written must not run the old code from __pycache__.
    loader = FreshSourceFileLoader(SCRIPT_MODULE_NAME, path)
    spec = importlib.util.spec_from_file_location(SCRIPT_MODULE_NAME, path, loader=loader)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[SCRIPT_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[SCRIPT_MODULE_NAME]
        raise
    return module


def _callable(module: ModuleType, name: str, where: str) -> WSGIApp:
    app = getattr(module, name, None)
    if not callable(app):
        raise AttributeError(f"{where} has no callable named {name!r}")
    return app  # type: ignore[no-any-return]


def app_traceback(exc: BaseException) -> str:
    """The traceback from the app's first frame on: wsgidev's and importlib's frames are noise."""
    tb = exc.__traceback__
    while tb is not None and _is_plumbing(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _is_plumbing(filename: str) -> bool:
    return (
        filename.startswith(_PACKAGE_DIR)
        or filename == importlib.__file__
        or filename.startswith(("<frozen importlib", "<frozen runpy"))
    )


def missing_module_hint(spec: EntrySpec, exc: BaseException) -> str:
    """What to pass when a WSGI file imports a module that sits beside it, in a folder that is
    not on sys.path (`wsgidev start sandbox/wsgi.py` run from the repository's root); ''."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or not spec.script_path:
        return ""
    folder = os.path.dirname(os.path.abspath(spec.script_path))
    if folder in (os.path.abspath(p) for p in sys.path if p):
        return ""
    top = exc.name.partition(".")[0]
    for found in (f"{top}.py", os.path.join(top, "__init__.py")):
        if os.path.exists(os.path.join(folder, found)):
            where = (
                os.path.relpath(folder) if not os.path.relpath(folder).startswith("..") else folder
            )
            return (
                f"{found} is beside {os.path.basename(spec.script_path)} in {where}, which is "
                f"not on sys.path: pass --working-dir {where} (or --python-path {where})"
            )
    return ""


def one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".rstrip(": ").splitlines()
    return text[0] if text else type(exc).__name__


def error_application(
    label: str,
    text: str,
    *,
    status: str = "500 Internal Server Error",
    what: str = "failed to import",
) -> WSGIApp:
    """A WSGI app that answers every request with a page showing the import traceback."""
    body = (
        f"<!doctype html><title>wsgidev: app {html.escape(what)}</title>"
        f"<h1>{html.escape(label)} {html.escape(what)}</h1>"
        "<p>Fix the code and save: the server reloads by itself.</p>"
        f"<pre>{html.escape(text)}</pre>"
    ).encode()

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start_response(
            status,
            [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))],
            sys.exc_info() if sys.exc_info()[0] is not None else None,
        )
        return [body]

    return application


def with_exit_page(application: WSGIApp, label: str, monitor: Any) -> WSGIApp:
    """SystemExit from a request (sys.exit() in a module a view imports): a 500 page with its
    traceback, and its files watched. Django's handler catches Exception only, so it would
    reach mod_wsgi, which answers with Apache's bare 500 page. Notes when each answer left."""

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            return application(environ, start_response)
        except SystemExit as exc:
            text = app_traceback(exc)
            events.emit(protocol.RequestExit(error=one_line(exc), traceback=text))
            if monitor is not None:
                monitor.watch_exception(exc)
            page = error_application(label, text, what="raised SystemExit in a request")
            return page(environ, start_response)
        finally:
            answers.note()  # the last one a retiring process gave is its Exit's

    return guarded
