"""Ways editors and tools save a file, each a different test for a change watcher."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

# in-place: open, truncate, write (nano, VS Code, most editors' plain save).
# rename: write a temporary file beside it, rename it over (vim's backupcopy=no, JetBrains'
#   safe write): a new inode, which loses a watch kept on the old file.
# delete-create: unlink, then write a new file a moment later (rm + cp, some sync tools).
# old-mtime: the new content arrives with an mtime older than the file it replaces (git
#   checkout of an older commit with tools that keep times, tar/rsync/cp -p restores): a
#   watcher comparing mtime with ">" never sees it.
SAVE_STYLES = ("in-place", "rename", "delete-create", "old-mtime")
DELETE_GAP_S = 0.01
OLD_MTIME_AGE_S = 86_400.0


def save(path: Path, text: str, style: str) -> None:
    """Write text to path the way `style` says."""
    if style == "in-place":
        with open(path, "w", encoding="utf-8") as out:
            out.write(text)
    elif style == "rename":
        temp = path.with_name(f".{path.name}.bench~")
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    elif style == "delete-create":
        path.unlink()
        time.sleep(DELETE_GAP_S)
        path.write_text(text, encoding="utf-8")
    elif style == "old-mtime":
        older = path.stat().st_mtime - OLD_MTIME_AGE_S
        temp = path.with_name(f".{path.name}.bench~")
        temp.write_text(text, encoding="utf-8")
        os.utime(temp, (older, older))
        os.replace(temp, path)
    else:
        raise ValueError(f"unknown save style {style!r}")


def with_assignment(text: str, name: str, value: str) -> str:
    """Python source with the line `NAME = "..."` set to value."""
    new, count = re.subn(rf'(?m)^{name} = ".*"$', f'{name} = "{value}"', text)
    if count != 1:
        raise ValueError(f"expected one {name} = line")
    return new
