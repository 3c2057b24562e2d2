"""Every message between wsgidev's processes, as types: the daemons' events and the hand-over's
control datagrams, encoded and decoded here and nowhere else.

Both sides import this module: a daemon builds an event and `wsgidev.shared.events.emit` writes it to
Apache's error log; `wsgidev start` reads the log and `decode` gives the event back. The daemons
of one server send each other `Control` messages over their sockets (wsgidev/daemon/handover.py).
A message that does not decode (another wsgidev version, a damaged line) becomes `Unreadable`,
which the reader reports in one line; it never raises.
"""

from __future__ import annotations

import dataclasses
import json
import time
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

# An event names at most this many files (and counts them all): one error-log line each.
MAX_EVENT_FILES = 20
Answers = dict[str, str]  # pid (as text) -> "ready", "stale", "gone", "timeout", "debugging"


@dataclass(frozen=True, kw_only=True)
class Event:
    """Something a daemon process tells `wsgidev start` (and, in words, a person)."""

    KIND: ClassVar[str] = ""
    pid: int = 0  # the process that says it (filled in by emit)
    t: float = 0.0  # when, time.time() (filled in by emit)


# -- the app's import ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Ready(Event):
    """The app is imported: this process serves it."""

    KIND = "ready"
    import_s: float = 0.0
    started_at: float = 0.0  # when the import began: it read the files as they were then
    group: str | None = None  # the process's daemon group


@dataclass(frozen=True, kw_only=True)
class ImportFailed(Event):
    """The app failed to import: this process serves the error page."""

    KIND = "import-error"
    error: str = ""
    traceback: str = ""


@dataclass(frozen=True, kw_only=True)
class ImportSlow(Event):
    """The app's import is stuck past its deadline: requests get a page saying so."""

    KIND = "import-slow"
    error: str = ""
    traceback: str = ""


@dataclass(frozen=True, kw_only=True)
class RequestExit(Event):
    """A request raised SystemExit (the process answers 500 and goes on)."""

    KIND = "request-exit"
    error: str = ""
    traceback: str = ""


@dataclass(frozen=True, kw_only=True)
class Settled(Event):
    """A process started during a deploy waited for its code to be quiet before serving."""

    KIND = "settled"
    waited_s: float = 0.0
    files: tuple[str, ...] = ()  # changed after its import: it restarts instead of serving
    count: int = 0
    quiet: bool = True


# -- changes and how they come in ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Change(Event):
    """Files this process imported changed: it restarts, or leads a hand-over."""

    KIND = "change"
    files: tuple[str, ...] = ()  # at most MAX_EVENT_FILES of them
    count: int = 0  # how many changed, named or not
    backend: str = ""
    saved_at: float = 0.0  # when the earliest was saved (wsgidev.daemon.monitor.base.saved_at_s)


@dataclass(frozen=True, kw_only=True)
class Handled(Event):
    """Django took these files in place (templates, translations): no restart."""

    KIND = "handled"
    files: tuple[str, ...] = ()
    count: int = 0
    saved_at: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Handover(Event):
    """The serving group handed requests over to a standby group (the route flipped)."""

    KIND = "handover"
    to: str = ""  # the group that serves now
    files: tuple[str, ...] = ()
    answers: Answers = dataclasses.field(default_factory=dict)  # the taking group's
    passed: Answers = dataclasses.field(default_factory=dict)  # groups passed over
    retiring: tuple[int, ...] = ()  # the old group's processes, told to retire
    seconds: float = 0.0

    def takers(self) -> set[int]:
        """The processes that answered ready: they serve the new code."""
        return {int(pid) for pid, answer in self.answers.items() if answer == "ready"}


