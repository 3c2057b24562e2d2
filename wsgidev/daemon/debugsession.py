"""A debugger session on wsgidev's terminal, from the daemon's side: the connection as pdb's
stdin and stdout, turn-taking, Ctrl-C, and how many sessions this process has open.

The messages are JSON lines (shared.send_message/read_message): the daemon sends ``hello`` (where
and which request), then ``out`` text and ``read`` when pdb wants a line; the terminal answers
``start`` when it is this session's turn, then ``line``, ``interrupt`` or ``eof``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pdb
import queue
import socket
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import IO, Any, cast

from wsgidev.shared.processes import short_path
from wsgidev.shared.sessionwire import read_message, send_message

# Frames of these modules are not stepped into (the request wrapper, the monitor).
_SKIP = ["wsgidev.*"]
# A Ctrl-C that comes while pdb runs a command waits this long for pdb to ask for a line (it was
# printing); after that pdb is busy evaluating, and the KeyboardInterrupt is raised in it.
INTERRUPT_BUSY_S = 0.5

_current = threading.local()  # the session open in this thread, if any
_open = threading.Condition()  # guards _open_count: sessions connected (waiting or running)
_open_count = 0


def sessions_open() -> int:
    """How many debugger sessions this process has, waiting for the terminal or running."""
    with _open:
        return _open_count


def wait_while_open() -> bool:
    """Block while a session is open; whether there was one."""
    waited = False
    with _open:
        while _open_count:
            waited = True
            _open.wait()
    return waited


def wait_closed(timeout_s: float) -> None:
    """Wait up to timeout_s for a change in the open sessions."""
    with _open:
        _open.wait(timeout_s)


def current() -> Session | None:
    """This thread's open session."""
    session: Session | None = getattr(_current, "session", None)
    return session


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
    def open(
        cls,
        kind: str,
        frame: FrameType,
        socket_path: str | None,
        request: dict[str, Any],
        exception: str = "",
    ) -> Session | None:
        """Connect to the terminal at socket_path and wait for this session's turn; None (and
        one log line) where there is none. request: method, path and thread, for the line."""
        where = f"{short_path(frame.f_code.co_filename)}:{frame.f_lineno}"
        current: Session | None = getattr(_current, "session", None)
        if current is not None:
            return current  # a breakpoint in code pdb runs: the terminal is this thread's already
        if socket_path is None:
            _skipped(kind, where, "no wsgidev terminal (this Apache was not started by wsgidev)")
            return None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(socket_path)
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
                    "thread": request.get("thread") or threading.current_thread().name,
                    "method": request.get("method", ""),
                    "path": request.get("path", ""),
                    "service": request.get("service", ""),
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


def end_thread_session() -> None:
    """End this thread's session, if it has one."""
    session = current()
    if session is not None:
        session.end()


def _skipped(kind: str, where: str, why: str) -> None:
    sys.stderr.write(f"wsgidev: {kind} at {where} skipped: {why}\n")
    sys.stderr.flush()


def _raise_in_thread(thread_id: int, exc_type: type[BaseException]) -> None:
    """Raise exc_type in another thread at its next bytecode (a Ctrl-C while pdb evaluates)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exc_type)
    )
