"""Watched globs: the `watch` option's patterns and the directories Django's receivers ask for."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from wsgidev.shared.globpattern import MAGIC, compile_glob

# Trees nobody edits templates or settings in; walking them would only cost watches and time.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})


@dataclass(frozen=True)
class WatchGlob:
    """Files under root whose relative path matches a pathlib-style pattern ("*.yaml", "**/*.html")."""

    root: str
    pattern: str
    # Why it is watched, for the listing: "--watch", "Django autoreload".
    reason: str = field(default="", compare=False)
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", compile_glob(self.pattern))

    @classmethod
    def parse(cls, spec: str, reason: str = "") -> WatchGlob | None:
        """A glob for a pattern or a directory (everything under it); None for a plain file path."""
        spec = os.path.abspath(spec)
        match = MAGIC.search(spec)
        if match is None:
            return cls(spec, "**/*", reason) if os.path.isdir(spec) else None
        root = os.path.dirname(
            spec[: match.start()] + "x"
        )  # the directory before the first magic part
        return cls(root, os.path.relpath(spec, root).replace(os.sep, "/"), reason)

    @property
    def prefix(self) -> str:
        """What every path under root starts with (root itself ends with a separator only as
        the file system's root: "/" + os.sep would be "//")."""
        return self.root if self.root.endswith(os.sep) else self.root + os.sep

    @property
    def recursive(self) -> bool:
        """Whether files in subdirectories can match, so subdirectories need watching too."""
        return "/" in self.pattern

    def covers(self, path: str) -> bool:
        """Whether a path lies where this glob looks (a match, or a directory that may hold one)."""
        parent = os.path.dirname(path)
        if parent == self.root:
            return True
        return self.recursive and parent.startswith(self.prefix)

    def matches(self, path: str) -> bool:
        """Whether a file path matches (editor swap and backup files never do)."""
        prefix = self.prefix
        if not path.startswith(prefix) or _is_editor_temp(os.path.basename(path)):
            return False
        relative = path[len(prefix) :].replace(os.sep, "/")
        return self._regex.fullmatch(relative) is not None

    def walk(self, skip_dir: Callable[[str], bool] | None = None) -> tuple[list[str], list[str]]:
        """The directories to watch and the matching files, as they are now; skip_dir(path):
        true for a folder not to walk (one --exclude covers)."""
        dirs: list[str] = []
        files: list[str] = []
        for parent, subdirs, names in os.walk(self.root):
            dirs.append(parent)
            if not self.recursive:
                subdirs.clear()
            subdirs[:] = [
                d
                for d in subdirs
                if d not in SKIPPED_DIRS
                and not d.startswith(".")
                and not (skip_dir and skip_dir(os.path.join(parent, d)))
            ]
            files += [p for name in names if self.matches(p := os.path.join(parent, name))]
        return dirs, files


def _is_editor_temp(name: str) -> bool:
    # vim (.x.swp, x~, 4913), emacs (.#x, #x#), JetBrains safe-write (x___jb_tmp___).
    return (
        name.startswith((".", "#"))
        or name.endswith(("~", "___jb_tmp___", "___jb_old___"))
        or name == "4913"
    )
