"""Fixtures: free loopback ports, tiny projects, and a real `wsgidev start` that always tears down."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

REPO = Path(__file__).resolve().parent.parent

# Every process the tests start runs as on a user's machine: these machines set both, users'
# do not. With bytecode writing off, an edit served stale from __pycache__ went unseen here.
MACHINE_ONLY_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")
for _name in MACHINE_ONLY_ENV:
    os.environ.pop(_name, None)

# A WSGI app that records each import (pid and a counter, hupper's trick) so tests can prove a
# real restart happened, and not one too many; it reports its pid, in-flight count and peak.
APP = """
import json, os, sys, threading, time, urllib.parse

VERSION = "v1"
IMPORTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imports.log")
with open(IMPORTS, "a") as log:
    log.write(f"{os.getpid()}\\n")

_lock = threading.Lock()
_inflight = 0
_peak = 0


def application(environ, start_response):
    global _inflight, _peak
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    path = environ.get("PATH_INFO", "/")
    with _lock:
        _inflight += 1
        _peak = max(_peak, _inflight)
        peak = _peak
    try:
        if path == "/sleep":
            time.sleep(float(query.get("s", ["1"])[0]))
        if path == "/print":
            print("hello from the app", query.get("m", [""])[0])
        body = {
            "version": VERSION,
            "pid": os.getpid(),
            "thread": threading.get_ident(),
            "peak": peak,
            "multiprocess": environ.get("wsgi.multiprocess"),
            "environ": {k: os.environ.get(k) for k in query.get("env", [])},
        }
    finally:
        with _lock:
            _inflight -= 1
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
"""


def free_port() -> int:
    """A port nothing listens on right now (bind 127.0.0.1:0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when 127.0.0.1:port can be bound."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def process_report(pid: int) -> str:
    """pid and every process below it as /proc tells them (state, where each thread waits, the
    command line), for a failure message: a stop that hangs once in a hundred runs is diagnosed
    from the run that hung."""
    lines = []
    for each in sorted({pid} | descendants(pid)):
        base = Path(f"/proc/{each}")
        try:
            state = (base / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            threads = []
            for task in sorted((base / "task").iterdir(), key=lambda t: int(t.name)):
                name = (task / "comm").read_text().strip()
                wchan = (task / "wchan").read_text().strip() or "-"
                threads.append(f"{name}:{wchan}")
        except OSError:
            continue  # ended meanwhile
        lines.append(f"  {each} {state} {command.strip()[:160]}\n    threads: {', '.join(threads)}")
    return "processes:\n" + "\n".join(lines) if lines else "processes: none left"


def descendants(pid: int) -> set[int]:
    """Every live process below pid, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str | Callable[[], str]
) -> None:
    """Poll predicate until it holds, failing the test with `what` at the deadline. It is
    looked at once more past the deadline: a machine that stalled (a loaded CI host, a paused
    VM) for the whole wait must not fail a condition that holds without being asked. A
    callable `what` is called at the deadline: a server's log then, not the one before the wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        expired = time.monotonic() >= deadline
        if predicate():
            return
        if expired:
            said = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s} s waiting for {said}")
        time.sleep(0.05)


def holds_for(predicate: Callable[[], bool], duration_s: float, what: str) -> None:
    """Check predicate throughout duration_s (nothing more happens), failing as soon as it breaks."""
    deadline = time.monotonic() + duration_s
    while True:
        assert predicate(), f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def imports(project: Path) -> list[str]:
    """Pids of every import of app.py so far (the test app appends one per import)."""
    path = project / "imports.log"
    return path.read_text().split() if path.exists() else []


def versions(server, count: int = 6) -> set[str]:
    """The VERSION values answered by count requests (both processes get some)."""
    found = set()
    for _ in range(count):
        status, body = server.get("/")
        found.add(json.loads(body)["version"] if status == 200 else f"status {status}")
    return found


def set_version(path: Path, version: str, style: str = "in-place") -> None:
    """Save app.py with a new VERSION the way an editor or git would."""
    text = path.read_text()
    start = text.index('VERSION = "') + len('VERSION = "')
    new = text[:start] + version + text[text.index('"', start) :]
    if style == "in-place":
        with path.open("r+") as handle:
            handle.truncate(0)
            handle.write(new)
    elif style == "rename":  # vim, JetBrains: write a temp file, rename over the original
        temp = path.with_name(f".{path.name}.swp")
        temp.write_text(new)
        os.replace(temp, path)
    elif style == "delete-create":
        path.unlink()
        path.write_text(new)
    elif style == "older-mtime":  # git checkout restores content with an older mtime
        stat = path.stat()
        path.write_text(new)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - 3_600_000_000_000))
    else:
        raise ValueError(style)


