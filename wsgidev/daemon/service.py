"""A Python service beside the server, with wsgidev's monitor inside it:

    python -m wsgidev.daemon.service PROGRAM [ARGS...]

PROGRAM is run in this process (runpy), as its own command would: a console script of the venv
(`celery`, `rq`, `dramatiq`), `manage.py`, a `.py` file, or `-m MODULE`. Before it runs, the
monitor starts recording what it imports (and the files it reads while importing, as in the
daemons), with the same bytecode protection; so an edit of a file this process imported restarts
it, and an edit of a file it never imported does not.

On such a change the monitor emits a Change event (on stderr, which wsgidev start reads) and the
process stops as a SIGTERM asks it to: the program's own graceful stop (Celery's warm shutdown:
the tasks it runs finish on the old code, the prefetched ones go back to the broker). It then
exits with SERVICE_EXIT_CHANGED and wsgidev starts it again.

A program that fails (an import error, a crash) says so once and, rather than exit into a restart
loop, waits here for a change of a file it imported or the traceback names: then SERVICE_EXIT_CHANGED.

    python -m wsgidev.daemon.service --standby PROGRAM [ARGS...]

is the same service's warmed standby: it imports the library modules the serving process
recorded once its import was over (the standard library and site-packages: most of a worker's
start, Celery's and Django's code) and, when that process had set Django up (`manage.py`,
Celery's Django fix-up), sets it up with the same settings module as the daemons' standbys do
(preload.py: most of Django's modules cannot be imported before it). It then waits for a line on
stdin. At "go" it runs PROGRAM as above, paying only for the project's code that setup does not
import (the command's own modules, a Celery app's tasks); wsgidev starts it the moment the serving
one's code changes (wsgidev/services.py). Its monitor records the preload like any import: a
standby whose files change before its turn (a library, settings.py, a models.py) exits with
SERVICE_EXIT_CHANGED, and another takes its place.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import runpy
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from wsgidev.daemon import debugger, preload
from wsgidev.daemon.appimport import app_traceback
from wsgidev.daemon.monitor import start as start_monitor
from wsgidev.daemon.poolimports import PoolImports
from wsgidev.shared import events, protocol
from wsgidev.shared.processes import SERVICE_ENV_VAR, SERVICE_EXIT_CHANGED
from wsgidev.shared.protocol import MAX_EVENT_FILES
from wsgidev.shared.spec import DEV_SETTLE_S, DebuggerSpec

# The program's import is taken as over once nothing was imported for this long.
IMPORTS_QUIET_S = 3.0
# A program that fails this soon after its start waits for a fix; later, wsgidev restarts it.
FAILED_AT_START_S = 30.0


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: python -m wsgidev.daemon.service [--standby] PROGRAM [ARGS...]\n")
        return 2
    standby = argv[0] == "--standby"
    if standby:
        argv = argv[1:]
    config = json.loads(os.environ.pop(SERVICE_ENV_VAR, "{}"))
    modules_file = config.get("modules_file")
    # Read before the monitor starts: a file read then is not one of the program's (the next
    # serving process rewrites it).
    preload_names = (preload.recorded_in(Path(modules_file)) if modules_file else None) or []
    django_settings = _recorded_django_settings(modules_file) if standby else None
    events.read_by_command(True)
    if config.get("debug_socket"):
        # breakpoint() and pdb.set_trace() open on wsgidev's terminal, as in the daemons.
        debugger.service_name = config.get("name", "")
        debugger.install(DebuggerSpec(socket_path=config["debug_socket"]))
    changed = threading.Event()
    waiting = threading.Event()  # a standby before its turn
    if standby:
        waiting.set()
        # Until its turn, wsgidev's stop ends it quietly, by SIGTERM or by the SIGINT a Huey
        # consumer's leader sends (not a KeyboardInterrupt's traceback).
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    shutdown_timeout_s = float(config.get("shutdown_timeout_s", 5.0))
    stop_signal = signal.Signals(int(config.get("stop_signal", signal.SIGTERM)))

    def on_change(files: list[str]) -> None:
        if waiting.is_set():  # a standby whose preload changed: a fresh one takes its place
            _refresh(files)
            os._exit(SERVICE_EXIT_CHANGED)
        changed.set()
        # The program's own graceful stop; a second change while it stops adds nothing. One
        # that ignores it (or a thread that keeps the process up) ends after --shutdown-timeout.
        _terminate_main_thread(stop_signal)
        threading.Timer(shutdown_timeout_s, os._exit, (SERVICE_EXIT_CHANGED,)).start()

    monitor = (
        None
        if not config.get("reload", True)
        else start_monitor(
            config.get("watch", ()),
            config.get("backend", "auto"),
            config.get("poll_interval_s", 1.0),
            on_change=on_change,
            settle_s=config.get("settle_s", DEV_SETTLE_S),
            exclude=config.get("exclude", ()),
            project_dir=os.getcwd(),
            watch_opened=True,
        )
    )
    setups = _DjangoSetups(argv)
    if monitor is not None:
        # Before a standby's preload, which may import a command that binds the function.
        _replace_djangos_reloader()
        setups.start = _context()
    if standby:
        if not _wait_for_turn(preload_names, django_settings, waiting, setups):
            return 0
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the program's, as usual
        # Its libraries may have changed since: its own monitor may not have told it yet (the
        # serving one, which saw the same edit, is why it goes now). Stale: a fresh process.
        stale = monitor.stale() if monitor is not None else []
        if stale:
            _refresh(stale)
            return SERVICE_EXIT_CHANGED
        if setups.failed:
            return SERVICE_EXIT_CHANGED  # its Django is half set up: a fresh process
    pool: PoolImports | None = None
    if monitor is not None:
        setups.watch()
        _end_of_imports(monitor, modules_file, setups)
        # A worker's pool processes (Dramatiq's workers, Celery's prefork children, an RQ job's
        # work horse) tell this process what they import: its monitor watches that too.
        pool = PoolImports(monitor)
    started = time.monotonic()
    status = 0
    failure = ""
    try:
        status = _run(argv)
    except SystemExit as exc:  # the program's own exit (sys.exit, argparse's usage)
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except KeyboardInterrupt:  # stopped (SIGINT, a Huey consumer's) before its handler was set
        if monitor is not None:
            monitor.import_done()
        return SERVICE_EXIT_CHANGED if changed.is_set() else 130
    except BaseException as exc:  # noqa: BLE001 - the program's own failure: said once, then wait
        if not changed.is_set():
            sys.stderr.write(app_traceback(exc))
            if monitor is not None:
                monitor.watch_exception(exc)
            failure = f"{type(exc).__name__}: {exc}"
            status = 1
    if pool is not None:
        pool.program_ended()
    if monitor is not None:
        monitor.import_done()
    if changed.is_set():
        return SERVICE_EXIT_CHANGED
    if status != 0 and monitor is not None and time.monotonic() - started < FAILED_AT_START_S:
        # Failed at its start: waits for a fix rather than exiting into a restart loop. (One
        # that ran a while and then failed, its broker gone say, is started again by wsgidev.)
        # Said to wsgidev, which starts it again instead if the process it took over from was
        # still stopping (what that one held, a worker's name, may be why).
        _wait_for_change(changed, failure or f"exited with status {status}")
        return SERVICE_EXIT_CHANGED
    return int(status or 0)


def _terminate_main_thread(stop: signal.Signals) -> None:
    """The program's graceful stop (SIGTERM; SIGINT for Huey's consumer) to this process,
    delivered to its main thread. Sent from the monitor's thread by os.kill, the kernel gave it
    to that thread: Python's handler waited until the main thread was back in Python, and an
    RQ worker waiting on Redis (a BLPOP of minutes) was cut by the shutdown timeout instead,
    never telling its broker it had gone (its name stayed taken)."""
    main = threading.main_thread().ident
    try:
        if main is None:
            raise ProcessLookupError
        signal.pthread_kill(main, stop)
    except (ProcessLookupError, OSError, ValueError):  # the main thread is gone
        os.kill(os.getpid(), stop)


def _refresh(files: list[str]) -> None:
    """Say that this standby's files changed before its turn: it exits, another takes its place."""
    events.emit(protocol.StandbyRefresh(files=tuple(files[:MAX_EVENT_FILES]), count=len(files)))


