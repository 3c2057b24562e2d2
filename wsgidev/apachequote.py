"""The one place values become httpd.conf text: every path, name and word a user typed or a
folder is called goes through here, escaped for what Apache parses, or refused in one line.

What Apache does to a value, and what this does about it:
- a line end ends the directive: the rest would be a directive of its own (an `Include` of any
  file, a piped log running a command). Apache has no escape for it, so a value holding a line
  end or another control character is refused;
- a double-quoted argument takes `\\\\` and `\\"` as escapes;
- `${NAME}` is replaced by a Define or an environment variable (a folder named `a${HOME}`
  became `a/root`). Apache has no escape for it either: each config defines
  `WSGIDEV_DOLLAR` as `$`, and a `${` in a value is written `${WSGIDEV_DOLLAR}{`, which Apache
  expands once, to the literal `${`;
- inside an expression's single-quoted string (`SetEnvIfExpr "-f '...'"`), `%{NAME}` and `$1`
  are variables and `\\` escapes: those are backslash-escaped (expr_string), then the whole
  expression is quoted as an argument;
- `<Directory>` and `Include` read `*`, `?` and `[` as wildcards (literal_pattern);
- names mod_wsgi takes as words (process groups) are made of ASCII letters, digits, `_.-` alone
  (ascii_name): a group named from a folder called `café` was not found again by name.
"""

from __future__ import annotations

import re
import unicodedata

from wsgidev.errors import WsgidevError

DOLLAR = "WSGIDEV_DOLLAR"
# Put at the top of every generated config (and snippet): what ${WSGIDEV_DOLLAR} expands to.
DEFINE_DOLLAR = f"Define {DOLLAR} $"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_EXPR_SPECIAL = re.compile(r"([\\'%$])")


class UnsafeValue(WsgidevError):
    """A value Apache cannot be given (it would change the config's meaning)."""


def check(value: object, what: str = "a value") -> str:
    """The value as text, or UnsafeValue when it holds a line end or another control character."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8 (os.fsdecode's surrogates)
        raise UnsafeValue(
            f"{what} {text.encode('utf-8', 'surrogateescape')!r} is not UTF-8, which the config is written in",
            "rename it with UTF-8 characters",
        ) from None
    bad = _CONTROL.search(text)
    if bad is not None:
        name = {"\n": "a line break", "\r": "a carriage return", "\x00": "a NUL"}.get(
            bad.group(), f"the control character {bad.group()!r}"
        )
        raise UnsafeValue(
            f"{what} {text!r} holds {name}, which Apache's config cannot carry",
            "rename it (or pass another value) without it",
        )
    return text


def arg(value: object, what: str = "a value") -> str:
    """A double-quoted Apache argument that means exactly value (the templates' `q` filter)."""
    text = check(value, what).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("${", "${" + DOLLAR + "}{") + '"'


def expr_string(value: object, what: str = "a value") -> str:
    """value inside a single-quoted ap_expr string, before arg() quotes the whole expression."""
    return _EXPR_SPECIAL.sub(r"\\\1", check(value, what))


_WILDCARD = re.compile(r"[*?\[]")


def literal_pattern(path: str) -> str:
    """A path for <Directory> or Include, which Apache matches as a wildcard pattern
    (apr_fnmatch) when it holds `*`, `?` or `[`. Each of those is then a one-character class
    (`[*]`, `[?]`, `[[]`; a backslash before `[` did not match, tried on Apache 2.4) and a
    backslash is escaped, so the path matches itself alone."""
    if not _WILDCARD.search(path):
        return path
    special = {"*": "[*]", "?": "[?]", "[": "[[]", "\\": "\\\\"}
    return "".join(special.get(character, character) for character in path)


def ascii_name(value: str, fallback: str = "app") -> str:
    """A name mod_wsgi and Apache take as one word: ASCII letters, digits and `_.-` only
    (accents dropped, anything else an underscore)."""
    plain = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9_.-]", "_", plain).strip("._") or fallback
