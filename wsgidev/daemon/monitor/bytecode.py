"""Never run a changed source through a bytecode cache written for an older content.

Python takes ``__pycache__/x.cpython-311.pyc`` as valid when the whole-second mtime and the size
stamped in it match the source's. An edit that keeps the size and lands in the same second as
the content the cache was compiled from (a quick fix of one character, a version string) is then
served stale by every new process, while the monitor, which compares nanoseconds, rightly saw a
change. Two measures, both cheap:

- FreshSourceFileLoader, which the import recorder hands out in place of importlib's
  SourceFileLoader, refuses a cache written before the second after its source's mtime was over
  ("racily clean", as git calls the same ambiguity): such a cache cannot tell that content from
  a later one of the same size and second. The source is compiled instead, and Python writes a
  fresh cache. Only files saved moments before their cache was written pay, once.
- invalidate() removes the cache of every changed file the monitor reports, before any new
  process imports it (a restored mtime, as git checkout and cp -p leave, can match an old stamp
  at any distance).

Hash-checked caches (PEP 552) would do the same at the cost of hashing every source on every
import; invalidation by checking hashes stays a per-cache choice of whoever compiled it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Iterable
from importlib.machinery import BYTECODE_SUFFIXES, ModuleSpec, SourceFileLoader

NS_PER_S = 1_000_000_000


class FreshSourceFileLoader(SourceFileLoader):
    """importlib's SourceFileLoader, except that it does not read a racily clean bytecode cache."""

    def get_data(self, path: str) -> bytes:
        """The file's bytes; an OSError for a cache that may hold older code (importlib then compiles)."""
        if path.endswith(tuple(BYTECODE_SUFFIXES)) and racily_clean(path, self.path):
            raise OSError(f"{path} was written in the second of its source's mtime")
        return super().get_data(path)


def racily_clean(cache_path: str, source_path: str) -> bool:
    """Whether the cache was written before the second of its source's mtime had passed."""
    try:
        cache_mtime_ns = os.stat(cache_path).st_mtime_ns
        source_mtime_ns = os.stat(source_path).st_mtime_ns
    except OSError:
        return False  # no cache (or no source): nothing to distrust
    next_second_ns = (source_mtime_ns // NS_PER_S + 1) * NS_PER_S
    return cache_mtime_ns < next_second_ns


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
