"""Services beside the server (`--run NAME=COMMAND`, a Procfile): started with it, their output
on its terminal under their names, restarted when their code changes or when they exit, and
stopped with it.

A Python command (a console script of the venv such as celery, `manage.py ...`, `python X.py`,
`python -m X`) runs under wsgidev.daemon.service, with the monitor inside: it restarts exactly
when a file it imported changes, through its own graceful stop (SIGTERM). Any other command
(npm, tailwindcss) is restarted only when it exits by itself, with a back-off.

A Python service that reloads has a warmed standby once it is up (wsgidev.daemon.service
--standby: the libraries it imported, imported again in a process that waits). On a change the
standby runs the program: for a queue consumer (hands_over()), at once, while the old process
finishes its tasks; for any other, once the old one has exited (a port or a schedule must not
be held twice). Either way the new code starts without paying for the libraries' import again.

Every service runs in a process group of its own, asked to stop with SIGTERM (then SIGKILL after
--shutdown-timeout), and gets SIGTERM from the kernel if wsgidev dies (PR_SET_PDEATHSIG), so
neither Ctrl-C, SIGTERM nor SIGKILL of wsgidev leaves one behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TextIO

from wsgidev.errors import WsgidevError
from wsgidev.reloads import SAME_SAVE_S
from wsgidev.shared import events, protocol
from wsgidev.shared.processes import SERVICE_ENV_VAR, SERVICE_EXIT_CHANGED

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")
BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
STABLE_S = 30.0  # a service up this long starts its back-off over
COLOURS = ("36", "35", "33", "32", "34", "96", "95", "93")
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    command: str


def read_procfile(path: Path) -> tuple[list[ServiceSpec], bool]:
    """The services of a Procfile (honcho's and foreman's `name: command` lines), and whether
    it had a `web` entry (wsgidev itself, skipped). Read here, not with honcho's parser: honcho
    would be a dependency in every user's venv for these few lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WsgidevError(
            f"--procfile {path} cannot be read: {exc.strerror}", "pass a Procfile that exists"
        ) from None
    specs: list[ServiceSpec] = []
    web = False
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not NAME.fullmatch(name.strip()) or not command.strip():
            raise WsgidevError(
                f"{path}:{number} is not `name: command`: {line.strip()[:80]!r}",
                "write one `name: command` per line, as honcho reads them",
            )
        if name.strip() == "web":
            web = True
            continue
        specs.append(ServiceSpec(name.strip(), command.strip()))
    return specs, web


def check_unique(specs: Iterable[ServiceSpec]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen or spec.name == "web":
            raise WsgidevError(
                f"two services are named {spec.name!r}"
                if spec.name in seen
                else "a service is named 'web', wsgidev's own name",
                "give each service its own name",
            )
        seen.add(spec.name)


def command_line(command: str, path: str | None = None) -> tuple[list[str], bool]:
    """The argv a service runs, and whether it is a Python command run with the monitor inside
    (wsgidev's own Python; another interpreter runs as any command)."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv = list(lexer)
    except ValueError:
        argv = []
    if (
        not argv
        or any(_OPERATOR.fullmatch(token) for token in argv)  # | && ; > ( ...: a shell's
        or _EXPANDS.search(command)  # $VAR, `cmd`, globs, ~: a shell's (quoted ones too)
        or "=" in argv[0]  # NAME=value cmd
    ):
        return _in_group(["/bin/sh", "-c", command]), False
    program, rest = argv[0], argv[1:]
    if _is_our_python(program, path):
        while rest and rest[0] in _PYTHON_FLAGS:  # python -u manage.py ...
            rest = rest[1:]
        if rest and (rest[0] == "-m" or rest[0].endswith(".py")):
            return _under_monitor(rest), True
        return _in_group(argv), False  # python -c, -X, a REPL: as it is
    if program.endswith(".py") and "/" not in program.replace("./", "", 1):
        return _under_monitor(argv), True
    found = shutil.which(program, path=path)
    if found is None:
        raise WsgidevError(
            f"service command {program!r} not found",
            "install it in the venv (or give its path), or fix the --run/Procfile line",
        )
    if _shebang_is_ours(Path(found)):
        return _under_monitor([found, *rest]), True
    return _in_group([found, *rest]), False


_OPERATOR = re.compile(r"[|&;<>()]+")
_EXPANDS = re.compile(r"[$`*?\[~]")
_PYTHON_FLAGS = {"-u", "-B", "-O", "-OO", "-E", "-s", "-S", "-I", "-P", "-q"}


def _is_our_python(program: str, path: str | None) -> bool:
    """Whether program is wsgidev's own interpreter (the venv's): by name, or by path."""
    if program in ("python", "python3", Path(sys.executable).name):
        found = shutil.which(program, path=path)
        return found is not None and _same_file(found, sys.executable)
    return "/" in program and _same_file(program, sys.executable)


def _same_file(one: str, other: str) -> bool:
    try:
        return os.path.samefile(one, other) or Path(one).resolve() == Path(other).resolve()
    except OSError:
        return False


def _in_group(argv: list[str]) -> list[str]:
    """A service, under the leader of its process group (wsgidev.daemon.leader),
    which passes a SIGTERM on to it, the kernel's when wsgidev dies too, and ends what it left."""
    return [sys.executable, "-m", "wsgidev.daemon.leader", *argv]