def _wait_for_turn(
    names: list[str],
    django_settings: str | None,
    waiting: threading.Event,
    setups: _DjangoSetups,
) -> bool:
    """A standby: import what the serving process recorded (and set Django up as it had), then
    wait for "go" on stdin (True); False when wsgidev closed it instead (stopped, or no longer
    needs this standby)."""
    started = time.perf_counter()
    if django_settings:
        # As the program will have it when it reads its settings: the settings module the
        # serving process read (its manage.py's default, a --settings option), its sys.argv,
        # its script's folder. The variable is put back after: the program's own line sets it.
        before = os.environ.get("DJANGO_SETTINGS_MODULE")
        os.environ["DJANGO_SETTINGS_MODULE"] = django_settings
        argv = sys.argv
        sys.argv = setups.program_argv
        if setups.folder and setups.folder not in sys.path:
            sys.path.insert(1, setups.folder)
    warmed = preload.preload(names, django=bool(django_settings))
    if django_settings:
        sys.argv = argv
        if before is None:
            del os.environ["DJANGO_SETTINGS_MODULE"]
        else:
            os.environ["DJANGO_SETTINGS_MODULE"] = before
        if warmed.django_error is not None:
            setups.failed = True
        else:
            setups.settings = django_settings
            environ, path, _, cwd = _context()  # what setup itself set included (TZ)
            setups.preloaded = environ, path, list(setups.program_argv), cwd
    events.emit(
        protocol.Preloaded(
            imported=warmed.imported,
            seconds=time.perf_counter() - started,
            stopped_at=warmed.stopped_at,
            full=warmed.stopped_at is None and warmed.django_error is None,
            django=bool(django_settings) and warmed.django_error is None,
        )
    )
    line = sys.stdin.readline()
    # The program's stdin is /dev/null, as for a service started directly.
    with open(os.devnull, "rb") as null:
        os.dup2(null.fileno(), 0)
    waiting.clear()
    return line.strip() == "go"


