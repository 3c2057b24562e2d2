"""Never run a changed source through a bytecode cache written for an older content.

Python takes ``__pycache__/x.cpython-311.pyc`` as valid when the whole-second mtime and the size
stamped in it match the source's. An edit that keeps the size and lands in the same second as
the content the cache was compiled from (a quick fix of one character, a version string) is then
served stale by every new process, while the monitor, which compares nanoseconds, rightly saw a
change. Three measures, all cheap:

- FreshSourceFileLoader, which the import recorder hands out in place of importlib's
  SourceFileLoader, refuses a cache written before the second after its source's mtime was over
  ("racily clean", as git calls the same ambiguity): such a cache cannot tell that content from
  a later one of the same size and second. The source is compiled instead, and Python writes a
  fresh cache. Only files saved moments before their cache was written pay, once; libraries
  (the Python installation and the venv) saved before the process started are trusted, since
  pip writes every file and its cache in one second (left: two same-size edits of a library
  file within one second, compiled in between by a process without the monitor, before the
  server starts). Outside the Python installation and the venv (the user's own files), it
  also refuses a cache written before the source's ctime: a save that put an older mtime back
  (cp -p, rsync -t, a test's utime) moves the ctime, and a process starting between that save
  and the monitor's invalidate() would otherwise take the old content's cache for good. (Libraries are left out:
  a chown -R of a venv would move every ctime, and a read-only venv would compile each import.)
- invalidate() removes the cache of every changed file the monitor reports, before any new
  process imports it (a restored mtime can match an old stamp at any distance).
- The loader writes no cache for a source that changed while it was read and compiled, and
  removes the one it wrote when the source changed meanwhile: a process compiling the old
  content would otherwise leave its cache after the monitor's invalidate() for the new one.

- The caches it writes for the project's own files (outside the Python installation and the
  venv) are hash-checked (PEP 552): Python reads the source and compares its hash at each
  import, which proves the cache fresh by content whatever the clocks say, so none of the
  rules above refuses it, at any start. Without them, a file saved in the second its cache
  was written was compiled again at every start where caches cannot be rewritten
  (PYTHONDONTWRITEBYTECODE, a read-only tree). The cost is a read and a SipHash of each
  project source per import: microseconds for a module, against the millisecond a compile
  takes. Libraries keep timestamp caches (their thousands of files would each be read).
"""

from __future__ import annotations

import _imp
import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterable, Mapping
from importlib.machinery import BYTECODE_SUFFIXES, ModuleSpec, SourceFileLoader
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

NS_PER_S = 1_000_000_000


class FreshSourceFileLoader(SourceFileLoader):
    """importlib's SourceFileLoader, except that it does not read a racily clean bytecode cache,
    nor leave one of a source that changed while it was compiled."""

    def get_data(self, path: str) -> bytes:
        """The file's bytes; an OSError for a cache that may hold older code (importlib then compiles)."""
        if not path.endswith(tuple(BYTECODE_SUFFIXES)):
            return super().get_data(path)
        # Judged before it is read: importlib replaces a cache in one step, so what is read is
        # the file judged or a newer one, never an older one judged by a newer one's dates.
        racy = racily_clean(path, self.path)
        data = super().get_data(path)
        if _hash_checked(data):
            return data  # importlib compares the source's hash with it
        if racy:
            raise OSError(f"{path} was written in the second of its source's mtime")
        return data

    def source_to_code(self, data: Any, path: Any, *, _optimize: int = -1) -> Any:  # type: ignore[override]
        """Compile the source, noting its hash for the cache set_data writes of it."""
        self._source_hash = importlib.util.source_hash(data) if isinstance(data, bytes) else None
        return super().source_to_code(data, path, _optimize=_optimize)

    def path_stats(self, path: str) -> Mapping[str, Any]:
        """importlib's stats of the source, which it takes before reading it; noted for the cache."""
        st = os.stat(path)
        self._read_stamp = _stamp(st)
        return {"mtime": st.st_mtime, "size": st.st_size}

    def set_data(self, path: str, data: ReadableBuffer, *, _mode: int = 0o666) -> None:
        """Write the bytecode cache only while the source is what was compiled; once written,
        remove it again if the source changed meanwhile (its invalidate() may have run)."""
        read = getattr(self, "_read_stamp", None)
        if not path.endswith(tuple(BYTECODE_SUFFIXES)):
            super().set_data(path, data, _mode=_mode)
            return
        source_hash = self.__dict__.pop("_source_hash", None)  # this compile's, used once
        if source_hash is not None and _HASH_PYCS_CHECKED and not _in_python_trees(self.path):
            data = _as_hash_checked(bytes(data), source_hash)
        if read is not None and _current_stamp(self.path) == read:
            super().set_data(path, data, _mode=_mode)
            if _current_stamp(self.path) != read:
                with contextlib.suppress(OSError):
                    os.unlink(path)


