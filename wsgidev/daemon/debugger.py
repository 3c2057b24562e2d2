"""The daemon's side of debugging on wsgidev's terminal: breakpoint(), pdb.set_trace(), --pdb.

A mod_wsgi daemon has no terminal: its stdin is closed to reads and its stdout is the error log.
`wsgidev start` has one, and, when it runs in a terminal, listens on a Unix socket in its private
server root (shared.DEBUG_SOCKET; wsgidev/debugbridge.py is that end). A breakpoint here connects,
says where it stopped and in which request, waits for its turn (the terminal holds one session at
a time), then runs pdb with the connection as its stdin and stdout. The session ends when the
debugger continues with no breakpoint set, quits, or the request ends.

While a session is open, this process does not die for a reload: mod_wsgi's shutdown-timeout
is off under `wsgidev start` (it would kill the paused request), and `_Reaper` applies
--shutdown-timeout instead, counting from the moment no session is open.

Written here rather than taken from remote-pdb or rpdb: those listen on a TCP port for telnet or
nc, one process each, with no turn-taking, no request context and no Ctrl-C; what is needed is a
pdb on the terminal the server already owns, shared by every process and thread.
"""

from __future__ import annotations

import bdb
import contextlib
import ctypes
import importlib
import inspect
import os
import pdb
import queue
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import IO, Any, cast

from wsgidev import events
from wsgidev.shared import DebuggerSpec, WSGIApp, read_message, send_message

# Frames of these modules are not stepped into (the request wrapper below, the monitor).
_SKIP = ["wsgidev.*"]
# A Ctrl-C that comes while pdb runs a command waits this long for pdb to ask for a line (it was
# printing); after that pdb is busy evaluating, and the KeyboardInterrupt is raised in it.
INTERRUPT_BUSY_S = 0.5

_spec = DebuggerSpec()
_request = threading.local()  # method, path, thread of the request this thread serves
_current = threading.local()  # the session open in this thread, if any
_open = threading.Condition()  # guards _open_count: sessions connected (waiting or running)
_open_count = 0
_installed = False


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
        with contextlib.suppress(ImportError, AttributeError):
            import mod_wsgi

            mod_wsgi.subscribe_shutdown(_Reaper(spec.shutdown_timeout_s).stopping)


def sessions_open() -> int:
    """How many debugger sessions this process has, waiting for the terminal or running."""
    with _open:
        return _open_count


def breakpointhook(*args: Any, **kwargs: Any) -> Any:
    """sys.breakpointhook: PYTHONBREAKPOINT is read at each call, as Python's own hook does."""
    target = os.environ.get("PYTHONBREAKPOINT", "")
    if target == "0":
        return None
    frame = sys._getframe(1)
    session = Session.open("breakpoint()", frame)
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
    session = Session.open("pdb.set_trace()", frame)
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
    session = Session.open("post-mortem", last.tb_frame, exception=summary)
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
        try:
            result = application(environ, start_response)
        except BaseException as exc:
            post_mortem(exc)
            _request_over()
            raise
        if getattr(_current, "session", None) is None and not _spec.post_mortem:
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
    session = getattr(_current, "session", None)
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


class Session:
    """One debugger session on wsgidev's terminal: the connection, as a stdin and a stdout."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._stream = sock.makefile("rb")
        self._send_lock = threading.Lock()
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reading = False
        self._interrupt_lock = threading.Lock()
        self._interrupt_pending = False
        self._thread_id = threading.get_ident()
        self._ended = False
        self._saved_stdio: tuple[Any, Any] | None = None
        self.stdin = _SessionInput(self)
        self.stdout = _SessionOutput(self)

    @classmethod
    def open(cls, kind: str, frame: FrameType, exception: str = "") -> Session | None:
        """Connect to the terminal and wait for this session's turn; None (and one log line)
        where there is no terminal."""
        where = f"{_short(frame.f_code.co_filename)}:{frame.f_lineno}"
        if _spec.socket_path is None:
            _skipped(kind, where, "no wsgidev terminal (this Apache was not started by wsgidev)")
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(_spec.socket_path)
        except OSError:
            sock.close()
            _skipped(kind, where, "wsgidev start has no terminal (output not a tty)")
            return None
        global _open_count
        with _open:
            _open_count += 1
        session = cls(sock)
        try:
            send_message(
                sock,
                {
                    "op": "hello",
                    "pid": os.getpid(),
                    "thread": getattr(_request, "thread", None) or threading.current_thread().name,
                    "method": getattr(_request, "method", ""),
                    "path": getattr(_request, "path", ""),
                    "where": where,
                    "kind": kind,
                    "exception": exception,
                },
            )
            # Blocks while another session has the terminal: the request waits its turn.
            answer = read_message(session._stream)
        except OSError:
            answer = None
        if answer is None or answer.get("op") != "start":
            session.end()
            return None
        _current.session = session
        threading.Thread(target=session._receive, name="wsgidev-debug-in", daemon=True).start()
        return session

    def debugger(self) -> pdb.Pdb:
        """A pdb talking over this session."""
        stdin, stdout = cast(IO[str], self.stdin), cast(IO[str], self.stdout)
        return pdb.Pdb(stdin=stdin, stdout=stdout, skip=_SKIP, nosigint=True)

    def write(self, text: str) -> None:
        """Text for the terminal."""
        if text and not self._ended:
            with self._send_lock, contextlib.suppress(OSError):
                send_message(self._sock, {"op": "out", "text": text})

    def readline(self) -> str:
        """A line typed at the terminal ('' at its end); KeyboardInterrupt for a Ctrl-C."""
        if self._ended:
            return ""
        with self._interrupt_lock:
            self._reading = True
            if self._interrupt_pending:  # Ctrl-C came while pdb was printing
                self._interrupt_pending = False
                self._reading = False
                raise KeyboardInterrupt
        try:
            with self._send_lock:
                send_message(self._sock, {"op": "read"})
            message = self._inbox.get()
        except OSError:
            return ""
        finally:
            self._reading = False
        if message is None:
            return ""
        if message.get("op") == "interrupt":
            raise KeyboardInterrupt
        if message.get("op") != "line":
            return ""  # Ctrl-D: pdb takes the end of input as quit
        return str(message.get("text", ""))

    def route_stdio(self) -> None:
        """Make sys.stdin and sys.stdout this session's, in this thread, until it ends."""
        _ThreadStream.install()
        _current.stdio = (self.stdin, self.stdout)

    def end(self) -> None:
        """Give the terminal back; the request goes on (or gets its error page)."""
        global _open_count
        if self._ended:
            return
        self._ended = True
        if getattr(_current, "session", None) is self:
            _current.session = None
            _current.stdio = None
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with _open:
            _open_count -= 1
            _open.notify_all()

    def _receive(self) -> None:
        """Read the terminal's messages into the inbox; a Ctrl-C between two reads is kept for
        the next read, or, if pdb is still busy a moment later (evaluating something slow),
        raised in its thread, as a terminal's Ctrl-C would."""
        while True:
            try:
                message = read_message(self._stream)
            except (OSError, ValueError):
                message = None
            if message is not None and message.get("op") == "interrupt":
                with self._interrupt_lock:
                    if not self._reading:
                        self._interrupt_pending = True
                        timer = threading.Timer(INTERRUPT_BUSY_S, self._interrupt_busy)
                        timer.daemon = True
                        timer.start()
                        continue
            self._inbox.put(message)
            if message is None:
                return

    def _interrupt_busy(self) -> None:
        with self._interrupt_lock:
            if self._interrupt_pending and not self._reading and not self._ended:
                self._interrupt_pending = False
                _raise_in_thread(self._thread_id, KeyboardInterrupt)


