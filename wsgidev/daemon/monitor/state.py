"""What a watched file looked like, and how to tell that it changed."""

from __future__ import annotations

import os
import stat
import time
from typing import NamedTuple


class FileState(NamedTuple):
    """A file's content stamp and identity; two states differ when the file was rewritten or replaced."""

    mtime_ns: int
    size: int
    # The inode and device catch a delete-then-create or a rename over the file that kept mtime and size.
    inode: int
    device: int


# A baseline no real file matches: the file was touched after its module may have been imported,
# before the monitor first looked, so its first check reports it changed.
STALE = FileState(mtime_ns=-1, size=-1, inode=-1, device=-1)


def file_state(path: str) -> FileState | None:
    """The file's state now, or None when it is missing or not a regular file."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return FileState(st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)


def touched_after(path: str, since_ns: int) -> bool:
    """Whether the file was written, or its mtime restored, after since_ns (and not in the future)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return False
    # ctime moves forward even when a tool restores an older mtime (cp -p, tar, rsync -t). A time
    # in the future is ignored: a skewed clock would otherwise restart every new process.
    now_ns = time.time_ns()
    return any(since_ns < stamp <= now_ns for stamp in (st.st_mtime_ns, st.st_ctime_ns))


def settled_dir_mtime_ns(path: str) -> int | None:
    """A directory's mtime, or None when missing or too recent to vouch that no entry was added since."""
    try:
        mtime_ns = os.stat(path).st_mtime_ns
    except (OSError, ValueError):
        return None
    # An entry added within the same coarse clock tick leaves the mtime unchanged ("racy git"):
    # a directory changed in the last second is walked again next time rather than trusted.
    return mtime_ns if time.time_ns() - mtime_ns > 1_000_000_000 else None