def reload_lines(server) -> list[str]:
    """The terminal's `Reloaded in` lines so far."""
    return [line for line in server.log().splitlines() if line.startswith("Reloaded in")]


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET; HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wsgidev_command(*args: str) -> list[str]:
    """The real wsgidev entry point, from this interpreter; a `start` without --port gets a
    free one (the default, 8000, is often another server's: a test must not depend on it)."""
    if args[:1] == ("start",) and not any(a == "--port" or a.startswith("--port=") for a in args):
        args = (*args, "--port", str(free_port()))
    return [sys.executable, "-m", "wsgidev", *args]


@pytest.fixture(scope="session", autouse=True)
def default_port_taken() -> Iterator[None]:
    """Another listener holds 127.0.0.1:8000, wsgidev's default, for the whole run (a user's
    often does): a test that needs it free fails on every run, not on some machines only."""
    holder: socket.socket | None = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8000))
        holder.listen()
    except OSError:  # taken already: as good
        holder.close()
        holder = None
    yield
    if holder is not None:
        holder.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright's Python package."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (bash dev.sh test installs it with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port another program listens on, for the test's length."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


class WsgidevServer:
    """`wsgidev start` as a subprocess: log to a file, deadlines on every wait, full teardown."""

    pipe_colours = False  # NO_COLOR is set, unless a subclass shows what a pipe gets

    def __init__(
        self,
        project: Path,
        log_dir: Path,
        args: list[str],
        env: dict[str, str],
        tmp_prefix: str = "wsgidev-test-",
    ):
        self.project = project
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "wsgidev.log"
        # wsgidev's temp server root goes here, so a test can see it made and removed; short,
        # because mod_wsgi's daemon sockets live there and socket paths are limited.
        self.tmpdir = Path(tempfile.mkdtemp(prefix=tmp_prefix))
        self.server_args = args
        self.args = ["start", *args, "--port", str(self.port)]
        # NO_COLOR unless the class shows what a pipe gets (then only if the test sets it).
        base = {k: v for k, v in os.environ.items() if k != "NO_COLOR" or not self.pipe_colours}
        colours = {} if self.pipe_colours else {"NO_COLOR": "1"}
        self.env = {**base, "TMPDIR": str(self.tmpdir), **colours, **env}
        self.process: subprocess.Popen[bytes] | None = None
        self.apache_pids: set[int] = set()

    def start(self, wait: bool = True) -> WsgidevServer:
        """Start, and unless wait is False, wait until the app answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.project,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            wait_for(self.answers, 30, lambda: f"{self.url} to answer\n{self.log()}")
            self.apache_pids = descendants(self.process.pid)
        return self

    def command(self) -> list[str]:
        """The command line that starts the server."""
        return wsgidev_command(*self.args)

    def answers(self) -> bool:
        """True once GET / returns anything."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"wsgidev exited with {self.process.returncode}:\n{self.log()}")
        try:
            http_get(self.url + "/", timeout_s=2)
        except OSError:
            return False
        return True

    def get(self, path: str, timeout_s: float = 10.0) -> tuple[int, bytes]:
        """GET a path from the server."""
        return http_get(self.url + path, timeout_s)

    def json(self, path: str = "/") -> dict[str, object]:
        """GET a path and decode the test app's JSON answer."""
        status, body = self.get(path)
        assert status == 200, body[:2000]
        return dict(json.loads(body))

    def log(self) -> str:
        """Everything wsgidev printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 20.0) -> int:
        """Signal wsgidev as a terminal would; return its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.apache_pids |= descendants(self.process.pid)
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                report = process_report(self.process.pid)
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
                raise AssertionError(
                    f"wsgidev did not stop on {sig}:\n{self.log()}\n{report}"
                ) from None
        return int(self.process.returncode)

    def assert_nothing_left(self) -> None:
        """No Apache or daemon process, no bound port, no server root."""
        survivors = {pid for pid in self.apache_pids if alive(pid)}
        assert not survivors, f"processes left running: {survivors}\n{self.log()}"
        assert port_is_free(self.port), f"port {self.port} still bound"
        assert not any(self.tmpdir.iterdir()), f"left in TMPDIR: {list(self.tmpdir.iterdir())}"

    def kill_everything(self) -> None:
        """Last-resort cleanup of what this test started (by pid, never by name)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        for pid in self.apache_pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


class ManagePyServer(WsgidevServer):
    """`python manage.py runwsgidev 127.0.0.1:PORT ...` in a Django project; output piped, with
    no NO_COLOR, so a test sees what a pipe gets."""

    pipe_colours = True

    def command(self) -> list[str]:
        """manage.py runwsgidev with the free port as its addrport."""
        addrport = f"127.0.0.1:{self.port}"
        return [sys.executable, "manage.py", "runwsgidev", addrport, *self.server_args]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder holding the import-recording test app as app.py."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(APP))
    return folder


@pytest.fixture
def django_project(tmp_path: Path) -> Path:
    """A fresh copy of tests/djangoproject: testsite settings, testapp views, wsgidev.django."""
    folder = tmp_path / "site"
    shutil.copytree(REPO / "tests" / "djangoproject", folder)
    return folder


@pytest.fixture
def start_server(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WsgidevServer]]:
    """Factory: start_server(project, *args, env={}) -> a running WsgidevServer; always torn down.
    manage_py=True runs `manage.py runwsgidev` in a Django project instead of `wsgidev start`."""
    servers: list[WsgidevServer] = []

    def factory(
        folder: Path,
        *args: str,
        env: dict[str, str] | None = None,
        wait: bool = True,
        manage_py: bool = False,
        tmp_prefix: str = "wsgidev-test-",
    ) -> WsgidevServer:
        log_dir = tmp_path / f"server{len(servers)}"
        log_dir.mkdir()
        server_class = ManagePyServer if manage_py else WsgidevServer
        server = server_class(folder, log_dir, list(args), env or {}, tmp_prefix)
        servers.append(server)
        return server.start(wait=wait)

    yield factory
    try:
        # Newest first: a later server may share an earlier one's TMPDIR.
        for server in reversed(servers):
            if server.process is not None and server.process.poll() is None:
                assert server.stop() == 0, server.log()
        for server in servers:
            server.assert_nothing_left()
    finally:
        for server in servers:
            server.kill_everything()
            sys.stdout.write(f"--- wsgidev log ({server.url}) ---\n{server.log()}\n")


class TerminalServer:
    """`wsgidev start` (or `manage.py runwsgidev`) on a pseudo-terminal that is its controlling
    terminal (pexpect), as a developer runs it: Ctrl-C and pdb behave as they do for one.
    Everything it printed is kept; teardown leaves nothing running."""

    def __init__(
        self, project: Path, args: list[str], env: dict[str, str], manage_py: bool = False
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmpdir = Path(tempfile.mkdtemp(prefix="wsgidev-test-"))
        base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "PYTHONBREAKPOINT")}
        full_env = {**base, "TMPDIR": str(self.tmpdir), "TERM": "xterm", **env}
        if manage_py:
            command = [sys.executable, "manage.py", "runwsgidev", f"127.0.0.1:{self.port}", *args]
        else:
            command = wsgidev_command("start", *args, "--port", str(self.port))
        self.transcript = io.StringIO()
        self.child = pexpect.spawn(
            command[0],
            command[1:],
            cwd=str(project),
            env=full_env,
            encoding="utf-8",
            codec_errors="replace",
            timeout=20,
            dimensions=(50, 250),
        )
        self.child.logfile_read = self.transcript
        self.pids: set[int] = set()

    def expect(self, pattern: str, timeout_s: float = 20) -> str:
        """Wait until the regular expression appears (after what was matched before); the
        text up to and including it."""
        try:
            self.child.expect(pattern, timeout=timeout_s)
        except (pexpect.TIMEOUT, pexpect.EOF) as exc:
            kind = "timed out" if isinstance(exc, pexpect.TIMEOUT) else "exited"
            raise AssertionError(f"{kind} waiting for {pattern!r}:\n{self.text()}") from None
        return str(self.child.before) + str(self.child.after)

    def text(self) -> str:
        """Everything printed so far."""
        return self.transcript.getvalue()

    def read_until(self, text: str, timeout_s: float = 20) -> str:
        """Read until text has been printed anywhere (lines of the two logs interleave in no
        fixed order); everything printed so far. Do not mix with expect() in one test."""
        deadline = time.monotonic() + timeout_s
        while text not in self.text():
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} after {timeout_s} s:\n{self.text()}")
            try:
                self.child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                raise AssertionError(f"exited before {text!r}:\n{self.text()}") from None
        return self.text()

    def type(self, line: str) -> None:
        """Type a line at the terminal."""
        self.child.sendline(line)

    def ctrl_c(self) -> None:
        """Press Ctrl-C."""
        self.remember_processes()
        self.child.sendintr()

    def wait_exit(self, timeout_s: float = 20) -> int:
        """The command's exit status, once it has exited."""
        self.remember_processes()
        try:
            self.child.expect(pexpect.EOF, timeout=timeout_s)
        except pexpect.TIMEOUT:
            report = process_report(self.child.pid)
            raise AssertionError(
                f"still running after {timeout_s} s:\n{self.text()}\n{report}"
            ) from None
        self.child.wait()
        return int(self.child.exitstatus if self.child.exitstatus is not None else -1)

    def remember_processes(self) -> None:
        """Note every process below the command, for the nothing-left check."""
        if self.child.isalive():
            self.pids |= descendants(self.child.pid)

    def assert_nothing_left(self) -> None:
        """No process of the server alive, the port free, no server root."""
        survivors = {pid for pid in self.pids if alive(pid)}
        assert not survivors, f"left running: {survivors}\n{self.text()}"
        wait_for(lambda: port_is_free(self.port), 5, f"port {self.port} to be free")
        assert not any(self.tmpdir.iterdir()), f"left in TMPDIR: {list(self.tmpdir.iterdir())}"

    def kill_everything(self) -> None:
        """Last-resort cleanup (by pid): the command's session, then anything below it."""
        if self.child.isalive():
            os.killpg(self.child.pid, signal.SIGKILL)
            self.child.wait()
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.child.close(force=True)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


