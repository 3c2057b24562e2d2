"""Run Apache in the foreground: render, start, stream logs, handle signals, clean up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

from wsgidev import render
from wsgidev.banner import banner, daemons_warning, silent_mounts
from wsgidev.debugbridge import DebugBridge
from wsgidev.errors import WsgidevError
from wsgidev.livereload import LiveReload
from wsgidev.logstream import LogPrinter
from wsgidev.options import Options
from wsgidev.privileges import child_setup, daemon_ids
from wsgidev.proctitle import hide_env_values
from wsgidev.rootdir import check_config, server_root, write_config
from wsgidev.rootwatch import watch_root
from wsgidev.runplan import RunPlan, check_address, prepare
from wsgidev.services import Supervisor
from wsgidev.shared.serverroot import (
    APP_ENV_VAR,
    DEBUG_SOCKET,
    LIVE_SOCKET,
)
from wsgidev.shared.spec import DEV_SETTLE_S

STARTUP_DEADLINE_S = 30.0
STOP_CHECK_S = 0.2  # how often a wait for the app's first import looks for a stop request
# Apache's parent waits for children and daemons; allow their shutdown-timeout and a margin.
STOP_MARGIN_S = 5.0
# --debug: how long Apache's single process gets to stop before SIGKILL.
DEBUG_STOP_S = 3.0
# How long a stop waits for the requests it ended in pdb to be answered (their error page).
PAUSED_ANSWER_S = 2.0


def app_environ(prepared: RunPlan) -> dict[str, str]:
    """Apache's environment: the --env values ride in it to the daemons (APP_ENV_VAR), which
    inherit it; the entry script, which the daemon user can read, does not hold them."""
    values = json.dumps(dict(prepared.env))
    return {**prepared.apache.environ(), APP_ENV_VAR: values}


class Server:
    """One Apache process tree in the foreground, its logs streamed through a LogPrinter."""

    def __init__(self, prepared: RunPlan, conf: Path, err: TextIO) -> None:
        self.prepared = prepared
        self.conf = conf
        self.stop_requested = threading.Event()
        self.root_gone = threading.Event()
        self._wake = threading.Event()
        colour = err.isatty() and "NO_COLOR" not in os.environ
        self.log = LogPrinter(
            err,
            processes=prepared.options.processes,
            colour=colour,
            verbose=prepared.options.log_level in ("info", "debug"),
            reload=prepared.options.reload,
        )
        # The banner names these: the daemons' line for each would say it again.
        self.log.silent_mounts.update(m.point for m in silent_mounts(prepared))
        self.process: subprocess.Popen[bytes] | None = None
        self.readers: list[threading.Thread] = []
        self.bridge: DebugBridge | None = None
        self.live: LiveReload | None = None

    def open_live_reload(self, root: Path) -> None:
        """Serve the browsers' event stream, where a path of it is proxied here."""
        paths = self.prepared.stream_paths
        if not paths:
            return
        self.live = LiveReload(root / LIVE_SOCKET, self.prepared.options.poll_interval_s)
        self.live.start(daemon_ids(self.prepared.run_as))
        self.log.tracker.subscribe(self.live)
        if self.prepared.options.live_reload:
            self.live.watch_static(self.prepared.static)

    def open_debugger(self, root: Path, out: TextIO) -> None:
        """Take the daemons' debugger sessions on this terminal, where there is one."""
        options = self.prepared.options
        if options.debug or not DebugBridge.has_terminal(out):
            return
        self.bridge = DebugBridge(root / DEBUG_SOCKET, self.log, self._wake.set, out)
        self.bridge.open(daemon_ids(self.prepared.run_as))

    def start(self) -> None:
        """Start Apache in its own session, so terminal signals reach wsgidev alone; in --debug,
        in wsgidev's own process group with the terminal as stdin and stdout, for pdb."""
        options = self.prepared.options
        command = [self.prepared.apache.httpd, "-f", str(self.conf), "-DFOREGROUND"]
        if options.debug:
            # One process, no daemons: what `httpd -X` does, without -X's DEBUG define.
            command.append("-DONE_PROCESS")
        self.process = subprocess.Popen(
            command,
            stdin=None if options.debug else subprocess.DEVNULL,
            stdout=None if options.debug else subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=not options.debug,
            # The daemons' home= is the working dir; in --debug the app runs in Apache itself.
            cwd=options.working_dir if options.debug else None,
            env=app_environ(self.prepared),
            preexec_fn=child_setup(self.prepared.run_as),
        )
        assert self.process.stderr is not None
        streams = [(self.process.stderr, self.log.error_line)]
        if self.process.stdout is not None:
            streams.append((self.process.stdout, self.log.access_line))
        for stream, handler in streams:
            reader = threading.Thread(target=_pump, args=(stream, handler), daemon=True)
            reader.start()
            self.readers.append(reader)

    def watch_root(self) -> None:
        """Stop serving, with one line, if the server root is deleted (see wsgidev/rootwatch.py)."""

        def gone() -> None:
            self.root_gone.set()
            self._wake.set()

        watch_root(self.conf.parent, render.ENTRY_SCRIPT_NAME, gone)

    def wait_listening(self) -> bool:
        """True once Apache accepts connections; False if it exited or the deadline passed."""
        options = self.prepared.options
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            if self.exited():
                return False
            try:
                with socket.create_connection((options.bare_host, options.port), 0.2):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def exited(self) -> bool:
        """True once the Apache parent has exited."""
        return self.process is None or self.process.poll() is not None

    def request_stop(self) -> None:
        """Make serve() return (from a signal handler)."""
        self.log.stopping = True
        self.stop_requested.set()
        self._wake.set()

    def serve(self) -> int:
        """Block until a stop signal or Apache exits; return the exit status for wsgidev."""
        assert self.process is not None
        process = self.process

        def watch_exit() -> None:
            process.wait()
            self._wake.set()

        # Waiting on Apache in a thread, not polling it: an idle server costs no wake-ups here.
        threading.Thread(target=watch_exit, name="wsgidev-apache-exit", daemon=True).start()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self.stop_requested.is_set():
                return 0
            if process.poll() is not None:
                return self._died()
            if self.root_gone.is_set():
                self.log.say(
                    f"wsgidev: the server root {self.conf.parent} was deleted while the server ran "
                    f"({render.ENTRY_SCRIPT_NAME}, the daemons' sockets and the hand-over files "
                    "were in it), so every request would get 403: stopping; start wsgidev again"
                )
                self.log.muted = True  # what Apache and the daemons say about it as they stop
                return 1
            if self.bridge is not None:
                # Debugger sessions run here, in the main thread, where Ctrl-C reaches input().
                self.bridge.run_waiting()

    def interrupt(self) -> None:
        """Ctrl-C: at a debugger prompt it interrupts the command; else it stops the server."""
        if self.bridge is not None and self.bridge.interrupt():
            self.bridge.break_input()
            return
        self.request_stop()  # first: break_input() raises out of this handler
        if self.bridge is not None:
            self.bridge.break_input()

    def _died(self) -> int:
        self._drain()
        assert self.process is not None
        errors = self.log.apache_errors
        code = self.process.returncode
        # A signal is the reason whatever Apache logged before it (an error hours ago).
        if code < 0:
            try:
                reason = f"killed by signal {-code} ({signal.Signals(-code).name})"
            except ValueError:
                reason = f"killed by signal {-code}"
        elif errors:
            reason = errors[-1]
        else:
            reason = f"exit status {code}"
        self.log.write(f"wsgidev: Apache stopped by itself: {reason}")
        return 1

    def stop(self) -> None:
        """SIGTERM Apache (it stops its children and daemons), then SIGKILL what is left."""
        process = self.process
        self.log.stopping = True
        if self.bridge is not None:
            cut_at = self.bridge.cut_at  # a double Ctrl-C ended a session on the terminal
            since = self.log.access_count if cut_at is None else cut_at
            # A request paused in pdb reads the end of input and goes on to its error page:
            # Apache answers it before it stops, so that its client gets what the log says.
            ended = [*self.bridge.cut_requests, *self.bridge.close()]
            if ended:
                self.log.wait_answered(ended, since, PAUSED_ANSWER_S)
        if self.live is not None:
            self.live.close()
        if process is None:
            return
        timeout = self.prepared.options.shutdown_timeout_s + STOP_MARGIN_S
        if self.prepared.options.debug:
            # One process in wsgidev's own group (the terminal's Ctrl-C reached it too); a
            # request paused in pdb never finishes, so do not wait long for it.
            if process.poll() is None:
                process.terminate()
                with suppress(subprocess.TimeoutExpired):
                    process.wait(DEBUG_STOP_S)
            if process.poll() is None:
                process.kill()
                process.wait(5)
            self._drain()
            return
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        # Apache's session id is its pid: whatever is left in that group is ours to end.
        _signal_group(process.pid, signal.SIGKILL)
        if process.poll() is None:
            process.wait(5)
        _wait_group_gone(process.pid, 5.0)
        self._drain()

    def _drain(self) -> None:
        for reader in self.readers:
            reader.join(2.0)