@dataclass(frozen=True, kw_only=True)
class RestartInPlace(Event):
    """No standby could take the change: the serving group restarts where it is."""

    KIND = "restart-in-place"
    group: str = ""
    files: tuple[str, ...] = ()
    answers: Answers = dataclasses.field(default_factory=dict)
    passed: Answers = dataclasses.field(default_factory=dict)
    retiring: tuple[int, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class Exit(Event):
    """This process exits: no request gets its (old) code any more."""

    KIND = "exit"
    last_answer_at: float = 0.0  # when its app last returned a response (0.0: never)


@dataclass(frozen=True, kw_only=True)
class DebugHeld(Event):
    """A debugger session keeps this stopping process alive (it serves only that request)."""

    KIND = "debug-held"
    reason: str = ""  # mod_wsgi's shutdown reason
    group: str | None = None


@dataclass(frozen=True, kw_only=True)
class Cut(Event):
    """Requests still running past --shutdown-timeout: this process ends them."""

    KIND = "cut"
    requests: tuple[str, ...] = ()
    timeout_s: float = 0.0
    shutdown_reason: str = ""
    reason: str = ""


# -- standbys -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Preloaded(Event):
    """A standby warmed: the libraries (and Django's setup) the serving group recorded."""

    KIND = "preloaded"
    imported: int = 0
    seconds: float = 0.0
    stopped_at: str | None = None
    full: bool = True
    django: bool = False
    django_error: str | None = None


@dataclass(frozen=True, kw_only=True)
class StandbyRefresh(Event):
    """A standby restarts: files it had loaded changed."""

    KIND = "standby-refresh"
    files: tuple[str, ...] = ()
    count: int = 0


# -- what is watched ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Watching(Event):
    """How much this process watches."""

    KIND = "watching"
    file_count: int = 0
    dir_count: int = 0
    backend: str = ""


@dataclass(frozen=True, kw_only=True)
class WatchList(Event):
    """What this process watches, by folder and reason (wsgidev.daemon.monitor.listing)."""

    KIND = "watch-list"
    file_count: int = 0
    dir_count: int = 0
    folders: list[Any] = dataclasses.field(default_factory=list)
    extra: list[Any] = dataclasses.field(default_factory=list)
    extra_more: int = 0
    globs: list[Any] = dataclasses.field(default_factory=list)
    django: list[Any] = dataclasses.field(default_factory=list)
    excluded: list[Any] = dataclasses.field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class SilentMount(Event):
    """Files under this mount are polled: it sends no notification of changes beneath it."""

    KIND = "silent-mount"
    mount: str = ""
    fstype: str = ""
    interval: float = 1.0


@dataclass(frozen=True, kw_only=True)
class StaticDirs(Event):
    """The static folders the browsers' live reload watches (URL prefix, folder)."""

    KIND = "static-dirs"
    folders: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Sql(Event):
    """A query a request ran (--print-sql), as the database got it."""

    KIND = "sql"
    sql: str = ""
    ms: float = 0.0
    request: str = ""  # "GET /path"


@dataclass(frozen=True, kw_only=True)
class RepeatedQuery(Event):
    """One shape of query ran many times in one request (an N+1?)."""

    KIND = "repeated-query"
    sql: str = ""  # with its placeholders
    runs: int = 0
    where: str = ""  # "shop/views.py:42 in product_list": the first run's line in the project
    request: str = ""


@dataclass(frozen=True, kw_only=True)
class DebuggerPin(Event):
    """--werkzeug: the PIN Werkzeug's console asks for (every process has the same)."""

    KIND = "debugger-pin"
    pin: str = ""  # "": none (WERKZEUG_DEBUG_PIN=off)


@dataclass(frozen=True, kw_only=True)
class Refused(Event):
    """A part of wsgidev could not do its job in this process (the app is served anyway)."""

    KIND = "refused"
    reason: str = ""
    part: str = "monitor"  # which part: "monitor", "debugger", "toolbar"


@dataclass(frozen=True, kw_only=True)
class Unreadable(Event):
    """A line that looked like an event but did not decode."""

    KIND = "unreadable"
    kind: str = ""
    problem: str = ""


EVENTS: dict[str, type[Event]] = {
    kind.KIND: kind
    for kind in (
        Ready,
        ImportFailed,
        ImportSlow,
        RequestExit,
        Settled,
        Change,
        Handled,
        Handover,
        RestartInPlace,
        Exit,
        DebugHeld,
        Cut,
        Preloaded,
        StandbyRefresh,
        Watching,
        WatchList,
        SilentMount,
        StaticDirs,
        Sql,
        RepeatedQuery,
        DebuggerPin,
        Refused,
    )
}


def encode(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready record."""
    return {"event": event.KIND, **dataclasses.asdict(event)}


def fields(event: Event) -> dict[str, Any]:
    """The event's own fields (without pid and time), as encoded."""
    record = dataclasses.asdict(event)
    record.pop("pid"), record.pop("t")
    return record


def decode(record: object) -> Event:
    """The event a record encodes; Unreadable when it names no known kind or a field is wrong."""
    if not isinstance(record, dict):
        return Unreadable(problem="not an object")
    kind = str(record.get("event", ""))
    pid, t = _number(record.get("pid"), int), _number(record.get("t", time.time()), float)
    event_class = EVENTS.get(kind)
    if event_class is None:
        return Unreadable(pid=pid, t=t, kind=kind, problem="no such event")
    try:
        return _typed(event_class, {**record, "pid": pid, "t": t})
    except _BadField as bad:
        return Unreadable(pid=pid, t=t, kind=kind, problem=f"bad {bad}")


# -- the hand-over's control datagrams ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Control:
    """A datagram between daemon processes of one server."""

    OP: ClassVar[str] = ""


@dataclass(frozen=True, kw_only=True)
class Go(Control):
    """Take over: answer ready or stale to reply at once (once warm, where warm_first)."""

    OP = "go"
    reply: str = ""
    warm_first: bool = False


@dataclass(frozen=True, kw_only=True)
class Answer(Control):
    """A standby's answer to go: "ready" or "stale"."""

    OP = "answer"
    answer: str = ""
    pid: int = 0


@dataclass(frozen=True, kw_only=True)
class Retire(Control):
    """Stop taking requests: finish those in flight and exit (Apache starts a standby)."""

    OP = "retire"


@dataclass(frozen=True, kw_only=True)
class Warm(Control):
    """New code serves: warm up (or restart, if what this standby imported changed)."""

    OP = "warm"


@dataclass(frozen=True, kw_only=True)
class Close(Control):
    """Stop listening (the process's own socket, on close)."""

    OP = "close"


CONTROLS: dict[str, type[Control]] = {kind.OP: kind for kind in (Go, Answer, Retire, Warm, Close)}


def pack(message: Control) -> bytes:
    """A control message as a datagram."""
    return json.dumps({"op": message.OP, **dataclasses.asdict(message)}).encode()


def unpack(data: bytes) -> Control | None:
    """The control message in a datagram; None when it is not one."""
    try:
        record = json.loads(data)
        message_class = CONTROLS[record.pop("op")]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    try:
        return _typed(message_class, record)
    except _BadField:
        return None


# -- decoding helpers ---------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}
_T = typing.TypeVar("_T")


class _BadField(Exception):
    """A record's field (named by the exception's text) is not of its type."""


def _typed(kind: type[_T], record: dict[str, Any]) -> _T:
    """An instance of the dataclass kind from a decoded record: the fields it names, each as
    its type says; _BadField names the first that is not."""
    hints = _hints(kind)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        if field.name in record:
            try:
                values[field.name] = _coerce(record[field.name], hints[field.name])
            except (TypeError, ValueError, OverflowError, RecursionError):
                raise _BadField(field.name) from None
    return kind(**values)


def _hints(kind: type) -> dict[str, Any]:
    if kind not in _HINTS:
        _HINTS[kind] = typing.get_type_hints(kind)
    return _HINTS[kind]


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        return kind()


def _coerce(value: object, hint: Any) -> Any:
    """The value as the field's type says (JSON has lists for tuples); TypeError when it is
    not that type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return _coerce(value, next(arg for arg in args if arg is not type(None)))
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError("not a boolean")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("not a number")
        return hint(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError("not text")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise TypeError("not a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in value)
        if len(args) != len(value):
            raise TypeError("wrong length")
        return tuple(_coerce(item, arg) for item, arg in zip(value, args, strict=True))
    if origin is dict or hint is dict:  # Answers: pid -> answer
        if not isinstance(value, dict) or not all(str(key).isdigit() for key in value):
            raise TypeError("not an object of pids")
        return {str(key): str(item) for key, item in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise TypeError("not a list")
        return value
    return value
