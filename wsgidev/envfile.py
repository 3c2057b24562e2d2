"""Read `--env-file`: NAME=VALUE lines in the format python-dotenv reads.

Why not python-dotenv itself: it installs a top-level `dotenv` package, and wsgidev lives in the
project's own venv. django-dotenv, which many Django projects pin, installs a `dotenv` *module*;
python-dotenv's package shadows it, so `dotenv.read_dotenv()` in the project's manage.py and
wsgi.py fails with an AttributeError the moment wsgidev is installed (seen on a real Wagtail
site). No maintained reader of this format has an import name of its own, so this module ports
python-dotenv 1.2's reader (parser.py and the `${NAME:-default}` expansion of dotenv_values(),
BSD-licensed) step for step, and tests/test_requirements.py compares the two on tricky files:

- `# comment` lines and blank lines; an optional `export ` before the name;
- unquoted values end at a `#` after a blank (a comment) and lose trailing blanks;
  `KEY= # comment` is empty;
- `'single'` quotes take only `\\'` and `\\\\` as escapes, `"double"` quotes also `\\n \\t \\"`
  and the like, and both may span lines;
- `${NAME}` and `${NAME:-default}` expand from the names above in the file, then from the
  environment; a name with no `=` gets no value.

One difference: a line python-dotenv cannot parse is skipped there with a warning; here it is
an error naming its line, as wsgidev says of any bad input.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Mapping
from pathlib import Path

_MULTILINE_WHITESPACE = re.compile(r"\s*", re.MULTILINE)
_WHITESPACE = re.compile(r"[^\S\r\n]*")
_EXPORT = re.compile(r"(?:export[^\S\r\n]+)?")
_SINGLE_QUOTED_KEY = re.compile(r"'([^']+)'")
_UNQUOTED_KEY = re.compile(r"([^=\#\s]+)")
_EQUAL_SIGN = re.compile(r"(=[^\S\r\n]*)")
_SINGLE_QUOTED_VALUE = re.compile(r"'((?:\\.|[^'\\])*)'", re.DOTALL)
_DOUBLE_QUOTED_VALUE = re.compile(r'"((?:\\.|[^"\\])*)"', re.DOTALL)
_UNQUOTED_VALUE = re.compile(r"([^\r\n]*)")
_COMMENT = re.compile(r"(?:[^\S\r\n]*#[^\r\n]*)?")
_END_OF_LINE = re.compile(r"[^\S\r\n]*(?:\r\n|\n|\r|$)")
_DOUBLE_QUOTE_ESCAPES = re.compile(r"\\[\\'\"abfnrtv]")
_SINGLE_QUOTE_ESCAPES = re.compile(r"\\[\\']")
_VARIABLE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")


class EnvFileError(ValueError):
    """A line that is not NAME=VALUE; its number is in the message."""


class _Reader:
    def __init__(self, text: str) -> None:
        self.text = text.removeprefix("\ufeff")
        self.at = 0

    def more(self) -> bool:
        return self.at < len(self.text)

    def peek(self) -> str:
        return self.text[self.at : self.at + 1]

    def read(self, pattern: re.Pattern[str]) -> str:
        match = pattern.match(self.text, self.at)
        if match is None:
            raise EnvFileError(f"line {self.text.count(chr(10), 0, self.at) + 1} is not NAME=VALUE")
        self.at = match.end()
        return match.group(1) if pattern.groups else match.group()


def read_env_file(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The NAME -> VALUE pairs of a dotenv file, variables expanded (from the file, then environ)."""
    reader = _Reader(path.read_text(encoding="utf-8"))
    known: dict[str, str | None] = dict(os.environ if environ is None else environ)
    values: dict[str, str | None] = {}
    while reader.more():
        name, raw = _binding(reader)
        if name is None:
            continue
        value = None if raw is None else _expand(raw, known)
        values[name] = known[name] = value
    return {name: value for name, value in values.items() if value is not None}


def _binding(reader: _Reader) -> tuple[str | None, str | None]:
    """One NAME=VALUE (python-dotenv's parse_binding); (None, None) for a blank or a comment."""
    reader.read(_MULTILINE_WHITESPACE)
    if not reader.more():
        return None, None
    reader.read(_EXPORT)
    name = _name(reader)
    reader.read(_WHITESPACE)
    value: str | None = None
    if reader.peek() == "=":
        equal_sign = reader.read(_EQUAL_SIGN)
        # `KEY= # comment` is empty; `KEY=#novalue` is the value "#novalue".
        value = "" if len(equal_sign) > 1 and reader.peek() == "#" else _value(reader)
    reader.read(_COMMENT)
    reader.read(_END_OF_LINE)
    return name, value


def _name(reader: _Reader) -> str | None:
    first = reader.peek()
    if first == "#":
        return None
    return reader.read(_SINGLE_QUOTED_KEY if first == "'" else _UNQUOTED_KEY)


def _value(reader: _Reader) -> str:
    first = reader.peek()
    if first == "'":
        return _decode(_SINGLE_QUOTE_ESCAPES, reader.read(_SINGLE_QUOTED_VALUE))
    if first == '"':
        return _decode(_DOUBLE_QUOTE_ESCAPES, reader.read(_DOUBLE_QUOTED_VALUE))
    if first in ("", "\n", "\r"):
        return ""
    return re.sub(r"\s+#.*", "", reader.read(_UNQUOTED_VALUE)).rstrip()


def _decode(escapes: re.Pattern[str], value: str) -> str:
    return escapes.sub(lambda m: codecs.decode(m.group(), "unicode-escape"), value)


def _expand(value: str, known: Mapping[str, str | None]) -> str:
    def resolve(match: re.Match[str]) -> str:
        default = match.group("default") or ""
        found = known.get(match.group("name"), default)
        return found if found is not None else ""

    return _VARIABLE.sub(resolve, value)
