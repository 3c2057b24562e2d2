"""--live-reload inside the daemons: the refresh script in HTML pages, and the static folders.

HTML responses get one small script before their last ``</body>``; it listens to the event
stream wsgidev serves (shared.LIVE_EVENTS_PATH, see wsgidev/livereload.py): ``reload`` refreshes
the page, ``css`` swaps the stylesheets whose path matches in place, ``hello`` with a newer
generation (the tab reconnected after new code came) refreshes once. The stream's URL carries
when the page's request began: a reload wsgidev announced after that and before the stream
connected (a slow browser, a busy machine) is sent at the connect. A reload names its news
(``at``); a tab acts on each once (sessionStorage), and pages with the script carry no ETag or
Last-Modified, so no cached copy can reload for the same news again and again. Only complete bodies are
touched: ``text/html``, a Content-Length (not a stream), no Content-Encoding, not HEAD; a page
that already carries django-browser-reload's script is left to it (its stream is wsgidev's too).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from wsgidev.daemon.wsgibody import drain_into
from wsgidev.shared import events, protocol
from wsgidev.shared.serverroot import LIVE_EVENTS_PATH
from wsgidev.shared.spec import WSGIApp

MAX_BODY_BYTES = 10 * 1024 * 1024
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)
_BROWSER_RELOAD_MARK = b"django-browser-reload"

# %(since)d: when the page's request began (ms since the epoch, the server's clock): news of new
# code after that, sent before the tab's stream connected, is answered at its connect.
SCRIPT = (
    "<script>(() => {"
    f"const source = new EventSource({LIVE_EVENTS_PATH!r} + '?since=%(since)d');"
    "let generation = null;"
    "source.onmessage = (event) => {"
    "const news = JSON.parse(event.data);"
    "if (news.type === 'hello') {"
    "if (generation !== null && generation !== news.generation) location.reload();"
    "generation = news.generation;"
    "} else if (news.type === 'reload') {"
    "const seen = 'wsgidev-reload-' + news.at;"
    "if (news.at && sessionStorage.getItem(seen)) return;"
    "if (news.at) sessionStorage.setItem(seen, '1');"
    "source.close(); location.reload();"
    "} else if (news.type === 'css') {"
    "for (const link of document.querySelectorAll('link[rel~=\"stylesheet\"]')) {"
    "const url = new URL(link.href, location.href);"
    "if (url.pathname !== news.path) continue;"
    "url.searchParams.set('wsgidev', Date.now());"
    "const fresh = link.cloneNode(); fresh.href = url.href;"
    "fresh.onload = () => link.remove(); link.after(fresh);"
    "}}};"
    "})();</script>"
)


def with_live_reload(application: WSGIApp) -> WSGIApp:
    """The app, with the refresh script in its complete HTML pages."""

    def live(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        since_ms = int(time.time() * 1000)  # before the app runs: the code it runs is no older
        held: list[Any] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if environ.get("REQUEST_METHOD") != "HEAD" and _injectable(headers):
                held[:] = [status, headers, exc_info]
                return chunks.append  # write(): the body is collected, as the iterable's is
            return start_response(status, headers, exc_info)

        chunks: list[bytes] = []
        result = application(environ, hold)
        if not held:
            return result
        drain_into(chunks, result)
        body = _inserted(b"".join(chunks), since_ms)
        status, headers, exc_info = held
        # No validators: a conditional request answered 304 would show the cached page, its
        # script's `since` older than the news it reloaded for, and it would reload again.
        dropped = ("content-length", "etag", "last-modified")
        headers = [(k, v) for k, v in headers if k.lower() not in dropped]
        headers.append(("Content-Length", str(len(body))))
        start_response(status, headers, exc_info)
        return [body]

    return live


def _injectable(headers: list[tuple[str, str]]) -> bool:
    fields = {name.lower(): value for name, value in headers}
    length = fields.get("content-length", "")
    return (
        fields.get("content-type", "").split(";", 1)[0].strip().lower() == "text/html"
        and not fields.get("content-encoding")
        and length.isdigit()
        and int(length) <= MAX_BODY_BYTES
    )


def _inserted(body: bytes, since_ms: int) -> bytes:
    if _BROWSER_RELOAD_MARK in body:
        return body
    last = None
    for last in _BODY_END.finditer(body):  # noqa: B007 - the last one
        pass
    if last is None:
        return body  # a fragment (htmx, a partial): no place for a script
    script = (SCRIPT % {"since": since_ms}).encode()
    return body[: last.start()] + script + body[last.start() :]


def announce_static_folders() -> None:
    """Tell wsgidev which folders the staticfiles finders serve, at which URLs: it watches them
    and swaps a saved stylesheet in the open pages. Installed packages' folders (the admin's,
    Wagtail's dozens) are left out: nobody edits them while developing, and each would cost a
    watch in the command."""
    try:
        from django.conf import settings
        from django.contrib.staticfiles.finders import get_finders

        static_url = str(settings.STATIC_URL or "/static/")
        if "://" in static_url:
            return  # a CDN: nothing served here
        folders = []
        for finder in get_finders():
            for storage in getattr(finder, "storages", {}).values():
                location = getattr(storage, "location", None)
                if not location or _installed(str(location)):
                    continue
                prefix = getattr(storage, "prefix", None) or ""
                url = "/" + "/".join(p for p in (static_url.strip("/"), prefix.strip("/")) if p)
                folders.append((url + "/", str(location)))
    except Exception:  # no staticfiles, or settings without it: nothing to watch
        return
    if folders:
        events.emit(protocol.StaticDirs(folders=tuple(folders)))


def _installed(folder: str) -> bool:
    """Whether a folder belongs to an installed package (the venv's or the system's)."""
    real = os.path.realpath(folder)
    roots = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(real.startswith(root + os.sep) for root in roots) or any(
        part in ("site-packages", "dist-packages") for part in real.split(os.sep)
    )
