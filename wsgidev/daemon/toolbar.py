"""django-debug-toolbar with many processes: one store for every daemon, with no settings change.

The toolbar (6.0 and later) keeps each request's panels in a store, by default its MemoryStore:
the memory of the process that served the page. Its panels are fetched by later requests
(render_panel, the History panel's list and sidebar), which mod_wsgi hands to any process of the
group, so with two processes about half of them answer "Data for this panel isn't available
anymore", and History lists only what the answering process served. Its DatabaseStore shares
them but writes the project's database on every request (SQLite answers "database is locked"
under a few clients) and needs a migration. Its CacheStore over Django's FileBasedCache would
need a cache alias added to the project's CACHES after Django has read them, and keeps the list
of requests in one key that each request reads and rewrites: two processes at once lose one
another's entry, and History misses pages.

So where the project uses the toolbar with its default store, wsgidev gives it SharedStore:
files in the private server root, one folder per request and one JSON file per panel, written
whole and renamed into place (a reader never sees half a file; no lock is held across
processes). The toolbar's own serialize/deserialize make the data, so what a panel stores is
what MemoryStore would hold. History survives reloads: new processes read the same folder. A
project that sets TOOLBAR_STORE_CLASS keeps its choice.

Not routed to the process that served the page (wsgidev.daemon.handoff), though that would work
for a panel: History lists the requests of every process, which no one process holds.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wsgidev.shared.serverroot import TOOLBAR_DIR

SHARED_STORE = "wsgidev.daemon.toolbar.SharedStore"
# The toolbar's request ids are uuid4().hex; anything else (they come from a request's query
# string) names nothing. A panel's id (its class name, or the panel's own) is written hex-encoded
# into its file's name, so no id's characters reach a path.
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
ORDER = "order"  # <time ns>-<request id>: the requests, oldest first
GONE = ".gone"  # a request's folder is renamed in here before it is removed

_folder: Path | None = None


def install(server_root: str) -> bool:
    """Give the toolbar SharedStore, if the project uses the toolbar (6.0 or later, which has
    stores) and chose no store."""
    global _folder
    from django.apps import apps
    from django.conf import settings

    if not apps.is_installed("debug_toolbar"):
        return False
    try:
        from debug_toolbar import store  # noqa: F401 - 6.0 and later have stores
    except ImportError:
        return False
    config = dict(getattr(settings, "DEBUG_TOOLBAR_CONFIG", None) or {})
    if "TOOLBAR_STORE_CLASS" in config:  # the project chose one (MemoryStore too): as it is
        return False
    folder = Path(server_root) / TOOLBAR_DIR
    for part in (folder, folder / ORDER, folder / GONE):
        part.mkdir(mode=0o700, exist_ok=True)
    _folder = folder
    config["TOOLBAR_STORE_CLASS"] = SHARED_STORE
    settings.DEBUG_TOOLBAR_CONFIG = config
    # The toolbar caches its config: clear it as its own setting_changed receiver would.
    from debug_toolbar import settings as dt_settings

    cache_clear = getattr(dt_settings.get_config, "cache_clear", None)
    if cache_clear is not None:
        cache_clear()
    return True


def _root() -> Path:
    assert _folder is not None, "SharedStore is installed by wsgidev.daemon.toolbar.install"
    return _folder


def _request_dir(request_id: str) -> Path | None:
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        return None
    return _root() / request_id


def _panel_file(folder: Path, panel_id: str) -> Path:
    return folder / f"{str(panel_id).encode('utf-8', 'surrogateescape').hex()}.json"


def _cache_size() -> int:
    from debug_toolbar import settings as dt_settings

    return max(0, int(dt_settings.get_config()["RESULTS_CACHE_SIZE"]))


class SharedStore:
    """The toolbar's store API (debug_toolbar.store.BaseStore), on files every process shares.
    A file system error loses the toolbar's data (its panels say so), never the page."""

    @classmethod
    def _ordered(cls) -> list[tuple[str, str]]:
        """(order file name, request id) of the stored requests, oldest first."""
        try:
            names = sorted(os.listdir(_root() / ORDER))
        except OSError:
            return []
        return [(name, name.rpartition("-")[2]) for name in names]

    @classmethod
    def request_ids(cls) -> Iterable[str]:
        ordered = cls._ordered()
        size = _cache_size()
        return [request_id for _, request_id in ordered[max(0, len(ordered) - size) :]]

    @classmethod
    def exists(cls, request_id: str) -> bool:
        folder = _request_dir(request_id)
        return folder is not None and folder.is_dir()

    @classmethod
    def set(cls, request_id: str) -> None:
        folder = _request_dir(request_id)
        if folder is None or folder.is_dir():
            return
        with contextlib.suppress(OSError):
            folder.mkdir(exist_ok=True)
            (_root() / ORDER / f"{time.time_ns():020d}-{request_id}").touch()
            ordered = cls._ordered()
            for name, old_id in ordered[: max(0, len(ordered) - _cache_size())]:
                cls._remove(name, old_id)

    @classmethod
    def _remove(cls, order_name: str, request_id: str) -> None:
        """Out of the list, then the folder renamed away whole (a panel written into it
        meanwhile goes with it) and removed."""
        with contextlib.suppress(FileNotFoundError):
            (_root() / ORDER / order_name).unlink()
        gone = _root() / GONE / f"{request_id}.{os.getpid()}.{threading.get_ident()}"
        try:
            os.rename(_root() / request_id, gone)
        except OSError:
            return  # removed by another process already
        shutil.rmtree(gone, ignore_errors=True)

    @classmethod
    def clear(cls) -> None:
        for name, request_id in cls._ordered():
            cls._remove(name, request_id)

    @classmethod
    def delete(cls, request_id: str) -> None:
        for name, stored in cls._ordered():
            if stored == request_id:
                cls._remove(name, stored)

    @classmethod
    def save_panel(cls, request_id: str, panel_id: str, data: Any = None) -> None:
        from debug_toolbar.store import serialize

        folder = _request_dir(request_id)
        if folder is None:
            return
        cls.set(request_id)
        text = serialize(data)
        spare = folder / f".{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            spare.write_text(text, encoding="utf-8")
            os.replace(spare, _panel_file(folder, panel_id))
        except OSError:  # evicted meanwhile by newer requests (as MemoryStore's), or no room
            with contextlib.suppress(OSError):
                spare.unlink()

    @classmethod
    def panel(cls, request_id: str, panel_id: str) -> Any:
        from debug_toolbar.store import deserialize

        folder = _request_dir(request_id)
        if folder is None:
            return {}
        try:
            return deserialize(_panel_file(folder, panel_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @classmethod
    def panels(cls, request_id: str) -> Iterator[tuple[str, Any]]:
        from debug_toolbar.store import deserialize

        folder = _request_dir(request_id)
        if folder is None:
            return
        try:
            paths = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_mtime_ns)
        except OSError:
            return
        for path in paths:
            with contextlib.suppress(OSError, ValueError):
                panel_id = bytes.fromhex(path.stem).decode("utf-8", "surrogateescape")
                yield panel_id, deserialize(path.read_text(encoding="utf-8"))
