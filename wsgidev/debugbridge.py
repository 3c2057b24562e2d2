"""The terminal's end of debugger sessions: the daemons' breakpoints, one at a time, here.

wsgidev/daemon/debugger.py is the other end. When `wsgidev start` runs in a terminal it listens
on a Unix socket in its private server root; a daemon thread that stops at a breakpoint connects,
says where it stopped, and waits. Sessions take the terminal in the order they came; the main
thread relays each one (pdb's output to stdout, typed lines back, read with `input()`, so GNU
readline gives line editing and history), and while one is open the log printer holds back
access lines and the app's output, so the prompt is not buried.

Ctrl-C at the prompt interrupts what is being typed, as in a terminal pdb; a second Ctrl-C
within DOUBLE_PRESS_S, or one with no session open, stops the server (server.py decides).
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import sys
import termios
import threading
import time
from collections import deque
from pathlib import Path
from typing import IO, Any, TextIO

from wsgidev.logstream import LogPrinter
from wsgidev.shared.sessionwire import read_message, send_message

DOUBLE_PRESS_S = 1.0
HELLO_TIMEOUT_S = 5.0
_INTERRUPTED = object()


class _Waiting:
    """A daemon thread stopped at a breakpoint (or a post-mortem), waiting for the terminal."""

    def __init__(self, sock: socket.socket, stream: IO[bytes], hello: dict[str, Any]) -> None:
        self.sock = sock
        self.stream = stream
        self.hello = hello

    def request(self) -> str:
        method, path = self.hello.get("method"), self.hello.get("path")
        if self.hello.get("service"):  # a service beside the server (wsgidev/services.py)
            return f"service {self.hello['service']}"
        return f"{method} {path}" if method else "code outside a request"

    def describe(self) -> str:
        """Which request, process and thread stopped, and where."""
        hello = self.hello
        what = hello.get("kind", "breakpoint()")
        if hello.get("exception"):
            what = f"{hello['exception']}: post-mortem"
        return (
            f"{self.request()} (process {hello.get('pid')}, thread {hello.get('thread')}) "
            f"stopped at {hello.get('where')} [{what}]"
        )

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class DebugBridge:
    """Accepts the daemons' debugger sessions and runs them on this terminal, one at a time."""

    def __init__(self, path: Path, log: LogPrinter, wake: Any, out: TextIO = sys.stdout) -> None:
        self.path = path
        self.log = log
        self._wake = wake  # called when a session is waiting: the main thread runs it
        self.out = out
        self._lock = threading.Lock()
        self._queue: deque[_Waiting] = deque()
        self._active: _Waiting | None = None
        self._closed = False
        self._listener: socket.socket | None = None
        self._in_input = False
        self._prompt = ""
        self._last_interrupt = 0.0
        self._interrupts = 0
        self._stop = False
        # The log's access-line count when a stop ended the session on the terminal, and its
        # request (it goes on to an error page, which a stop lets Apache send).
        self.cut_at: int | None = None
        self.cut_requests: list[str] = []

    @staticmethod
    def has_terminal(out: TextIO) -> bool:
        """Whether there is a terminal to debug on: stdin and stdout both ttys."""
        try:
            return sys.stdin is not None and sys.stdin.isatty() and out.isatty()
        except (AttributeError, ValueError):
            return False

    def open(self, owner: tuple[int, int] | None = None) -> None:
        """Listen (owner: the uid and gid the daemons run as, when not wsgidev's own)."""
        import readline  # noqa: F401 - input() gets line editing and history

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        if owner is not None:
            os.chown(self.path, *owner)
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, name="wsgidev-debug-accept", daemon=True).start()

    def close(self) -> list[str]:
        """Stop listening and end every session: a paused request's pdb sees the end of input.
        The requests ("GET /path") of the sessions this ended."""
        with self._lock:
            self._closed = True
            waiting = [*self._queue, *([self._active] if self._active else [])]
            self._queue.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
        for session in waiting:
            session.close()
        return [session.request() for session in waiting if session.hello.get("method")]

    def waiting(self) -> bool:
        """Whether a session waits for the terminal."""
        with self._lock:
            return bool(self._queue) and self._active is None

    def run_waiting(self) -> None:
        """Run the waiting sessions in turn (the main thread: Ctrl-C reaches input() there)."""
        while not self._stop:
            with self._lock:
                if not self._queue or self._closed:
                    return
                session = self._active = self._queue.popleft()
            try:
                self._run(session)
            finally:
                with self._lock:
                    self._active = None

    def interrupt(self) -> bool:
        """A Ctrl-C (from the SIGINT handler, in the main thread); True when it only interrupts
        the session's command, False when it should stop the server."""
        now = time.monotonic()
        if self._active is None or now - self._last_interrupt < DOUBLE_PRESS_S:
            self._stop = True
            return False
        self._last_interrupt = now
        self._interrupts += 1
        return True

    def break_input(self) -> None:
        """Leave input() (from the SIGINT handler, after the server has noted what to do)."""
        if self._in_input:
            raise KeyboardInterrupt  # out of input(), in the main thread

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._greet, args=(conn,), daemon=True).start()

    def _greet(self, conn: socket.socket) -> None:
        conn.settimeout(HELLO_TIMEOUT_S)
        stream = conn.makefile("rb")
        try:
            hello = read_message(stream)
        except OSError:
            hello = None
        if hello is None or hello.get("op") != "hello":
            conn.close()
            return
        conn.settimeout(None)
        session = _Waiting(conn, stream, hello)
        with self._lock:
            if self._closed:
                session.close()
                return
            busy = self._active is not None or bool(self._queue)
            ahead = self._active or (self._queue[-1] if self._queue else None)
            self._queue.append(session)
        if busy and ahead is not None:
            self.log.say(
                f"Waiting for the debugger: {session.describe()}; "
                f"it opens when {ahead.request()} is done"
            )
        self._wake()

    def _run(self, session: _Waiting) -> None:
        self.log.hold(self._interject)
        inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        saved = _no_flush_on_interrupt()
        try:
            self.log.say(
                f"Debugger: {session.describe()}. "
                "c continues the request; q quits it (the request gets an error response)"
            )
            send_message(session.sock, {"op": "start"})
            threading.Thread(
                target=_read_into,
                args=(session.stream, inbox),
                name="wsgidev-debug-out",
                daemon=True,
            ).start()
            self._relay(session, inbox)
        except OSError:
            pass
        finally:
            if self._stop and session.hello.get("method"):
                if self.cut_at is None:
                    self.cut_at = self.log.access_count
                self.cut_requests.append(session.request())
            session.close()
            _restore_terminal(saved)
            self.log.release()

    def _relay(self, session: _Waiting, inbox: queue.Queue[dict[str, Any] | None]) -> None:
        pending = ""  # output after the last newline: pdb's prompt, until a line is typed
        while not self._stop:
            if self._interrupts:
                self._interrupts = 0
                send_message(session.sock, {"op": "interrupt"})
            try:
                message = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if message is None:
                break
            op = message.get("op")
            if op == "out":
                head, newline, pending = (pending + str(message.get("text", ""))).rpartition("\n")
                self._write(head + newline)
            elif op == "read":
                line = self._input(pending)
                pending = ""
                if line is _INTERRUPTED:
                    if not self._stop:
                        self._interrupts = 0
                        send_message(session.sock, {"op": "interrupt"})
                elif line is None:
                    send_message(session.sock, {"op": "eof"})
                else:
                    send_message(session.sock, {"op": "line", "text": f"{line}\n"})
        if pending:
            self._write(pending + "\n")

    def _input(self, prompt: str) -> object:
        self._prompt = prompt
        try:
            self._in_input = True
            return input(prompt)
        except EOFError:
            self._write("\n")
            return None
        except KeyboardInterrupt:
            self._write("\n")
            return _INTERRUPTED
        finally:
            self._in_input = False

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()

    def _interject(self, text: str) -> None:
        """A status line while a session is open: above the prompt, which is drawn again."""
        if not self._in_input:
            self._write(text + "\n")
            return
        import readline

        self._write(f"\r\x1b[K{text}\n{self._prompt}{readline.get_line_buffer()}")


def _read_into(stream: IO[bytes], inbox: queue.Queue[dict[str, Any] | None]) -> None:
    while True:
        try:
            message = read_message(stream)
        except (OSError, ValueError):
            message = None
        inbox.put(message)
        if message is None:
            return


def _no_flush_on_interrupt() -> list[Any] | None:
    """Set NOFLSH on the terminal for a session; the settings before, to restore.

    A Ctrl-C makes the tty flush its output queue just after it signals us: what wsgidev writes
    in reply (pdb's --KeyboardInterrupt-- and the new prompt) could be thrown away with it.
    """
    try:
        fd = sys.stdin.fileno()
        saved = termios.tcgetattr(fd)
        changed = [*saved[:3], saved[3] | termios.NOFLSH, *saved[4:]]
        termios.tcsetattr(fd, termios.TCSANOW, changed)
    except (OSError, ValueError, termios.error):
        return None
    return saved


def _restore_terminal(saved: list[Any] | None) -> None:
    if saved is not None:
        with contextlib.suppress(OSError, ValueError, termios.error):
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, saved)
