"""The daemon's side of debugging on wsgidev's terminal: breakpoint(), pdb.set_trace(), --pdb.

A mod_wsgi daemon has no terminal: its stdin is closed to reads and its stdout is the error log.
`wsgidev start` has one, and, when it runs in a terminal, listens on a Unix socket in its private
server root (shared.DEBUG_SOCKET; wsgidev/debugbridge.py is that end). A breakpoint here connects,
says where it stopped and in which request, waits for its turn (the terminal holds one session at
a time), then runs pdb with the connection as its stdin and stdout (the session itself:
debugsession.py). The session ends when the debugger continues with no breakpoint set, quits,
or the request ends.

While a session is open, this process does not die for a reload: mod_wsgi's shutdown-timeout
is off under `wsgidev start` (it would kill the paused request), and `_Reaper` applies
--shutdown-timeout instead, counting from the moment no session is open.

Written here rather than taken from remote-pdb or rpdb: those listen on a TCP port for telnet or
nc, one process each, with no turn-taking, no request context and no Ctrl-C; what is needed is a
pdb on the terminal the server already owns, shared by every process and thread.
"""

from __future__ import annotations

import bdb
import importlib
import inspect
import os
import pdb
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any

from wsgidev.daemon import modwsgi
from wsgidev.daemon.debugsession import (
    Session,
    current,
    end_thread_session,
    sessions_open,
    wait_closed,
    wait_while_open,
)
from wsgidev.shared import events, protocol
from wsgidev.shared.spec import DebuggerSpec, WSGIApp

# Frames of these modules are not stepped into (the request wrapper below, the monitor).

_spec = DebuggerSpec()
_request = threading.local()  # method, path, thread of the request this thread serves
# The requests in the app now, by thread: what a stop past --shutdown-timeout cuts.
_running: dict[int, str] = {}
_installed = False
# In a service beside the server (wsgidev.daemon.service): its name, for the terminal's line.
service_name = ""


def install(spec: DebuggerSpec) -> None:
    """Route breakpoint() and pdb.set_trace() to the terminal, and take over shutdown-timeout."""
    global _spec, _installed
    _spec = spec
    if spec.local or _installed:
        return  # --debug: the terminal is this process's own stdin; plain pdb works
    _installed = True
    sys.breakpointhook = breakpointhook
    pdb.set_trace = set_trace
    _patch_bdb()
    if spec.shutdown_timeout_s is not None:
        modwsgi.subscribe_shutdown(_Reaper(spec.shutdown_timeout_s).stopping)


def running_requests() -> list[str]:
    """The requests this process's app is serving now ("GET /path?query")."""
    return list(_running.values())


def breakpointhook(*args: Any, **kwargs: Any) -> Any:
    """sys.breakpointhook: PYTHONBREAKPOINT is read at each call, as Python's own hook does."""
    target = os.environ.get("PYTHONBREAKPOINT", "")
    if target == "0":
        return None
    frame = sys._getframe(1)
    session = _open_session("breakpoint()", frame)
    if session is None:
        return None
    if target in ("", "pdb.set_trace"):
        session.debugger().set_trace(frame)
        return None
    try:
        hook = _import_hook(target)
    except Exception as exc:
        session.write(f"PYTHONBREAKPOINT={target} cannot be used ({exc}); pdb instead\n")
        session.debugger().set_trace(frame)
        return None
    # Another debugger (ipdb.set_trace, ...) reads sys.stdin and writes sys.stdout: in this
    # thread they are the session's while it lasts. It is told the caller's frame where it
    # takes one, or it would stop in this function.
    if "frame" not in kwargs and _takes_frame(hook):
        kwargs["frame"] = frame
    session.route_stdio()
    return hook(*args, **kwargs)


def set_trace(*, header: str | None = None) -> None:
    """pdb.set_trace() inside a daemon: a session on wsgidev's terminal."""
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        return
    frame = sys._getframe(1)
    session = _open_session("pdb.set_trace()", frame)
    if session is None:
        return
    debugger = session.debugger()
    if header is not None:
        debugger.message(header)
    debugger.set_trace(frame)


def post_mortem(exc: BaseException) -> None:
    """--pdb: a session at the frame that raised exc (the request's 500 goes out after it)."""
    tb = exc.__traceback__
    if not _spec.post_mortem or tb is None or isinstance(exc, bdb.BdbQuit | KeyboardInterrupt):
        return
    if getattr(_request, "debugged", None) is exc:
        return  # Django's signal opened it already; the exception is on its way out
    _request.debugged = exc
    last = tb
    while last.tb_next is not None:
        last = last.tb_next
    if _spec.local:  # --debug: this process has the terminal
        traceback.print_exception(type(exc), exc, tb)
        pdb.post_mortem(tb)
        return
    summary = (f"{type(exc).__name__}: {exc}".splitlines() or [type(exc).__name__])[0][:200]
    session = _open_session("post-mortem", last.tb_frame, exception=summary)
    if session is None:
        return
    try:
        session.write("".join(traceback.format_exception(type(exc), exc, tb)))
        debugger = session.debugger()
        debugger.reset()
        debugger.interaction(None, tb)
    except bdb.BdbQuit:
        pass
    finally:
        session.end()