def _end_of_imports(monitor: Any, modules_file: str | None, setups: _DjangoSetups) -> None:
    """Watch the files the program reads while it imports (its settings' .env, say), not the
    ones it reads at work (a task's data): a long-running program has no "import done", so it
    is taken as over once nothing has been imported for IMPORTS_QUIET_S. Then the library
    modules it imported are recorded for its standby, and Ready says so."""
    last = [time.monotonic()]
    started = time.monotonic()
    monitor.journal_imports(lambda path: last.__setitem__(0, time.monotonic()))

    def wait() -> None:
        while time.monotonic() - last[0] < IMPORTS_QUIET_S:
            time.sleep(IMPORTS_QUIET_S - (time.monotonic() - last[0]) + 0.05)
        monitor.journal_imports(None)
        monitor.import_done()
        if modules_file:
            with contextlib.suppress(OSError):
                _record_django_settings(modules_file, setups)
            with contextlib.suppress(OSError):
                preload.record_in(Path(modules_file))
        events.emit(protocol.Ready(import_s=last[0] - started))

    threading.Thread(target=wait, name="wsgidev-service-imports", daemon=True).start()


# os.environ, sys.path, sys.argv and the working directory at one moment.
Context = tuple[dict[str, str], list[str], list[str], str]


def _context() -> Context:
    return dict(os.environ), list(sys.path), list(sys.argv), os.getcwd()


def _without_settings(environ: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k != "DJANGO_SETTINGS_MODULE"}


class _DjangoSetups:
    """Whether a standby may set Django up before the program runs, and whether one that did
    set it up as the program would have.

    The standby runs django.setup() before the program's own code: right only when that code
    changes nothing the settings depend on before they are read. So where the program reads
    them first, os.environ, sys.path and the working directory are noted: the settings module
    is recorded for the next standby only if the program had changed none of them but for
    DJANGO_SETTINGS_MODULE and its script's folder (a manage.py that loads a .env file or
    extends sys.path first gets a standby of libraries alone). A standby sets Django up with
    the recorded module and the program's sys.argv, notes the same, and checks them when the
    program populates the app registry itself: the settings module the program chose, and
    everything else as at the preload. Another (its manage.py edited to load a .env file or
    name other settings, say): it exits for a fresh process."""

    def __init__(self, argv: list[str]) -> None:
        program = argv[0] if argv and argv[0] != "-m" else None
        self.folder = str(Path(program).resolve().parent) if program else None
        self.program_argv = argv[1:] if argv[:1] == ["-m"] else list(argv)  # as _run sets it
        self.start: Context | None = None  # before the program (and any preload) ran
        self.settings: str | None = None  # the module a standby set Django up with
        self.preloaded: Context | None = None  # a standby's, once it set Django up
        self.checked = False  # a standby's program populated the registry in that context
        self.at_settings: Context | None = None  # the program's first read of its settings
        self.failed = False  # the standby's setup failed: unusable

    def watch(self) -> None:
        """Note the program's first read of its settings, or check a set up standby's."""
        if "django" not in sys.modules and importlib.util.find_spec("django") is None:
            return
        from django.apps.registry import Apps
        from django.conf import LazySettings

        if self.preloaded is not None:
            # Every way to set Django up (django.setup(), a direct populate) comes here.
            original_populate = Apps.populate

            def populate(apps: Any, *args: Any, **kwargs: Any) -> None:
                Apps.populate = original_populate
                if self.settings and "DJANGO_SETTINGS_MODULE" not in os.environ:
                    # Set by a module the preload imported (a Celery app's, which setup's
                    # import of the settings package ran): a change of it makes this standby
                    # stale before now. As the program has it in a fresh process:
                    os.environ["DJANGO_SETTINGS_MODULE"] = self.settings
                if not self._same_as_preload(_context()):
                    _refresh([])  # set up in another context than the program's: fresh one
                    os._exit(SERVICE_EXIT_CHANGED)
                self.checked = True
                original_populate(apps, *args, **kwargs)

            Apps.populate = populate
            return
        original_read = LazySettings._setup

        def read(settings: Any, *args: Any, **kwargs: Any) -> None:
            LazySettings._setup = original_read
            self.at_settings = _context()
            original_read(settings, *args, **kwargs)

        LazySettings._setup = read

    def plain(self) -> bool:
        """Whether the program read its settings having changed nothing they depend on."""
        if self.preloaded is not None:
            return self.checked
        if self.start is None or self.at_settings is None:
            return False
        start, now = self.start, self.at_settings
        return (
            _without_settings(now[0]) == _without_settings(start[0])
            and self._path_within(start[1], now[1])
            and now[3] == start[3]
        )

    def _same_as_preload(self, now: Context) -> bool:
        preloaded = self.preloaded
        assert preloaded is not None
        return (
            now[0].get("DJANGO_SETTINGS_MODULE") == self.settings
            and _without_settings(now[0]) == _without_settings(preloaded[0])
            and self._path_within(preloaded[1], now[1])
            and now[2] == preloaded[2]
            and now[3] == preloaded[3]
        )

    def _path_within(self, before: list[str], after: list[str]) -> bool:
        known = {*before, self.folder, os.getcwd(), ""}
        return all(entry in known for entry in after)