def _pump(stream: IO[bytes], handler: object) -> None:
    assert callable(handler)
    for raw in iter(stream.readline, b""):
        handler(raw.decode("utf-8", "replace"))
    stream.close()


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def _require_app_imports(server: Server) -> None:
    """Without the monitor nothing would bring a broken app back: fail at once instead. A stop
    (Ctrl-C, SIGTERM) while the app still imports is heard at once: serve() then returns."""
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while not server.log.first_ready.wait(STOP_CHECK_S):
        if server.stop_requested.is_set() or time.monotonic() > deadline:
            return
    if server.log.import_error:
        raise WsgidevError(
            f"the app failed to import: {server.log.import_error}",
            "fix the code and start again (without --no-reload the server waits for the fix)",
        )


@contextmanager
def _stop_signals(server: Server) -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP stop the server (Ctrl-C at a debugger prompt interrupts the
    command instead, unless pressed twice); SIGWINCH (a terminal resize) is ignored."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT:
            server.interrupt()
        else:
            server.request_stop()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, handler) for sig in handled}
    # Apache reads SIGWINCH as graceful-stop; it runs in its own session, so a resize never
    # reaches it, and wsgidev itself has nothing to do on one.
    previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, signal.SIG_IGN)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def start_services(
    prepared: RunPlan, out: TextIO, root: Path, *, debugger: bool
) -> Supervisor | None:
    """The services beside the server, started once it listens (wsgidev/services.py); root:
    the server root (its services/ folder holds what their standbys read); debugger: whether
    the terminal serves the debugger socket there."""
    if not prepared.services:
        return None
    from wsgidev.runplan import search_path

    options = prepared.options
    config = {
        "reload": options.reload,
        "settle_s": DEV_SETTLE_S if options.reload_settle_s is None else options.reload_settle_s,
        "exclude": list(options.exclude),
        "watch": [str(Path(options.working_dir, w)) for w in options.watch],
        "backend": options.reload_backend,
        "poll_interval_s": options.poll_interval_s,
        "debug_socket": str(root / DEBUG_SOCKET) if debugger else None,
        "shutdown_timeout_s": options.shutdown_timeout_s,
    }

    state_dir = root / "services"
    state_dir.mkdir(mode=0o700, exist_ok=True)
    if prepared.procfile:
        web = "; its web entry is this server" if prepared.procfile_web else ""
        out.write(
            f"Services from {prepared.procfile}{web} (--procfile off: none): "
            f"{', '.join(spec.name for spec in prepared.services)}\n"
        )
    supervisor = Supervisor(
        list(prepared.services),
        out,
        cwd=Path(prepared.options.working_dir),
        # Their print()s reach the terminal as they are made, as on a terminal of their own.
        env={**os.environ, **dict(prepared.env), "PATH": search_path(), "PYTHONUNBUFFERED": "1"},
        colour=out.isatty() and "NO_COLOR" not in os.environ,
        shutdown_timeout_s=prepared.options.shutdown_timeout_s,
        path=search_path(),
        service_config=config,
        state_dir=state_dir,
    )
    supervisor.start()
    return supervisor


