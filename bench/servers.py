"""The four servers compared, how each is started on a project, and how it is always stopped."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench import proctree
from bench.load import HOST, PROBE_PATH, get
from bench.projects import Project, user_env

PROCESSES = 2
THREADS = 15
READY_DEADLINE_S = 120.0
STOP_GRACE_S = 15.0
# What wsgidev prints when new code serves: "Reloaded in 0.12 s: views.py changed".
RELOADED_MARK = b"Reloaded in "
# ...and with --log-level info, the next line: where that reload's time went, each part from the
# save ("Reload timeline: seen +0.03 s · handed over +0.05 s · ...", wsgidev/logstream.py).
TIMELINE_MARK = b"Reload timeline: "
# wsgidev's banner, printed once Apache listens: "wsgidev serving Django project ...".
BANNER_MARK = b"wsgidev serving "
# As root, Apache (mod_wsgi-express) needs a non-root identity: a user namespace in which our
# uid appears as www-data's (33), as wsgidev itself does.
USERNS_PREFIX = ["unshare", "--user", "--map-user=33", "--map-group=33", "--"]


@dataclass(frozen=True, kw_only=True)
class Paths:
    """What a command line needs besides the project."""

    venv_bin: Path
    scratch: Path


@dataclass(frozen=True, kw_only=True)
class ServerSpec:
    """One contender: how to start it and how it finds changes."""

    key: str
    label: str
    detects: str
    processes: int
    command: Callable[[Project, int, Paths], list[str]]
    # Ctrl-C in a terminal: SIGINT to the foreground process group. Apache takes it as SIGTERM.
    stop_signal: signal.Signals = signal.SIGINT
    # New code is served by processes that were running before the save (wsgidev's hand-over):
    # no process exit or start lies on the reload's path.
    hands_over: bool = False
    # Prints "Reloaded in X s: FILES changed" when new code serves (wsgidev).
    prints_reloads: bool = False
    # What the started process and its other children are (Apache's processes and mod_wsgi
    # daemons are told apart by name), for memory by kind of process.
    root_kind: str = "wsgidev command"
    child_kind: str = "other"
    # Extra environment for the server (the browser scenario's django-browser-reload switch).
    env: tuple[tuple[str, str], ...] = ()
    # Arguments that have it print each reload's parts (TIMELINE_MARK), added to the command
    # where the timeline is read (the rapid scenario: ServerProcess's timeline).
    timeline_args: tuple[str, ...] = ()


def _wsgidev(project: Project, port: int, paths: Paths) -> list[str]:
    return [
        str(paths.venv_bin / "wsgidev"), "start",
        "--processes", str(PROCESSES), "--threads", str(THREADS),
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip


def _wsgidev_two_standbys(project: Project, port: int, paths: Paths) -> list[str]:
    # Two standby groups instead of one: the next warm, the one after it holding the libraries.
    return [*_wsgidev(project, port, paths), "--standbys", "2"]


def _wsgidev_process_mode(project: Project, port: int, paths: Paths) -> list[str]:
    # Each daemon restarts itself: one group, Apache's respawn loop in every reload.
    return [*_wsgidev(project, port, paths), "--restart-mode", "process"]


def _wsgidev_server_mode(project: Project, port: int, paths: Paths) -> list[str]:
    # The opt-in whole-server graceful restart: faster, but see its 503 window (README).
    return [*_wsgidev(project, port, paths), "--restart-mode", "server"]


def _runserver(project: Project, port: int, paths: Paths) -> list[str]:
    # The default autoreloader (StatReloader here: no pywatchman), threading on.
    return [str(paths.venv_bin / "python"), "manage.py", "runserver", f"{HOST}:{port}"]


def _express(project: Project, port: int, paths: Paths) -> list[str]:
    command = [
        str(paths.venv_bin / "mod_wsgi-express"), "start-server", str(project.wsgi_path),
        "--reload-on-changes",
        "--processes", str(PROCESSES), "--threads", str(THREADS),
        "--host", HOST, "--port", str(port),
        "--server-root", str(paths.scratch / f"express-{port}"),
        "--working-directory", str(project.path), "--python-path", str(project.path),
        "--log-to-terminal",
    ]  # fmt: skip
    return USERNS_PREFIX + command if os.geteuid() == 0 else command


def _gunicorn(project: Project, port: int, paths: Paths) -> list[str]:
    command = [
        str(paths.venv_bin / "gunicorn"), "--reload",
        "--workers", str(PROCESSES), "--threads", str(THREADS),
        "--bind", f"{HOST}:{port}",
    ]  # fmt: skip
    # gunicorn 25.1 and later open a control socket under ~/.gunicorn: not ours to touch.
    if _version_tuple(importlib.metadata.version("gunicorn")) >= (25, 1):
        command.append("--no-control-socket")
    return [*command, f"{project.wsgi_module}:application"]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


SERVERS = {
    spec.key: spec
    for spec in (
        ServerSpec(
            key="wsgidev",
            label=f"wsgidev start ({PROCESSES}x{THREADS})",
            detects="in-daemon monitor (wsgidev/daemon/monitor)",
            processes=PROCESSES,
            command=_wsgidev,
            hands_over=True,
            prints_reloads=True,
            timeline_args=("--log-level", "info"),
        ),
        ServerSpec(
            key="wsgidev-2standbys",
            label=f"wsgidev start --standbys 2 ({PROCESSES}x{THREADS})",
            detects="in-daemon monitor; hand-over with two standby groups",
            processes=PROCESSES,
            command=_wsgidev_two_standbys,
            hands_over=True,
            prints_reloads=True,
            timeline_args=("--log-level", "info"),
        ),
        ServerSpec(
            key="wsgidev-process",
            label=f"wsgidev start --restart-mode process ({PROCESSES}x{THREADS})",
            detects="in-daemon monitor; each daemon restarts itself",
            processes=PROCESSES,
            command=_wsgidev_process_mode,
            prints_reloads=True,
            timeline_args=("--log-level", "info"),
        ),
        ServerSpec(
            key="wsgidev-server",
            label=f"wsgidev start --restart-mode server ({PROCESSES}x{THREADS})",
            detects="in-daemon monitor; graceful restart of the whole Apache",
            processes=PROCESSES,
            command=_wsgidev_server_mode,
            prints_reloads=True,
            timeline_args=("--log-level", "info"),
        ),
        ServerSpec(
            key="runserver",
            label="manage.py runserver",
            detects="Django StatReloader, 1 s poll, mtime >",
            processes=1,
            command=_runserver,
            root_kind="autoreloader parent",
            child_kind="serving child",
        ),
        ServerSpec(
            key="express",
            label=f"mod_wsgi-express --reload-on-changes ({PROCESSES}x{THREADS})",
            detects="in-daemon thread, 1 s poll of sys.modules, mtime !=",
            processes=PROCESSES,
            command=_express,
            root_kind="mod_wsgi-express command",
        ),
        ServerSpec(
            key="gunicorn",
            label=f"gunicorn --reload ({PROCESSES}x{THREADS})",
            detects="per-worker thread, 1 s poll (no inotify module), mtime >",
            processes=PROCESSES,
            command=_gunicorn,
            root_kind="arbiter",
            child_kind="workers",
        ),
    )
}


def free_port() -> int:
    """A port nothing listens on now (bind 127.0.0.1:0 and let the kernel choose)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """One server started in its own session, its output copied to a log file (and wsgidev's
    "Reloaded in" lines kept with their arrival times); stop() always cleans up."""

    def __init__(
        self,
        spec: ServerSpec,
        project: Project,
        paths: Paths,
        log_path: Path,
        *,
        timeline: bool = False,
    ) -> None:
        self.spec = spec
        self.project = project
        self.port = free_port()
        self.command = spec.command(project, self.port, paths)
        if timeline:
            self.command += spec.timeline_args
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.reloaded_lines: list[tuple[float, str]] = []  # (time.monotonic(), line)
        self.timeline_lines: list[tuple[float, str]] = []  # the same, for TIMELINE_MARK
        self.banner_at: float | None = None  # when wsgidev's banner came (Apache listens)
        self._log: IO[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._seen: dict[int, proctree.ProcStat] = {}

    def start(self) -> None:
        """Start the server; it runs in a new session, so signals we send reach it alone."""
        env = {**user_env(), **dict(self.spec.env)}
        env["PATH"] = f"{Path(self.command[0]).parent}:{env.get('PATH', '')}"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"$ {' '.join(self.command)}\n".encode())
        self._log.flush()
        self.process = subprocess.Popen(
            self.command,
            cwd=self.project.path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._copy_output, daemon=True, name="server-log")
        self._reader.start()

    def _copy_output(self) -> None:
        # Runs until every process holding the pipe has exited.
        assert self.process is not None and self.process.stdout is not None
        assert self._log is not None
        for line in self.process.stdout:
            if self.banner_at is None and BANNER_MARK in line:
                self.banner_at = time.monotonic()
            if RELOADED_MARK in line:
                text = line.decode("utf-8", "replace").strip()
                self.reloaded_lines.append((time.monotonic(), text))
            elif TIMELINE_MARK in line:
                text = line.decode("utf-8", "replace").strip()
                self.timeline_lines.append((time.monotonic(), text))
            self._log.write(line)
            self._log.flush()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def tree(self) -> dict[int, proctree.ProcStat]:
        """The server's processes now (remembered, so stop() can find every one of them)."""
        found = proctree.tree(self.pid)
        self._seen.update(found)
        return found

    def wait_ready(self, deadline_s: float = READY_DEADLINE_S) -> None:
        """Return once /bench/probe answers 200; raise if the server exits or the deadline passes."""
        deadline = time.monotonic() + deadline_s
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.spec.key} exited while starting; see {self.log_path}")
            try:
                status, body = get(self.port, PROBE_PATH, timeout_s=5)
                if status == 200:
                    self.tree()
                    return
                last = f"HTTP {status}"
            except OSError as exc:
                last = type(exc).__name__
            time.sleep(0.1)
        raise RuntimeError(f"{self.spec.key} not ready in {deadline_s:.0f} s ({last})")

    def stop_timed(self, deadline_s: float) -> float | None:
        """Ctrl-C with no request in flight: the stop signal to the server's process group, then
        the seconds until every process of its tree has exited (None past the deadline)."""
        if self.process is None or self.process.poll() is not None:
            return None
        before = self.tree()
        sent = time.monotonic()
        _killpg(self.pid, self.spec.stop_signal)
        while time.monotonic() - sent < deadline_s:
            self.process.poll()  # reap the root, or it stays a zombie of ours
            if not any(
                (now := proctree.read_stat(pid)) is not None
                and now.start_ticks == seen.start_ticks
                and now.alive
                for pid, seen in before.items()
            ):
                return time.monotonic() - sent
            time.sleep(0.01)
        return None

    def stop(self) -> list[int]:
        """Stop signal to the session, then SIGKILL whatever of the tree is left; return the
        pids that survived even that (should be none)."""
        if self.process is None:
            return []
        self.tree()
        if self.process.poll() is None:
            _killpg(self.pid, self.spec.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_GRACE_S)
        # wsgidev runs Apache in a session of its own: kill by pid what we saw of the tree, if
        # the pid still names the same process.
        _killpg(self.pid, signal.SIGKILL)
        for pid, seen in self._seen.items():
            now = proctree.read_stat(pid)
            if now is not None and now.start_ticks == seen.start_ticks and now.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.wait(5)
        survivors = self._survivors(deadline_s=5.0)
        if self._reader is not None:
            self._reader.join(5)
        if self._log is not None and (self._reader is None or not self._reader.is_alive()):
            self._log.close()
        return survivors

    def _survivors(self, deadline_s: float) -> list[int]:
        deadline = time.monotonic() + deadline_s
        while True:
            left = [
                pid
                for pid, seen in self._seen.items()
                if (now := proctree.read_stat(pid)) is not None
                and now.start_ticks == seen.start_ticks
                and now.alive
            ]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
