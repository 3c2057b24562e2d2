"""The `exclude` option: files that never trigger a reload, and are not listed as watched.

How a pattern is matched (globs with pathlib's rules, wsgidev/shared/globpattern.py; gitignore's idea
of where a pattern applies):

- no ``/`` (``*.log``, ``media``, ``settings_local.json``): the name of a file or of any folder
  it is in, anywhere below the project folder; outside it, the file's own name;
- relative with a ``/`` (``myapp/generated/*.py``, ``**/migrations/**``, ``uploads/``): the path
  relative to the project folder (the working directory), of the file or of a folder it is in;
- absolute (``/srv/shared/cache/**``): the absolute path of the file or of a folder it is in.

A folder that matches excludes everything in it, so ``media`` and ``media/**`` say the same.
A plain name never reaches into the standard library or site-packages by a folder name (``lib``
must not drop /usr/lib/python3): outside the project only the file's own name counts, and an
absolute pattern reaches anywhere.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from wsgidev.shared.globpattern import check, compile_glob, exclude_text, segment_regex


@dataclass
class Rule:
    """One pattern, compiled, with what it kept out (for the listing)."""

    pattern: str
    kind: str  # "name", "relative" or "absolute"
    regex: re.Pattern[str]
    kept_out: set[str] = field(default_factory=set)


class Exclusions:
    """The exclude patterns of one process, matched against absolute paths."""

    def __init__(self, patterns: Iterable[str], project_dir: str | None = None) -> None:
        self.project_dir = os.path.abspath(project_dir or os.getcwd())
        self.rules: list[Rule] = []
        for pattern in patterns:
            text = exclude_text(pattern)
            check(text)  # the command checked it too: an empty one, a '[' without ']'
            if "/" not in text:
                rule = Rule(pattern, "name", re.compile(segment_regex(text)))
            elif text.startswith("/"):
                rule = Rule(pattern, "absolute", compile_glob(text.lstrip("/")))
            else:
                rule = Rule(pattern, "relative", compile_glob(text))
            self.rules.append(rule)
        self._dirs: dict[str, Rule | None] = {}  # a folder -> the rule that covers it

    def __bool__(self) -> bool:
        return bool(self.rules)

    def excluded(self, path: str) -> bool:
        """Whether a file (absolute) is excluded; it is counted for the listing when it is."""
        rule = self.rule_for(path)
        if rule is None:
            return False
        rule.kept_out.add(path)
        return True

    def rule_for(self, path: str) -> Rule | None:
        """The rule that excludes this file or folder, or None."""
        if not self.rules:
            return None
        covering = self._dir_rule(os.path.dirname(path))
        if covering is not None:
            return covering
        return self._own_rule(path, inside=self._inside(path))

    def covers_dir(self, path: str) -> bool:
        """Whether a folder (absolute) and everything in it is excluded: not walked, not watched."""
        return bool(self.rules) and self._dir_rule(path) is not None

    def _dir_rule(self, folder: str) -> Rule | None:
        if folder in self._dirs:
            return self._dirs[folder]
        parent = os.path.dirname(folder)
        inside = self._inside(folder)
        rule = self._dir_rule(parent) if parent != folder else None
        if rule is None and folder != self.project_dir:
            rule = self._own_rule(folder, inside=inside, is_dir=True)
        self._dirs[folder] = rule
        return rule

    def _own_rule(self, path: str, *, inside: bool, is_dir: bool = False) -> Rule | None:
        """The rule that matches this path itself (not through a folder above it)."""
        relative = path[len(self.project_dir) + 1 :].replace(os.sep, "/") if inside else None
        absolute = path.lstrip(os.sep).replace(os.sep, "/")
        name = os.path.basename(path)
        for rule in self.rules:
            if rule.kind == "name":
                # Folders outside the project never match by name: only the file's own name.
                if (inside or not is_dir) and rule.regex.fullmatch(name):
                    return rule
            elif rule.kind == "relative":
                if relative is not None and rule.regex.fullmatch(relative):
                    return rule
            elif rule.regex.fullmatch(absolute):
                return rule
        return None

    def _inside(self, path: str) -> bool:
        return path.startswith(self.project_dir + os.sep)

    def summary(self) -> list[tuple[str, int, list[str]]]:
        """Each pattern, how many files it kept out, and a few of them."""
        return [(r.pattern, len(r.kept_out), sorted(r.kept_out)[:3]) for r in self.rules]