def _under_monitor(argv: list[str]) -> list[str]:
    """A Python service: the monitor inside, under the same group leader as any command."""
    return _in_group([sys.executable, "-m", "wsgidev.daemon.service", *argv])


def _shebang_is_ours(path: Path) -> bool:
    """A script whose #! line names wsgidev's own Python (a console script of this venv)."""
    try:
        with path.open("rb") as file:
            first = file.readline(400).decode("utf-8", "replace")
    except OSError:
        return False
    if not first.startswith("#!"):
        return False
    words = first[2:].split()
    if not words:
        return False
    interpreter = words[1] if Path(words[0]).name == "env" and len(words) > 1 else words[0]
    if "/" not in interpreter:
        found = shutil.which(interpreter)
        return found is not None and _same_file(found, sys.executable)
    return _same_file(interpreter, sys.executable)


def _parent_death_signal(parent: int) -> Callable[[], None]:
    """The child's setup: SIGTERM from the kernel when the thread that forked it ends (wsgidev
    killed); parent: wsgidev's pid, noted before the fork (wsgidev may be pid 1 itself)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # wsgidev died before prctl: do not outlive it
            os._exit(1)

    return setup


def hands_over(command: str) -> bool:
    """Whether a new process of this command may start while the old one finishes: a queue
    consumer, whose tasks the broker gives to one process each (Celery's worker without an
    embedded beat, RQ's, Dramatiq's, django-tasks' db_worker, django-rq's rqworker). Not a
    scheduler (Celery beat, Huey's consumer with its periodic tasks: a task sent twice), not a
    worker that holds a pid file or state file (the new one would refuse to start), nor
    anything else (a port bound twice fails)."""
    found = _program(command)
    if found is None:
        return False
    program, args = found
    if any(arg.split("=")[0] in _HOLDS_A_FILE for arg in args):
        return False
    subcommand = _subcommand(args)
    if program == "celery":
        return subcommand == "worker" and not {"-B", "--beat"} & set(args)
    if program == "rq":
        return subcommand == "worker"
    if program == "dramatiq":
        return True
    if program.endswith("manage.py"):
        return subcommand in ("db_worker", "rqworker")
    return False


def stop_signal(command: str) -> signal.Signals:
    """The signal that asks the program to stop gracefully, its running tasks finishing:
    SIGTERM, but SIGINT for Huey's consumer (`huey_consumer`, `manage.py run_huey`), whose
    SIGTERM interrupts its tasks, unless it is told `--graceful-signal TERM`."""
    found = _program(command)
    if found is None:
        return signal.SIGTERM
    program, args = found
    # huey_consumer, its file, `python -m huey.bin.huey_consumer`; djhuey's run_huey command.
    huey = program.removesuffix(".py").endswith("huey_consumer") or (
        (program.endswith("manage.py") or program in ("django-admin", "django"))
        and _subcommand(args) == "run_huey"
    )
    if not huey:
        return signal.SIGTERM
    for at, arg in enumerate(args):
        value = None
        option, _, attached = arg.partition("=")
        # optparse and argparse take any unambiguous start of a long option (--graceful).
        long = len(option) > 3 and "--graceful-signal".startswith(option)
        if arg == "-g" or (long and not attached):
            value = args[at + 1] if at + 1 < len(args) else None
        elif long:
            value = attached
        elif arg.startswith("-g") and len(arg) > 2:
            value = arg[2:]
        if value is not None and value.upper() in ("TERM", "SIGTERM"):
            return signal.SIGTERM
    return signal.SIGINT


def _program(command: str) -> tuple[str, list[str]] | None:
    """The program a command line runs (past `python -m`) and its arguments."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    words = [Path(argv[0]).name, *argv[1:]] if argv else []
    while words and (words[0].startswith("python") or words[0] in _PYTHON_FLAGS):
        words = words[1:]
    if words[:1] == ["-m"]:
        words = words[1:]
    if not words:
        return None
    return Path(words[0]).name, words[1:]


# Options before a subcommand that take a value (celery -A proj worker: proj is no subcommand).
_TAKES_A_VALUE = {"-A", "--app", "-b", "--broker", "--result-backend", "--loader", "--config"}
_TAKES_A_VALUE |= {"--workdir", "--settings", "--pythonpath", "-u", "--url", "-c"}
_HOLDS_A_FILE = {"--pidfile", "--statedb", "-S"}


def _subcommand(args: list[str]) -> str | None:
    """The first word that is neither an option nor an option's value."""
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg in _TAKES_A_VALUE
        else:
            return arg
    return None


class Service:
    def __init__(self, spec: ServiceSpec, argv: list[str], python: bool, colour: str) -> None:
        self.spec = spec
        self.argv = argv
        self.python = python
        self.colour = colour
        self.process: subprocess.Popen[bytes] | None = None  # the one that serves
        self.standby: subprocess.Popen[bytes] | None = None  # warmed, waiting for its turn
        # Handed over from and still finishing their tasks (a queue consumer's old processes).
        self.retiring: list[subprocess.Popen[bytes]] = []
        # When the last of those exited (time.monotonic()).
        self.retired_at = 0.0
        # The serving process that failed at its start while one of those still ran (or had
        # just exited): it is started again once they have all exited.
        self.retry: subprocess.Popen[bytes] | None = None
        self.hands_over = python and hands_over(spec.command)
        self.stop_signal = stop_signal(spec.command)
        self.started_at = 0.0
        self.failures = 0
        self.changed: tuple[str, ...] = ()

    @property
    def standby_argv(self) -> list[str]:
        """argv, with wsgidev.daemon.service's run (after the leader's) as a standby."""
        at = self.argv.index("wsgidev.daemon.service") + 1
        return [*self.argv[:at], "--standby", *self.argv[at:]]


class Supervisor:
    """Starts, restarts and stops the services; one thread spawns them all (PR_SET_PDEATHSIG is
    tied to the thread that forked: it must live as long as the services)."""

    def __init__(
        self,
        specs: list[ServiceSpec],
        out: TextIO,
        *,
        cwd: Path,
        env: dict[str, str],
        colour: bool,
        shutdown_timeout_s: float,
        path: str | None = None,
        service_config: dict[str, object] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        """service_config: what each Python service's monitor and debugger are told
        (SERVICE_ENV_VAR), besides its name. state_dir: a private folder for what a Python
        service records for its standby (none: no standbys)."""
        check_unique(specs)
        self.out = out
        self.cwd = cwd
        self.env = env
        self.colour = colour
        self.shutdown_timeout_s = shutdown_timeout_s
        self.service_config = service_config or {}
        self.state_dir = state_dir
        self.reloads = bool(self.service_config.get("reload", True))
        self.services = [
            Service(spec, *command_line(spec.command, path), COLOURS[i % len(COLOURS)])
            for i, spec in enumerate(specs)
        ]
        self.width = max((len(s.spec.name) for s in self.services), default=0)
        self._lock = threading.Lock()
        self._processes: set[subprocess.Popen[bytes]] = set()  # serving, standby, retiring
        self._stopping = threading.Event()
        # The latest changes that restarted a service: (name, when saved, files).
        self._heard: deque[tuple[str, float, frozenset[str]]] = deque(maxlen=32)
        self._spawns: queue.Queue[tuple[Service, bool] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # -- output ---------------------------------------------------------------------------

    def say(self, service: Service, text: str) -> None:
        name = service.spec.name.ljust(self.width)
        prefix = f"\x1b[{service.colour}m{name} |\x1b[0m" if self.colour else f"{name} |"
        with self._lock:
            self.out.write(f"{prefix} {text}\n")
            self.out.flush()

    def _pump(self, service: Service, process: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            event = events.parse(line) if events.MARKER in line else None
            if event is None:
                self.say(service, line)
            elif process is not service.process:  # a standby's (stale: it exits) or a retired one's
                continue
            elif isinstance(event, protocol.Change):
                service.changed = tuple(event.files)
                self._heard.append((service.spec.name, event.saved_at, frozenset(event.files)))
                names = ", ".join(Path(f).name for f in event.files[:3])
                self._changed(service, names)
            elif isinstance(event, protocol.Ready):
                self._want_standby(service)
            elif isinstance(event, protocol.ImportFailed):
                if self._retry_after_retiring(service, process):
                    self.say(
                        service,
                        f"failed ({event.error}) while the process it took over from was still"
                        " stopping: starting it again once that one has exited",
                    )
                else:
                    self.say(service, f"failed: {event.error}; waiting for a fix")
            elif isinstance(event, protocol.Refused):
                self.say(service, f"wsgidev {event.part}: {event.reason}")
        stream.close()

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        if not self.services:
            return
        self._thread = threading.Thread(target=self._spawner, name="wsgidev-services", daemon=True)
        self._thread.start()
        for service in self.services:
            how = (
                "restarts when code it imported changes"
                if service.python
                else "not watched: restarts if it exits"
            )
            self.say(service, f"{service.spec.command} ({how})")
            self._spawns.put((service, False))

    def _spawner(self) -> None:
        while True:
            job = self._spawns.get()
            if job is None:
                return
            service, standby = job
            try:
                self._spawn(service, standby)
            except Exception as exc:  # this thread must live: its end signals every service
                self.say(service, f"could not start: {exc}")

    def restarted_by(self, files: tuple[str, ...], saved_at: float) -> list[str]:
        """The services a save of these files (at saved_at) restarted, as far as heard yet."""
        names = {
            name
            for name, when, changed in list(self._heard)
            if changed & set(files) and abs(when - saved_at) < SAME_SAVE_S
        }
        return [s.spec.name for s in self.services if s.spec.name in names]

    def _changed(self, service: Service, names: str) -> None:
        """The serving process's code changed (it stops itself): its standby takes over, now
        for a queue consumer, else once it has exited (its watch lets the standby go)."""
        if service.hands_over and self._go(service):
            self.say(service, f"{names} changed: handed over (the old process finishes its tasks)")
        else:
            self.say(service, f"{names} changed: restarting")

    def _retry_after_retiring(self, service: Service, process: subprocess.Popen[bytes]) -> bool:
        """A serving process failed at its start: if one it took over from still runs (what it
        holds, an RQ worker's fixed name, may be the cause), stop the failed one
        and start the program again once they have all exited (True); else it waits for a fix."""
        with self._lock:
            if service.retry is process or process is not service.process:
                return False
            running = any(p.poll() is None for p in service.retiring)
            # An old process that stopped quickly (an idle RQ worker) may have let go of what
            # it held just after the new one was refused it.
            if not running and service.retired_at < service.started_at:
                return False
            service.retry = process
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)  # it waits for a fix: this ends it at once
        return True

    def _go(self, service: Service) -> bool:
        """The standby's turn, if it is there: it runs the program and is the serving process
        from now on (True)."""
        with self._lock:
            standby = service.standby
            if self._stopping.is_set() or standby is None or standby.poll() is not None:
                return False
            service.standby = None
            old = service.process
            if old is not None and old.poll() is None:  # a queue consumer's: it finishes
                service.retiring.append(old)
            service.process = standby
            service.started_at = time.monotonic()
            service.changed = ()
        try:
            assert standby.stdin is not None
            standby.stdin.write(b"go\n")
            standby.stdin.close()
        except (OSError, ValueError):
            pass  # it died meanwhile: its watch starts it again, as any serving process
        return True

    def _want_standby(self, service: Service) -> None:
        """Once the serving process is up (it recorded its libraries): a standby, if none."""
        if service.python and self.reloads and self.state_dir is not None:
            with self._lock:
                if service.standby is None or service.standby.poll() is not None:
                    service.standby = None
                    self._spawns.put((service, True))

    def _spawn(self, service: Service, standby: bool = False) -> None:
        config = {
            **self.service_config,
            "name": service.spec.name,
            "stop_signal": int(service.stop_signal),
        }
        if self.state_dir is not None and service.python:
            config["modules_file"] = str(self.state_dir / f"{service.spec.name}.modules")
        with self._lock:  # stop() collects the processes under it: none is started after
            if self._stopping.is_set() or (standby and service.standby is not None):
                return
            argv = service.standby_argv if standby else service.argv
            # The leader's own options: how long what the service leaves behind has to go, and
            # the signal that stops the service gracefully (what wsgidev's SIGTERM becomes).
            grace = ["--grace", f"{self.shutdown_timeout_s:g}"]
            if service.stop_signal != signal.SIGTERM:
                grace += ["--signal", str(int(service.stop_signal))]
            argv = [*argv[:3], *grace, *argv[3:]]
            process = subprocess.Popen(
                argv,
                cwd=self.cwd,
                env={**self.env, SERVICE_ENV_VAR: json.dumps(config)},
                stdin=subprocess.PIPE if standby else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal(os.getpid()),
            )
            self._processes.add(process)
            if standby:
                service.standby = process
            else:
                service.process = process
                service.started_at = time.monotonic()
                service.changed = ()
        assert process.stdout is not None
        pump = threading.Thread(
            target=self._pump, args=(service, process, process.stdout), daemon=True
        )
        pump.start()
        threading.Thread(target=self._watch, args=(service, process, pump), daemon=True).start()

    def _watch(
        self, service: Service, process: subprocess.Popen[bytes], pump: threading.Thread
    ) -> None:
        status = process.wait()
        # What the program left in its group (a shell's children, a helper process) goes with
        # it, and with them the last holders of the output pipe.
        _end_group(process.pid, self.shutdown_timeout_s)
        pump.join(5)  # its last lines, the Change event among them
        with self._lock:  # one look: _go may make a standby the serving process meanwhile
            self._processes.discard(process)
            was_standby = process is service.standby
            if was_standby:
                service.standby = None
            serving = process is service.process
        if process.stdin is not None:  # a standby's, never told to go
            with contextlib.suppress(OSError):
                process.stdin.close()
        if self._stopping.is_set():
            return
        if was_standby:  # stale (its libraries changed) or gone: another
            if status == SERVICE_EXIT_CHANGED:
                self._want_standby(service)
            else:
                self.say(service, f"its warmed standby exited with status {status}")
            return
        if not serving:  # retired by a hand-over: its tasks are done
            with self._lock:
                if process in service.retiring:
                    service.retiring.remove(process)
                    service.retired_at = time.monotonic()
            return
        if service.retry is process:  # failed while a process it took over from still ran
            for old in list(service.retiring):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    old.wait(self.shutdown_timeout_s + 5)  # it ends itself by then
            service.retry = None
            if not self._stopping.is_set() and not self._go(service):
                self._spawns.put((service, False))
            return
        # Its code changed: SERVICE_EXIT_CHANGED, or the signal's own status where the program
        # left SIGTERM to its default action.
        if service.python and self.reloads and (status == SERVICE_EXIT_CHANGED or service.changed):
            service.failures = 0
            if not self._go(service):
                self._spawns.put((service, False))
            return
        if time.monotonic() - service.started_at > STABLE_S:
            service.failures = 0
        delay = BACKOFF_S[min(service.failures, len(BACKOFF_S) - 1)]
        service.failures += 1
        self.say(service, f"exited with status {status}; starting it again in {delay:g} s")
        if not self._stopping.wait(delay):
            self._spawns.put((service, False))

    def stop(self) -> None:
        """SIGTERM to each service (its leader: Celery's pool children must not get one, they
        would die mid-task), SIGKILL to its whole group after --shutdown-timeout. The spawning
        thread ends last: its end sends the kernel's SIGTERM (PR_SET_PDEATHSIG) to each."""
        self.finish_stop(*self.begin_stop())

    def begin_stop(self) -> tuple[list[subprocess.Popen[bytes]], float]:
        """stop()'s first half: no more starts, SIGTERM to each; the processes asked, and by
        when they are to be gone."""
        with self._lock:
            self._stopping.set()
            running = [process for process in self._processes if process.poll() is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        return running, time.monotonic() + self.shutdown_timeout_s

    def finish_stop(self, running: list[subprocess.Popen[bytes]], deadline: float) -> None:
        """stop()'s second half: wait for them until deadline (the server stops meanwhile),
        then SIGKILL what is left."""
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(5)
        for process in running:
            _signal_group(process.pid, signal.SIGKILL)  # what the leader left in its group
        self._spawns.put(None)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _end_group(pgid: int, timeout_s: float) -> None:
    """After its leader exited: SIGTERM to what is left of a service's group, SIGKILL after
    timeout_s."""
    _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)
