"""inotify_simple with the C library this process has already loaded.

Shared by the daemons' monitor and the command's root and static-file watches.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import inotify_simple


def use_loaded_libc() -> None:
    """Give inotify_simple the C library this process has loaded. Left to itself it looks for
    one with ctypes.util.find_library("c"): a run of `ldconfig -p` per process (per INotify in
    inotify_simple 1.3, which calls it before it looks at its cached library), and where that
    finds nothing, of gcc on a temporary file, which a process killed meanwhile leaves in
    TMPDIR (seen in the lowest-versions leg: a `tmpXXXXXXXX` beside a daemon that was ended).
    Both versions keep the library in `_libc`; 1.3 also gets a find_library that finds
    nothing, so its `_libc or CDLL(...)` keeps the one set here."""
    if getattr(inotify_simple, "_libc", False) is None:
        inotify_simple._libc = ctypes.CDLL(None, use_errno=True)
    if getattr(inotify_simple, "find_library", None) is ctypes.util.find_library:
        inotify_simple.find_library = _found_nothing


def _found_nothing(name: str) -> None:
    return None
