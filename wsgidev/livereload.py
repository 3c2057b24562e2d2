"""Browsers follow the code: the event stream wsgidev serves, and what it says when.

Apache proxies the stream paths (shared.LIVE_EVENTS_PATH for --live-reload's script, and
django-browser-reload's usual path where that package is installed) to a Unix socket in the
server root, where this module answers: an open tab holds one Apache thread and one coroutine
here, never a daemon thread, so tabs neither take the app's threads nor keep a retiring daemon
group alive through a hand-over. The news comes from the reload tracker (wsgidev.reloads), which
knows when new code serves (the reload line), when Django took a template edit in place (every
serving process said so) and which static folders the app serves, and from a watcher on those
folders (a stylesheet is swapped in place).

Two dialects on one stream:
- wsgidev's own: ``hello`` with a generation (a tab that reconnects to a newer one reloads),
  ``reload``, and ``css`` with the stylesheet's URL path;
- django-browser-reload's: a ``ping`` every second carrying a version id, which here is
  wsgidev's generation (so a reconnecting tab never sees a "new" version for nothing), and
  ``reload`` for template and static edits.

Written on asyncio rather than a web framework: the whole server is two GET paths answered
with a stream; one thread and no dependency.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import threading
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wsgidev.reloads import Subscriber
from wsgidev.shared import protocol
from wsgidev.shared.serverroot import BROWSER_RELOAD_EVENTS_PATH, LIVE_EVENTS_PATH
from wsgidev.staticwatch import StaticWatcher

KEEPALIVE_S = 15.0  # a comment line, well inside Apache's Timeout for the proxied read
BROWSER_RELOAD_PING_S = 1.0  # django-browser-reload's PING_DELAY
HEAD_TIMEOUT_S = 5.0
STATIC_SETTLE_S = 0.03


class LiveReload(Subscriber):
    """The stream server (a thread running an asyncio loop) and the news it sends; it
    subscribes to the reload tracker."""

    def __init__(self, path: Path, poll_interval_s: float = 1.0) -> None:
        self.path = path
        self.poll_interval_s = poll_interval_s  # for static folders that send no events
        self.generation = 1
        self._reload_at = 0.0  # when the last reload news went out (time.time())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[tuple[str, asyncio.Queue[dict[str, Any] | None]]] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._static: StaticWatcher | None = None
        self._static_lock = threading.Lock()
        self._static_pending: set[str] = set()

    # -- news (any thread) --------------------------------------------------------------------

    def new_code(self) -> None:
        """New code serves: every tab reloads (once)."""
        self.generation += 1
        self._send({"type": "reload", "generation": self.generation}, browser_reload=None)

    def taken_in_place(self, files: tuple[str, ...], first: bool) -> None:
        """Django took a template or translation edit in place (every serving process):
        every tab reloads."""
        if not first:
            self._send({"type": "reload"}, browser_reload={"type": "reload"})

    def heard(self, event: protocol.Event) -> None:
        """The static folders a daemon serves (Django's finders) are watched too."""
        if isinstance(event, protocol.StaticDirs):
            self.watch_static(event.folders)

    def static_changed(self, url_path: str) -> None:
        """A file under a served static folder changed: stylesheets swap, anything else reloads.
        One save is several file events: those within STATIC_SETTLE_S are one piece of news.
        (django-browser-reload's tabs hear of static edits through Django's signals.)"""
        with self._static_lock:
            first = not self._static_pending
            self._static_pending.add(url_path)
        if first:
            timer = threading.Timer(STATIC_SETTLE_S, self._static_settled)
            timer.daemon = True
            timer.start()

    def _static_settled(self) -> None:
        with self._static_lock:
            changed, self._static_pending = self._static_pending, set()
        if all(path.endswith(".css") for path in changed):
            for path in sorted(changed):
                self._send({"type": "css", "path": path}, browser_reload=None)
        else:
            self._send({"type": "reload"}, browser_reload=None)

    def watch_static(self, folders: Iterable[tuple[str, str]]) -> None:
        """Watch static folders (URL prefix, folder) for changes."""
        if self._static is None:
            self._static = StaticWatcher(self.static_changed, self.poll_interval_s)
        self._static.watch(folders)

    # -- the server ---------------------------------------------------------------------------

    def start(self, owner: tuple[int, int] | None = None) -> None:
        """Listen on the socket (owner: uid and gid Apache's children run as, if not ours)."""
        self._thread = threading.Thread(target=self._run, name="wsgidev-live", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if owner is not None:
            os.chown(self.path, *owner)

    def close(self) -> None:
        """Stop listening and end every stream."""
        if self._static is not None:
            self._static.stop()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._shutdown)
        if self._thread is not None:
            self._thread.join(5)
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_unix_server(self._client, path=str(self.path))
            )
            os.chmod(self.path, 0o600)
            self._ready.set()
            loop.run_until_complete(self._server.wait_closed())
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            self._ready.set()
            loop.close()

    def _shutdown(self) -> None:
        for _, queue in list(self._clients):
            queue.put_nowait(None)
        if self._server is not None:
            self._server.close()

    def _send(self, live: dict[str, Any] | None, browser_reload: dict[str, Any] | None) -> None:
        if live is not None and live.get("type") == "reload":
            self._reload_at = time.time()
            live = {**live, "at": f"{self._reload_at:.6f}"}  # the page acts on each news once
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def deliver() -> None:
            for kind, queue in list(self._clients):
                message = live if kind == "live" else browser_reload
                if kind == "browser-reload" and message is None:
                    message = {"type": "ping"}  # carries the new version id at once
                if message is not None:
                    queue.put_nowait(message)

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT_S)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        target = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else ""
        path, _, query = target.partition("?")
        if path == LIVE_EVENTS_PATH:
            kind, every_s = "live", KEEPALIVE_S
        elif path == BROWSER_RELOAD_EVENTS_PATH:
            kind, every_s = "browser-reload", BROWSER_RELOAD_PING_S
        else:
            writer.write(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await _close(writer)
            return
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        client = (kind, queue)
        self._clients.add(client)
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
            )
            if kind == "live":
                writer.write(b"retry: 500\n\n")
                writer.write(_event({"type": "hello", "generation": self.generation}))
                if _since_s(query) < self._reload_at:
                    # The page was asked for before that news, and missed it: it may show the
                    # old code (or template). It reloads now, once: its next request is newer.
                    writer.write(_event({"type": "reload", "at": f"{self._reload_at:.6f}"}))
            else:
                writer.write(self._ping())
            await writer.drain()
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), every_s)
                except asyncio.TimeoutError:
                    writer.write(b": keep-alive\n\n" if kind == "live" else self._ping())
                else:
                    if message is None:
                        break
                    is_ping = message.get("type") == "ping"
                    writer.write(self._ping() if is_ping else _event(message))
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._clients.discard(client)
            await _close(writer)

    def _ping(self) -> bytes:
        return _event({"type": "ping", "versionId": f"wsgidev-{self.generation}"})


def _since_s(query: str) -> float:
    """The page's ``since`` (ms) in seconds; infinity when absent (a page of another origin)."""
    values = urllib.parse.parse_qs(query).get("since", [])
    try:
        return int(values[0]) / 1000 if values else math.inf
    except ValueError:
        return math.inf


def _event(message: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(message)}\n\n".encode()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
