"""django-debug-toolbar with many processes: one store for every daemon, with no settings change.

The toolbar (6.0 and later) keeps each request's panels in a store, by default its MemoryStore:
the memory of the process that served the page. Its panels are fetched by later requests
(render_panel, the History panel's list and sidebar), which mod_wsgi hands to any process of the
group, so with two processes about half of them answer "Data for this panel isn't available
anymore", and History lists only what the answering process served. Its DatabaseStore shares
them but writes the project's database on every request (SQLite answers "database is locked"
under a few clients) and needs a migration; its CacheStore needs a cache every process shares.

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
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from wsgidev.shared.serverroot import TOOLBAR_DIR

SHARED_STORE = "wsgidev.daemon.toolbar.SharedStore"
# The toolbar's request ids are uuid4().hex; its panel ids, class names. Anything else (these
# come from a request's query string) names nothing.
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
_PANEL_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
ORDER = "order"  # <time ns>-<request id>: the requests, oldest first

_folder: Path | None = None


def install(server_root: str) -> bool:
    """Give the toolbar SharedStore, if the project uses the toolbar with its default store."""
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
    _folder = Path(server_root) / TOOLBAR_DIR
    (_folder / ORDER).mkdir(parents=True, exist_ok=True)
    config["TOOLBAR_STORE_CLASS"] = SHARED_STORE
    settings.DEBUG_TOOLBAR_CONFIG = config
    # The toolbar's own hook for a changed setting (it caches its config).
    from django.test.signals import setting_changed

    setting_changed.send(
        sender=type(settings), setting="DEBUG_TOOLBAR_CONFIG", value=config, enter=True
    )
    return True


def _root() -> Path:
    assert _folder is not None, "SharedStore is installed by wsgidev.daemon.toolbar.install"
    return _folder


def _request_dir(request_id: str) -> Path | None:
    if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
        return None
    return _root() / request_id


def _cache_size() -> int:
    from debug_toolbar import settings as dt_settings

    return int(dt_settings.get_config()["RESULTS_CACHE_SIZE"])


class SharedStore:
    """The toolbar's store API (debug_toolbar.store.BaseStore), on files every process shares."""

    @classmethod
    def _ordered(cls) -> list[tuple[str, str]]:
        """(order file name, request id) of the stored requests, oldest first."""
        names = sorted(os.listdir(_root() / ORDER))
        return [(name, name.rpartition("-")[2]) for name in names]

    @classmethod
    def request_ids(cls) -> Iterable[str]:
        return [request_id for _, request_id in cls._ordered()[-_cache_size() :]]

    @classmethod
    def exists(cls, request_id: str) -> bool:
        folder = _request_dir(request_id)
        return folder is not None and folder.is_dir()

    @classmethod
    def set(cls, request_id: str) -> None:
        folder = _request_dir(request_id)
        if folder is None or folder.is_dir():
            return
        folder.mkdir(exist_ok=True)
        (_root() / ORDER / f"{time.time_ns():020d}-{request_id}").touch()
        ordered = cls._ordered()
        for name, old_id in ordered[: max(0, len(ordered) - _cache_size())]:
            cls._remove(name, old_id)

    @classmethod
    def _remove(cls, order_name: str, request_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (_root() / ORDER / order_name).unlink()
        shutil.rmtree(_root() / request_id, ignore_errors=True)

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
        if folder is None or not _PANEL_ID.fullmatch(panel_id):
            return
        cls.set(request_id)
        text = serialize(data)
        spare = folder / f".{panel_id}.{os.getpid()}.tmp"
        try:
            spare.write_text(text, encoding="utf-8")
            os.replace(spare, folder / f"{panel_id}.json")
        except FileNotFoundError:  # evicted meanwhile by newer requests, as MemoryStore would
            pass

    @classmethod
    def panel(cls, request_id: str, panel_id: str) -> Any:
        from debug_toolbar.store import deserialize

        folder = _request_dir(request_id)
        if folder is None or not _PANEL_ID.fullmatch(panel_id):
            return {}
        try:
            text = (folder / f"{panel_id}.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        return deserialize(text)

    @classmethod
    def panels(cls, request_id: str) -> Iterator[tuple[str, Any]]:
        from debug_toolbar.store import deserialize

        folder = _request_dir(request_id)
        if folder is None:
            return
        with contextlib.suppress(FileNotFoundError):
            for path in sorted(folder.glob("*.json")):
                with contextlib.suppress(FileNotFoundError):
                    yield path.stem, deserialize(path.read_text(encoding="utf-8"))