def wrap(application: WSGIApp, django: bool) -> WSGIApp:
    """The app, with the request noted per thread (the terminal says which request stopped), a
    session ended with its request, and --pdb's post-mortem for exceptions the app lets out."""
    if django and _spec.post_mortem:
        _connect_django()

    def debuggable(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        _request.method = environ.get("REQUEST_METHOD", "")
        _request.path = environ.get("PATH_INFO", "") + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else ""
        )
        _request.thread = environ.get("mod_wsgi.thread_id")
        _running[threading.get_ident()] = f"{_request.method} {_request.path}"
        try:
            result = application(environ, start_response)
        except BaseException as exc:
            post_mortem(exc)
            _request_over()
            raise
        if current() is None and not _spec.post_mortem:
            _request_over()
            return result  # as it is: mod_wsgi's file wrapper keeps its sendfile
        return _Finishing(result)

    return debuggable


class _Finishing:
    """A response iterable that ends the thread's session when the response is done."""

    def __init__(self, result: Iterable[bytes]) -> None:
        self._result = result

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._result
        except BaseException as exc:
            post_mortem(exc)
            raise

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            _request_over()


def _request_over() -> None:
    _running.pop(threading.get_ident(), None)
    session = current()
    if session is not None:
        sys.settrace(None)  # a breakpoint set in this request does not stop the next one
        session.end()
    _request.debugged = None


def _connect_django() -> None:
    from django.core.signals import got_request_exception

    def opened(sender: Any, request: Any = None, **kwargs: Any) -> None:
        exc = sys.exc_info()[1]
        if exc is not None:
            post_mortem(exc)

    got_request_exception.connect(opened, weak=False, dispatch_uid="wsgidev-post-mortem")


class _Reaper:
    """--shutdown-timeout for a stopping daemon, paused while a debugger session is open."""

    def __init__(self, timeout_s: int) -> None:
        self.timeout_s = timeout_s
        self.reason = ""

    def stopping(self, name: str = "", **event: Any) -> None:
        """mod_wsgi's process_stopping: before it waits for the requests in flight."""
        self.reason = str(event.get("shutdown_reason", ""))
        if sessions_open():
            # The terminal says so; the process exits once the session and its request end.
            events.emit(
                protocol.DebugHeld(
                    reason=str(event.get("shutdown_reason", "")), group=modwsgi.process_group()
                )
            )
        if self.timeout_s:
            threading.Thread(target=self._run, name="wsgidev-reaper", daemon=True).start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            if wait_while_open():  # counted again from the end of the last session
                deadline = max(deadline, time.monotonic() + self.timeout_s)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            wait_closed(left)
        # wsgidev says which requests are cut (their clients get the 502 page that says why).
        events.emit(
            protocol.Cut(
                requests=tuple(running_requests()),
                timeout_s=self.timeout_s,
                shutdown_reason=self.reason,
                reason=f"requests still running {self.timeout_s} s after this process was told "
                "to stop (--shutdown-timeout); ending it",
            )
        )
        os._exit(1)


def _patch_bdb() -> None:
    """End the thread's session when its debugger continues with no breakpoint, or quits: any
    bdb-based debugger (pdb, ipdb, pudb), so other debuggers than pdb end their session too."""
    if getattr(bdb.Bdb, "_wsgidev_patched", False):
        return
    original_continue, original_quit = bdb.Bdb.set_continue, bdb.Bdb.set_quit

    def set_continue(self: bdb.Bdb) -> None:
        original_continue(self)
        if not self.breaks:
            end_thread_session()

    def set_quit(self: bdb.Bdb) -> None:
        original_quit(self)
        end_thread_session()

    bdb.Bdb.set_continue = set_continue  # type: ignore[method-assign]
    bdb.Bdb.set_quit = set_quit  # type: ignore[method-assign]
    bdb.Bdb._wsgidev_patched = True  # type: ignore[attr-defined]


def _open_session(kind: str, frame: FrameType, exception: str = "") -> Session | None:
    request = {name: getattr(_request, name, None) for name in ("method", "path", "thread")}
    request["service"] = service_name
    return Session.open(kind, frame, _spec.socket_path, request, exception)


def _import_hook(target: str) -> Callable[..., Any]:
    module_name, _, name = target.rpartition(".")
    module = importlib.import_module(module_name or "builtins")
    hook = getattr(module, name)
    if not callable(hook):
        raise TypeError(f"{target} is not callable")
    return hook  # type: ignore[no-any-return]


def _takes_frame(hook: Callable[..., Any]) -> bool:
    try:
        return "frame" in inspect.signature(hook).parameters
    except (TypeError, ValueError):
        return False