@pytest.fixture
def terminal_server() -> Iterator[Callable[..., TerminalServer]]:
    """Factory: terminal_server(project, *args, env={}, manage_py=False) -> a TerminalServer
    whose banner is out; always torn down (Ctrl-C), nothing left."""
    servers: list[TerminalServer] = []

    def factory(
        project: Path, *args: str, env: dict[str, str] | None = None, manage_py: bool = False
    ) -> TerminalServer:
        server = TerminalServer(project, list(args), env or {}, manage_py)
        servers.append(server)
        server.expect("quit with CONTROL-C", 60)
        server.remember_processes()
        return server

    yield factory
    try:
        for server in reversed(servers):
            if server.child.isalive():
                server.ctrl_c()
                with contextlib.suppress(pexpect.TIMEOUT):
                    server.child.expect(pexpect.EOF, timeout=10)
                if server.child.isalive():  # a debugger session was open: a double press
                    server.ctrl_c()
                    server.ctrl_c()
                assert server.wait_exit() == 0, server.text()
            server.assert_nothing_left()
    finally:
        for server in servers:
            server.kill_everything()
            sys.stdout.write(f"--- terminal ({server.url}) ---\n{server.text()}\n")


# --- commands that must fail in one line -----------------------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A TMPDIR for wsgidev, to prove no server root was left."""
    folder = Path(tempfile.mkdtemp(prefix="wsgidev-bad-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run_wsgidev(cwd: Path, tmp: Path, *args: str, env: dict[str, str] | None = None):
    """Run wsgidev to completion; it must not leave children behind."""
    process = subprocess.Popen(
        wsgidev_command(*args),
        cwd=cwd,
        env={**os.environ, "TMPDIR": str(tmp), **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    out, err = process.communicate(timeout=60)
    assert not descendants(process.pid)
    return process.returncode, out, err


def assert_one_line_error(code: int, err: str, *words: str, app_traceback: bool = False) -> None:
    """The shape every user-facing failure has; only a broken app may show its own traceback."""
    assert code != 0
    assert app_traceback or "Traceback" not in err, err
    frames = [line for line in err.splitlines() if line.strip().startswith("File ")]
    assert not any("/wsgidev/" in frame for frame in frames), err
    lines = [line for line in err.splitlines() if line.startswith("wsgidev:")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
