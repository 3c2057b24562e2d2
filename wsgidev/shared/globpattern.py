"""Glob patterns as wsgidev reads them (--watch, --exclude): pathlib's rules, checked strictly.

A leaf module: the command checks a pattern when it builds Options, the daemon's monitor
compiles the same pattern, and both must agree. The rules are pathlib's glob rules: ``*`` and
``?`` stay within one path part, ``[abc]`` / ``[!abc]`` match one character of a part, and a
part that is exactly ``**`` spans any number of folders. Why not the standard matchers:
``fnmatch`` lets ``*`` cross ``/`` (``*.py`` would match ``a/b.py``, which surprises with
patterns anchored at a folder), ``PurePath.match`` has no ``**`` before Python 3.13, and
``glob.translate`` is 3.13 only; wcmatch would be a new dependency for these few lines.
Unlike fnmatch, a ``[`` without its ``]`` and a ``**`` inside a part are errors, not literal
text: ``--watch '['`` was accepted silently and watched nothing.
"""

from __future__ import annotations

import re

MAGIC = re.compile(r"[*?\[]")


class GlobError(ValueError):
    """A pattern that is not a valid glob: str() says what is wrong, fix how to write it."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(problem)
        self.fix = fix


def has_magic(text: str) -> bool:
    """Whether text has glob characters (else it is a plain path)."""
    return MAGIC.search(text) is not None


def check(pattern: str) -> None:
    """Raise GlobError when pattern is not a valid glob."""
    compile_glob(pattern)


def escape(path: str) -> str:
    """A path as a glob that matches it literally (a folder named "a[1]" stays itself)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


def exclude_text(pattern: str) -> str:
    """An exclude pattern as matched: "./media/" is "media" (a folder excludes what is in it)."""
    return pattern.strip().removeprefix("./").rstrip("/")


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex for a '/'-separated path with pathlib's rules: "**" spans folders, "*" does not."""
    if not pattern.strip():
        raise GlobError("is empty", "pass a pattern such as '*.log' or 'generated/**'")
    parts: list[str] = []
    segments = pattern.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(segment_regex(segment) + ("" if last else "/"))
    try:
        return re.compile("".join(parts))
    except re.error as exc:  # a character range out of order: [z-a]
        raise GlobError(
            f"is not a valid glob ({exc.msg})", "write a range low to high, as in [a-z]"
        ) from None


def segment_regex(segment: str) -> str:
    """The regex of one path part (no '/')."""
    if "**" in segment:
        raise GlobError(
            f"is not a valid glob: '**' inside the part {segment!r}",
            "make '**' a whole part, as in 'a/**' or '**/*.py'",
        )
    out: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            close = segment.find("]", index + 2)  # "[]]" is a class holding "]"
            if close == -1:
                raise GlobError(
                    "is not a valid glob: a '[' without its ']'",
                    "close it, or write [[] for a literal [",
                )
            body = segment[index + 1 : close]
            negate = body.startswith("!")
            # Every character literal but a range's "-" ("[", "&&", "~~" are set syntax in re).
            literal = "".join(c if c == "-" else re.escape(c) for c in body[negate:])
            out.append("[" + "^" * negate + literal + "]")
            index = close
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)