class _SessionInput:
    """The session as a text stdin (pdb reads lines with readline when given a stdin)."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, session: Session) -> None:
        self._session = session

    def readline(self, size: int = -1) -> str:
        return self._session.readline()

    def read(self, size: int = -1) -> str:
        return self._session.readline()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a wsgidev debugger session has no file descriptor")

    def close(self) -> None:
        pass


class _SessionOutput:
    """The session as a text stdout."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, session: Session) -> None:
        self._session = session

    def write(self, text: str) -> int:
        self._session.write(text)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("a wsgidev debugger session has no file descriptor")


class _ThreadStream:
    """sys.stdin/sys.stdout for a debugger other than pdb: the session's in the thread that has
    one, mod_wsgi's everywhere else."""

    def __init__(self, original: Any, index: int) -> None:
        self._original = original
        self._index = index

    @classmethod
    def install(cls) -> None:
        if not isinstance(sys.stdout, cls):
            sys.stdin = cls(sys.stdin, 0)
            sys.stdout = cls(sys.stdout, 1)

    def _target(self) -> Any:
        stdio = getattr(_current, "stdio", None)
        return stdio[self._index] if stdio else self._original

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


class _Reaper:
    """--shutdown-timeout for a stopping daemon, paused while a debugger session is open."""

    def __init__(self, timeout_s: int) -> None:
        self.timeout_s = timeout_s

    def stopping(self, name: str = "", **event: Any) -> None:
        """mod_wsgi's process_stopping: before it waits for the requests in flight."""
        if sessions_open():
            # The terminal says so; the process exits once the session and its request end.
            events.emit(
                "debug-held", reason=str(event.get("shutdown_reason", "")), group=_process_group()
            )
        if self.timeout_s:
            threading.Thread(target=self._run, name="wsgidev-reaper", daemon=True).start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while True:
            with _open:
                while _open_count:
                    _open.wait()
                    deadline = max(deadline, time.monotonic() + self.timeout_s)
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                _open.wait(left)
        sys.stderr.write(
            f"wsgidev: requests still running {self.timeout_s} s after this process was told "
            "to stop (--shutdown-timeout); ending it\n"
        )
        sys.stderr.flush()
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
            _end_thread_session()

    def set_quit(self: bdb.Bdb) -> None:
        original_quit(self)
        _end_thread_session()

    bdb.Bdb.set_continue = set_continue  # type: ignore[method-assign]
    bdb.Bdb.set_quit = set_quit  # type: ignore[method-assign]
    bdb.Bdb._wsgidev_patched = True  # type: ignore[attr-defined]


def _end_thread_session() -> None:
    session = getattr(_current, "session", None)
    if session is not None:
        session.end()


def _process_group() -> str | None:
    try:
        import mod_wsgi

        return getattr(mod_wsgi, "process_group", None) or None
    except ImportError:
        return None


def _skipped(kind: str, where: str, why: str) -> None:
    sys.stderr.write(f"wsgidev: {kind} at {where} skipped: {why}\n")
    sys.stderr.flush()


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


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Raise exc_type in another thread at its next bytecode (a Ctrl-C while pdb evaluates)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )


def _short(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