def run(options: Options, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`wsgidev start`: serve until stopped; 0 on a requested stop."""
    if not hide_env_values(options.env):
        err.write(
            "wsgidev: warning: the --env values stay visible to other local users in `ps`: "
            "pip install 'wsgidev[hide-env]' to hide them, or use --env-file\n"
        )
    prepared = prepare(options)
    options = prepared.options
    check_address(options.host, 0)  # --host is an address of this machine (port 0: any free)
    low = [p for p in (options.port, prepared.tls.port) if p is not None and p < 1024]
    if low and prepared.run_as.mode == "userns":
        raise WsgidevError(
            f"port {low[0]} needs root's privileges, which Apache does not have in wsgidev's "
            "user namespace",
            "pass a port above 1023 (e.g. --port 8000), or --user NAME for a classic root start",
        )
    too_many = daemons_warning(options, os.cpu_count() or 1)
    if too_many:
        err.write(f"wsgidev: warning: {too_many}\n")
    if options.bare_host not in ("127.0.0.1", "::1", "localhost"):
        err.write(
            f"wsgidev: warning: listening on {options.host}: other machines can reach this "
            "development server (and its debugger pages); use --host 127.0.0.1 to keep it local\n"
        )

    def check_ports() -> None:
        check_address(options.host, options.port)
        if prepared.tls.port is not None:
            check_address(options.host, prepared.tls.port, flag="--https")

    if options.server_root:
        # A folder the user named may be a running server's (started twice by mistake): its
        # files and locks are not rewritten before the busy port is found.
        check_ports()
    with server_root(options) as root:
        conf = write_config(prepared, root)
        check_config(prepared, conf)  # the --include files' lines are the user's input too
        if not options.server_root:
            # What the machine has, after what the user typed: a bad value is named even
            # while the port is busy (a user's 8000 often is).
            check_ports()
        server = Server(prepared, conf, err)
        services: Supervisor | None = None
        with _stop_signals(server):
            try:
                server.open_debugger(root, out)
                server.open_live_reload(root)
                server.watch_root()
                server.start()
                if not server.wait_listening():
                    if server.stop_requested.is_set():
                        return 0
                    server.stop()
                    reason = server.log.apache_errors[-1:] or ["it did not start listening"]
                    raise WsgidevError(
                        f"Apache failed to start: {reason[0]}",
                        "see the log above; `wsgidev doctor` checks the setup",
                    )
                out.write(banner(prepared, debugger=server.bridge is not None) + "\n")
                out.flush()
                services = start_services(prepared, out, root, debugger=server.bridge is not None)
                if services is not None:  # reload lines name the services a save restarted
                    server.log.services_restarted_by = services.restarted_by
                if not options.reload:
                    _require_app_imports(server)
                return server.serve()
            finally:
                # The services' graceful stops (a worker's tasks) run while Apache stops.
                asked = services.begin_stop() if services is not None else ([], 0.0)
                try:
                    server.stop()
                finally:
                    if services is not None:
                        services.finish_stop(*asked)
