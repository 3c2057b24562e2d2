"""A request for state another daemon process holds is answered by that process.

mod_wsgi gives a request to whichever process of the daemon group is free; a dev tool that keeps
state in the memory of one process (Werkzeug's console: a traceback's live frames, found under a
secret that process made) answers only requests that land there, about half of them with two
processes. So a process that holds such state claims its key in the server root
(owners/<hash of the key> holds its pid) and listens on a Unix socket there (owners/<pid>.sock;
the server root is 0700, so only the daemons' user and root connect). A request that carries a
key another process claimed is sent to that process, which runs it through its own app and
sends the response back; the client cannot tell. A key whose process has gone (a reload
replaced it, or it died) gets a page that says so.

Written here rather than routed by Apache: mod_wsgi chooses the process within a group itself,
and a group per process would multiply the hand-over's groups (wsgidev.daemon.ring). Not HTTP
over the socket (wsgiref's server, http.client): the request would be rebuilt from a second
request line, losing SCRIPT_NAME, REMOTE_ADDR, HTTPS and mod_wsgi's own keys; here the
environ's strings go across as they are.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import io
import json
import os
import socket
import socketserver
import struct
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from wsgidev.daemon.wsgibody import drain_into
from wsgidev.shared.serverroot import OWNERS_DIR
from wsgidev.shared.spec import WSGIApp

# A handed-off request's body and its answer's, at most (a console command is a short GET).
MAX_BODY = 4 * 1024 * 1024
MAX_HEADER = 1024 * 1024
CONNECT_TIMEOUT_S = 2.0
# How long the owner may take to answer (a console command runs the user's code).
ANSWER_TIMEOUT_S = 300.0
_LENGTH = struct.Struct("!I")
# On a handed-off answer: the pid of the process that answered (in the browser's dev tools).
ANSWERED_BY = "X-Wsgidev-Answered-By"


def key_file(folder: Path, key: str) -> Path:
    """Where a key's owner is written: a hash, so no key's characters reach a file name."""
    return folder / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]


class Owners:
    """This process's keys and its hand-off socket, and the other processes' keys."""

    def __init__(self, server_root: str | os.PathLike[str]) -> None:
        self.folder = Path(server_root) / OWNERS_DIR
        self.pid = os.getpid()
        self._mine: set[str] = set()
        self._server: socketserver.BaseServer | None = None
        self._lock = threading.Lock()

    def socket_path(self, pid: int) -> Path:
        return self.folder / f"{pid}.sock"

    def claim(self, key: str, application: WSGIApp) -> None:
        """Answer requests that carry key here, whichever process they reach, with application."""
        with self._lock:
            if self._server is None:
                self._listen(application)
            self._mine.add(key)
        path = key_file(self.folder, key)
        spare = path.with_name(f"{path.name}.{self.pid}.tmp")
        spare.write_text(str(self.pid), encoding="ascii")
        os.replace(spare, path)

    def mine(self, key: str) -> bool:
        return key in self._mine

    def owner(self, key: str) -> int | None:
        """The pid that claimed key, or None: no process did."""
        try:
            return int(key_file(self.folder, key).read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None

    def _listen(self, application: WSGIApp) -> None:
        path = self.socket_path(self.pid)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a process that had this pid before, killed
        owners = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                _answer(self.connection, application, owners)

        server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        os.register_at_fork(after_in_child=self._forget)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="wsgidev-handoff", daemon=True).start()
        atexit.register(self.close)

    def _forget(self) -> None:
        """In a child the app forked: no socket, no keys of its own."""
        self._server = None
        self._mine = set()

    def close(self) -> None:
        """Stop answering: take this process's socket out of the server root. Not in a child
        the app forked (it inherits this at exit, but neither the socket nor the thread)."""
        if self._server is None or os.getpid() != self.pid:
            return
        # The keys stay: a request that names one later is told its process is gone (one
        # key per process that served, in a folder removed with a temporary server root). The
        # listening socket and its thread end with the process (shutdown() would wait for the
        # thread's next poll; closing it under the thread would spin that thread).
        with contextlib.suppress(OSError):
            self.socket_path(self.pid).unlink()

    def hand_off(
        self, pid: int, key: str, environ: dict[str, Any]
    ) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """The answer of process pid to this request, or None: that process is gone."""
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            if length > MAX_BODY:
                return "413 Content Too Large", [("Content-Type", "text/plain")], b"too large\n"
            body = environ["wsgi.input"].read(length) if length else b""
        except (OSError, ValueError) as exc:
            return "400 Bad Request", [("Content-Type", "text/plain")], f"{exc}\n".encode()
        strings = {name: value for name, value in environ.items() if isinstance(value, str)}
        header = json.dumps({"key": key, "environ": strings}).encode("utf-8", "surrogateescape")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(CONNECT_TIMEOUT_S)
            try:
                conn.connect(str(self.socket_path(pid)))
            except (FileNotFoundError, ConnectionRefusedError):
                return None  # no socket, or no process behind it
            except OSError as exc:  # a full backlog, a timeout: it is there but busy
                page = (
                    f"wsgidev: process {pid}, which holds this request's state, is busy ({exc})\n"
                )
                return "503 Service Unavailable", [("Content-Type", "text/plain")], page.encode()
            try:
                conn.settimeout(ANSWER_TIMEOUT_S)
                conn.sendall(_LENGTH.pack(len(header)) + header + _LENGTH.pack(len(body)) + body)
                reply = _read_block(conn, MAX_HEADER)
                if reply is None:
                    if self.socket_path(pid).exists():
                        raise ValueError("it closed the connection without an answer")
                    return None  # it ended while answering
                answer = json.loads(reply)
                if answer.get("gone"):
                    return None
                content = _read_block(conn)
                if content is None:
                    raise ValueError("the body did not arrive whole")
                headers = [(str(name), str(value)) for name, value in answer["headers"]]
                return str(answer["status"]), headers, content
            except (OSError, ValueError, KeyError, TypeError) as exc:
                page = f"wsgidev: process {pid}, which holds this request's state, did not answer: {exc}\n"
                return "502 Bad Gateway", [("Content-Type", "text/plain")], page.encode()


def _read_exact(conn: socket.socket, count: int) -> bytes | None:
    chunks, left = [], count
    while left:
        chunk = conn.recv(min(left, 65536))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_block(conn: socket.socket, most: int = MAX_BODY + MAX_HEADER) -> bytes | None:
    head = _read_exact(conn, _LENGTH.size)
    if head is None:
        return None
    (length,) = _LENGTH.unpack(head)
    return None if length > most else _read_exact(conn, length)


def _answer(conn: socket.socket, application: WSGIApp, owners: Owners) -> None:
    """Run one handed-off request through application; send its status, headers and body."""
    header = _read_block(conn, MAX_HEADER)
    body = _read_block(conn, MAX_BODY)
    if header is None or body is None:
        return
    request = json.loads(header)
    if not owners.mine(request["key"]):  # a new process with a dead owner's pid
        reply = json.dumps({"gone": True}).encode()
        conn.sendall(_LENGTH.pack(len(reply)) + reply)
        return
    environ: dict[str, Any] = dict(request["environ"])
    environ.update(
        {
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "CONTENT_LENGTH": str(len(body)),
        }
    )
    started: list[Any] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started[:] = [status, headers]
        return chunks.append

    try:
        drain_into(chunks, application(environ, start_response))
        if not started:
            raise RuntimeError("the app returned without calling start_response")
        content = b"".join(chunks)
        if len(content) > MAX_BODY:
            raise RuntimeError(f"its answer is {len(content)} bytes, more than {MAX_BODY}")
        reply = json.dumps({"status": started[0], "headers": started[1]}).encode(
            "utf-8", "surrogateescape"
        )
    except Exception as exc:  # the asking process shows this, not a silent "gone"
        content = f"wsgidev: process {os.getpid()} failed to answer: {exc!r}\n".encode()
        reply = json.dumps(
            {"status": "500 Internal Server Error", "headers": [["Content-Type", "text/plain"]]}
        ).encode()
    conn.sendall(_LENGTH.pack(len(reply)) + reply + _LENGTH.pack(len(content)) + content)


GONE_PAGE = """<!doctype html>
<title>This debugger's process is gone</title>
<p><b>wsgidev:</b> this {what} belonged to process {pid}, which has stopped since (a reload
replaces the processes that ran the old code): what it held went with it.
Load the page that failed again for a new one.</p>
"""


def with_hand_off(
    application: WSGIApp, owners: Owners, key_of: Callable[[dict[str, Any]], str | None], what: str
) -> WSGIApp:
    """application, with requests whose key another process claimed answered by that process."""

    def routed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        key = key_of(environ)
        if key is None or owners.mine(key):
            return application(environ, start_response)
        pid = owners.owner(key)
        if pid is None:  # nobody's: the app answers as it would anyway
            return application(environ, start_response)
        answer = owners.hand_off(pid, key, environ)
        if answer is None:
            page = GONE_PAGE.format(what=what, pid=pid).encode()
            start_response(
                "410 Gone",
                [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(page)))],
            )
            return [page]
        status, headers, content = answer
        start_response(status, [*headers, (ANSWERED_BY, str(pid))])
        return [content]

    return routed