# PEP 552: a cache's flags word; bit 0 hash-based, bit 1 the source is checked at import.
_HASH_BASED, _CHECK_SOURCE = 0b01, 0b10
# Unless Python runs with --check-hash-based-pycs never: then hash-checked caches are not.
_HASH_PYCS_CHECKED = _imp.check_hash_based_pycs != "never"


def _hash_checked(data: bytes) -> bool:
    """Whether a cache's header says importlib checks it against its source's hash."""
    flags = int.from_bytes(data[4:8], "little") if len(data) >= 16 else 0
    checked = flags & _HASH_BASED and (
        flags & _CHECK_SOURCE or _imp.check_hash_based_pycs == "always"
    )
    return bool(checked) and _HASH_PYCS_CHECKED


def _as_hash_checked(data: bytes, source_hash: bytes) -> bytes:
    """A timestamp cache importlib wrote, made hash-checked: the same code, a PEP 552 header."""
    if len(data) < 16 or int.from_bytes(data[4:8], "little") & _HASH_BASED:
        return data
    flags = (_HASH_BASED | _CHECK_SOURCE).to_bytes(4, "little")
    return data[:4] + flags + source_hash + data[16:]


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    # ctime as well: a save that restores an older mtime (and keeps the size) still moves it.
    return (st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_ino)


def _current_stamp(path: str) -> tuple[int, int, int, int] | None:
    try:
        return _stamp(os.stat(path))
    except OSError:
        return None


def racily_clean(cache_path: str, source_path: str) -> bool:
    """Whether the cache was written before the second of its source's mtime had passed, or, for
    a file outside the Python installation and the venv, before the source's last change."""
    try:
        cache_mtime_ns = os.stat(cache_path).st_mtime_ns
        source = os.stat(source_path)
    except OSError:
        return False  # no cache (or no source): nothing to distrust
    next_second_ns = (source.st_mtime_ns // NS_PER_S + 1) * NS_PER_S
    if cache_mtime_ns < next_second_ns:
        # A library saved before this process began: pip writes each file, then compiles it,
        # all in one second, so nearly every installed cache is racily clean; refused, each
        # start would compile them all where caches cannot be rewritten (a read-only venv,
        # PYTHONDONTWRITEBYTECODE). Its content cannot have changed unseen since: the monitor
        # invalidates the cache of a watched file that changes.
        return not (_in_python_trees(source_path) and source.st_mtime_ns < _TRUSTED_BEFORE_NS)
    # <=: the kernel's coarse file clock may stamp a save and a cache written just after it
    # alike (one compile more). A cache this process cannot rewrite (www-data under a system
    # Apache, the developer's __pycache__) is trusted as Python does: else every start compiles.
    return (
        cache_mtime_ns <= source.st_ctime_ns
        and not _in_python_trees(source_path)
        and os.access(os.path.dirname(cache_path), os.W_OK)
    )


# The Python installation and the venv: libraries, whose caches are judged by mtime only.
_PYTHON_TREES = tuple(
    {
        os.path.join(p, "")
        for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix)
    }
)


# Libraries saved a second or more before this module was imported (the daemon's start).
_TRUSTED_BEFORE_NS = time.time_ns() - NS_PER_S


def _in_python_trees(path: str) -> bool:
    return path.startswith(_PYTHON_TREES)


def fresh_loader(spec: ModuleSpec) -> None:
    """Give a module spec found by the path finder a FreshSourceFileLoader (in place)."""
    loader = spec.loader
    if type(loader) is SourceFileLoader:  # not a subclass someone else chose on purpose
        spec.loader = FreshSourceFileLoader(loader.name, loader.path)


def invalidate(paths: Iterable[str]) -> None:
    """Remove the bytecode caches of these source files, where there are any."""
    for path in paths:
        if not path.endswith(".py"):
            continue
        with contextlib.suppress(NotImplementedError, ValueError, OSError):
            os.unlink(importlib.util.cache_from_source(path))