def _django_settings_path(modules_file: str) -> Path:
    return Path(modules_file).with_name(Path(modules_file).name + ".django")


def _record_django_settings(modules_file: str, setups: _DjangoSetups) -> None:
    """Write the settings module of a program that set Django up plainly, for its standby (and
    remove an earlier one's: the program may have changed)."""
    apps = sys.modules.get("django.apps")
    if setups.preloaded is not None:
        settings_module = setups.settings
    elif setups.at_settings is not None:
        settings_module = setups.at_settings[0].get("DJANGO_SETTINGS_MODULE")
    else:
        settings_module = None
    path = _django_settings_path(modules_file)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if apps is not None and apps.apps.ready and settings_module and setups.plain():
        temp = path.with_name(f".{path.name}.{os.getpid()}")
        temp.write_text(settings_module, encoding="utf-8")
        os.replace(temp, path)


def _recorded_django_settings(modules_file: str | None) -> str | None:
    if not modules_file:
        return None
    try:
        return _django_settings_path(modules_file).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _replace_djangos_reloader() -> None:
    """A Django command that reloads itself (db_worker with DEBUG on, runserver) would run its
    code in a child process this monitor does not see, under Django's StatReloader: it runs in
    this process instead, as the reloader's child would (whose signal handlers some set only
    there), and wsgidev's monitor reloads it."""
    if importlib.util.find_spec("django") is None:
        return
    from django.utils import autoreload

    def run_with_reloader(main_func: Any, *args: Any, **kwargs: Any) -> None:
        main_func(*args, **kwargs)

    # Set before the command looks (db_worker installs its graceful SIGTERM handler only in
    # what it takes for the reloader's child, and checks before it calls run_with_reloader).
    os.environ[autoreload.DJANGO_AUTORELOAD_ENV] = "true"

    autoreload.run_with_reloader = run_with_reloader


def _wait_for_change(changed: threading.Event, failure: str) -> None:
    """Say the program failed and wait for a change; wsgidev's stop (or its retry) ends it."""

    def stop(signum: int, frame: object) -> None:
        if not changed.is_set():  # wsgidev stops (or died): go; the monitor's own ask: wait on
            os._exit(128 + signum)

    # Before the word goes out: the program's own handlers (a flag a dead loop never reads)
    # would swallow the stop wsgidev sends on hearing it.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # a Huey consumer's graceful stop, from its leader
    events.emit(protocol.ImportFailed(error=failure))
    while not changed.wait(3600):
        pass


def _run(argv: list[str]) -> int:
    """Run PROGRAM ARGS as its own command would, in this process."""
    program, args = argv[0], argv[1:]
    if program == "-m":
        if not args:
            raise SystemExit("python -m needs a module name")
        sys.argv = [args[0], *args[1:]]
        runpy.run_module(args[0], run_name="__main__", alter_sys=True)
        return 0
    path = Path(program)
    sys.argv = [program, *args]
    # As `python X.py` has it: the script's folder first, not the working directory that
    # `python -m wsgidev.daemon.service` put there.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.path.insert(0, str(path.resolve().parent))
    runpy.run_path(str(path), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
