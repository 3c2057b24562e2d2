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
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from wsgidev.daemon import debugger
from wsgidev.daemon.appimport import app_traceback
from wsgidev.daemon.monitor import start as start_monitor
from wsgidev.shared import events, protocol
from wsgidev.shared.processes import SERVICE_ENV_VAR, SERVICE_EXIT_CHANGED
from wsgidev.shared.spec import DEV_SETTLE_S, DebuggerSpec

# The program's import is taken as over once nothing was imported for this long.
IMPORTS_QUIET_S = 3.0


def main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write("usage: python -m wsgidev.daemon.service [--exec] PROGRAM [ARGS...]\n")
        return 2
    if argv[0] == "--exec":
        return exec_child(argv[1:])
    config = json.loads(os.environ.pop(SERVICE_ENV_VAR, "{}"))
    events.read_by_command(True)
    if config.get("debug_socket"):
        # breakpoint() and pdb.set_trace() open on wsgidev's terminal, as in the daemons.
        debugger.service_name = config.get("name", "")
        debugger.install(DebuggerSpec(socket_path=config["debug_socket"]))
    changed = threading.Event()

    def on_change(files: list[str]) -> None:
        changed.set()
        # The program's own graceful stop; a second change while it stops adds nothing.
        os.kill(os.getpid(), signal.SIGTERM)

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
    if monitor is not None:
        _end_of_imports(monitor)
    status = 0
    try:
        status = _run(argv)
    except SystemExit as exc:  # the program's own exit (sys.exit, argparse's usage)
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
    except KeyboardInterrupt:
        status = 130
    except BaseException as exc:  # noqa: BLE001 - the program's own failure: said once, then wait
        if not changed.is_set():
            sys.stderr.write(app_traceback(exc))
            if monitor is not None:
                monitor.watch_exception(exc)
            events.emit(protocol.ImportFailed(error=f"{type(exc).__name__}: {exc}"))
            status = 1
    if monitor is not None:
        monitor.import_done()
    if changed.is_set():
        return SERVICE_EXIT_CHANGED
    if status != 0 and monitor is not None:
        # Waits for a fix rather than exiting into a restart loop.
        _wait_for_change(changed)
        return SERVICE_EXIT_CHANGED
    return int(status or 0)


def _end_of_imports(monitor: Any) -> None:
    """Watch the files the program reads while it imports (its settings' .env, say), not the
    ones it reads at work (a task's data): a long-running program has no "import done", so it
    is taken as over once nothing has been imported for IMPORTS_QUIET_S."""
    last = [time.monotonic()]
    monitor.journal_imports(lambda path: last.__setitem__(0, time.monotonic()))

    def wait() -> None:
        while time.monotonic() - last[0] < IMPORTS_QUIET_S:
            time.sleep(IMPORTS_QUIET_S - (time.monotonic() - last[0]) + 0.05)
        monitor.journal_imports(None)
        monitor.import_done()

    threading.Thread(target=wait, name="wsgidev-service-imports", daemon=True).start()


def exec_child(argv: list[str]) -> int:
    """A command that is not Python, in this process group: the kernel's SIGTERM when wsgidev
    dies (PR_SET_PDEATHSIG reaches only this process) is passed to the whole group, so that a
    shell's children go too."""
    child = subprocess.Popen(argv)
    passed = False

    def pass_on(signum: int, frame: object) -> None:
        nonlocal passed
        if not passed:  # killpg reaches this process as well
            passed = True
            os.killpg(0, signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    status = child.wait()
    return status if status >= 0 else 128 - status


def _wait_for_change(changed: threading.Event) -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the monitor's own ask
    while not changed.wait(3600):
        pass
    time.sleep(0)  # the monitor's SIGTERM has been delivered: nothing more to stop


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
    sys.path.insert(0, str(path.resolve().parent))
    runpy.run_path(str(path), run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
