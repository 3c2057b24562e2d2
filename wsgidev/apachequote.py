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
- allowed Host names become one regular expression (host_regex) built only from checked names
  (letters, digits, `-_` and dots), dots written `[.]`: nothing in it is escaped;
- names mod_wsgi takes as words (process groups) are made of ASCII letters, digits, `_.-` alone
  (ascii_name): a group named from a folder called `café` was not found again by name.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable

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


# A name the Host check answers (--allow-host, Django's ALLOWED_HOSTS): DNS labels, with a
# leading dot for the name and every name below it (Django's ".example.com").
HOST_NAME = re.compile(r"\.?[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
# Always answered: localhost and the names below it (browsers resolve them to loopback
# themselves), and any IP address (an address cannot be rebound to another machine).
ALWAYS_NAMES = (".localhost",)
_ADDRESSES = ("[0-9]+([.][0-9]+){3}", "[[][0-9A-Fa-f:.]+[]]")


def bare_host(host: str) -> str:
    """A host without an IPv6 literal's brackets ([::1] -> ::1), as sockets and certificates
    take it: the one place they come off."""
    return host.strip("[]")


def answered_anyway(name: str) -> bool:
    """Whether the Host check answers this name without being told: localhost or an address."""
    plain = name.strip(".").lower()
    if plain == "localhost" or plain.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(bare_host(name))
    except ValueError:
        return False
    return True


def host_regex(names: Iterable[str]) -> str:
    """An ap_expr regex (m#...#i) that a Host header (with its port) matches when it names
    localhost, an IP address or one of names; names are checked (HOST_NAME), never escaped."""
    parts = []
    for name in [*ALWAYS_NAMES, *names]:
        if not HOST_NAME.fullmatch(name):
            raise UnsafeValue(
                f"{name!r} is not a host name",
                "pass a name such as myapp.test (.myapp.test: and below)",
            )
        below = name.startswith(".")
        plain = name.strip(".").lower().replace(".", "[.]")
        parts.append(f"([a-z0-9_-]+[.])*{plain}" if below else plain)
    alternatives = "|".join(dict.fromkeys([*parts, *_ADDRESSES]))
    return f"m#^({alternatives})[.]?(:[0-9]+)?$#i"
