"""Read `--env-file`: NAME=VALUE lines in the format python-dotenv and docker compose read.

Why not python-dotenv itself: it installs a top-level `dotenv` package, and wsgidev lives in the
project's own venv. django-dotenv, which many Django projects pin, installs a `dotenv` *module*;
python-dotenv's package shadows it, so `dotenv.read_dotenv()` in the project's manage.py and
wsgi.py fails with an AttributeError the moment wsgidev is installed (seen on a real Wagtail
site). No maintained reader of this format has an import name of its own, so this module reads
it, following python-dotenv's rules for what `dotenv_values()` returns:

- `# comment` lines and blank lines; an optional `export ` before the name;
- unquoted values end at ` #` (a comment) and lose surrounding blanks;
- `'single'` quotes keep everything as written (only `\\'` and `\\\\` are escapes);
- `"double"` quotes take the escapes `\\n \\t \\r \\" \\\\` and the like, and may span lines;
- `${NAME}` and `${NAME:-default}` expand (in every kind of value, as python-dotenv does) from
  the names above in the file, then from the environment; a name with no `=` is left out.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping
from pathlib import Path

_NAME = r"(?:export[ \t]+)?(?P<name>[^=#\s'\"]+|'[^']+'|\"[^\"]+\")"
_LINE = re.compile(
    rf"[ \t]*{_NAME}[ \t]*(?:=[ \t]*(?P<value>"
    r"'(?:\\'|[^'])*'"  # single-quoted
    r"|\"(?:\\\"|[^\"])*\""  # double-quoted, possibly over several lines
    r"|[^\r\n]*"  # unquoted, to the end of the line
    r"))?[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)",
)
_BLANK_OR_COMMENT = re.compile(r"[ \t]*(?:#[^\r\n]*)?(?:\r\n|\n|\r|$)")
_SINGLE_ESCAPE = re.compile(r"\\[\\']")
_DOUBLE_ESCAPE = re.compile(r"\\[\\'\"abfnrtv]")
_VARIABLE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")


class EnvFileError(ValueError):
    """A line that is not NAME=VALUE; its number is in the message."""


def read_env_file(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The NAME -> VALUE pairs of a dotenv file, variables expanded (from the file, then environ)."""
    text = path.read_text(encoding="utf-8")
    environ = os.environ if environ is None else environ
    values: dict[str, str] = {}
    position = 0
    while position < len(text):
        blank = _BLANK_OR_COMMENT.match(text, position)
        if blank is not None and blank.end() > position:
            position = blank.end()
            continue
        line = _LINE.match(text, position)
        if line is None or line.end() == position:
            number = text.count("\n", 0, position) + 1
            raise EnvFileError(f"line {number} is not NAME=VALUE")
        position = line.end()
        name, raw = line.group("name").strip("'\""), line.group("value")
        if raw is None:
            continue  # a name alone: python-dotenv gives it no value
        values[name] = _value(raw, {**environ, **values})
    return values


def _value(raw: str, known: Mapping[str, str]) -> str:
    if raw[:1] == "'" and raw[-1:] == "'" and len(raw) > 1:
        return _expand(_SINGLE_ESCAPE.sub(lambda m: m.group()[1], raw[1:-1]), known)
    if raw[:1] == '"' and raw[-1:] == '"' and len(raw) > 1:
        inner = _DOUBLE_ESCAPE.sub(lambda m: codecs.decode(m.group(), "unicode_escape"), raw[1:-1])
        return _expand(inner, known)
    if raw[:1] in ("'", '"'):
        # A quote that does not close on this line: python-dotenv reads such a value as written.
        return _expand(raw.rstrip(), known)
    comment = re.search(r"[ \t]+#", raw)
    return _expand((raw[: comment.start()] if comment else raw).strip(), known)


def _expand(value: str, known: Mapping[str, str]) -> str:
    def resolve(match: re.Match[str]) -> str:
        name = match.group("name")
        return known[name] if name in known else (match.group("default") or "")

    return _VARIABLE.sub(resolve, value)
