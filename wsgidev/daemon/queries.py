"""A Django request's queries, for the terminal: their count and time on the access line, each
one with --print-sql (as runserver_plus prints them), and a hint when one shape of query runs
again and again in a request (an N+1: a loop that fetches what one query could).

Counted with Django's own hook, connection.execute_wrapper (on every database of the request's
thread), until the response starts: the count reaches Apache as a response header, which the
server's config copies into a note for its access log and removes (the client never sees it).
Queries a streamed response runs while it is sent are not counted. Django's DEBUG-only
connection.queries is not used: it records nothing with DEBUG off. Nothing here may break the
app: a failure of the bookkeeping loses a count, never a query or a response.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from typing import Any

from wsgidev.shared import events, protocol
from wsgidev.shared.processes import short_path
from wsgidev.shared.spec import WSGIApp

# The response header the daemon adds and the server's config turns into the access log's note
# (templates/standalone.conf.j2): "<count> <milliseconds>".
HEADER = "X-Wsgidev-Queries"
# This many runs of one query shape in one request get a hint.
REPEATED = 5
# The most an event's SQL takes as JSON: an error-log line has room for about 8 KB, and the
# payload is base64 (a third more); non-ASCII text takes six characters a letter in JSON.
MAX_SQL_JSON = 4000
MAX_REQUEST_CHARS = 200


class Tally:
    """One request's queries: an execute wrapper (Django calls it for every query it runs)."""

    def __init__(self, print_sql: bool, request: str) -> None:
        self.print_sql = print_sql
        self.request = request[:MAX_REQUEST_CHARS]
        self.count = 0
        self.seconds = 0.0
        # Query shape (its SQL with placeholders) -> runs, and where the first ran from.
        self.shapes: dict[str, list[Any]] = {}

    def __call__(
        self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any
    ) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            with contextlib.suppress(Exception):
                self._note(time.perf_counter() - started, sql, params, many, context)

    def _note(self, took: float, sql: Any, params: Any, many: bool, context: Any) -> None:
        self.count += 1
        self.seconds += took
        shape = sql if isinstance(sql, str) else str(sql)  # psycopg's sql.Composed, say
        runs = self.shapes.get(shape)
        if runs is None:
            self.shapes[shape] = [1, _caller()]
        else:
            runs[0] += 1
        if self.print_sql:
            text = _executed(context, shape, params, many)
            events.emit(
                protocol.Sql(sql=_fitted(text), ms=round(took * 1000, 2), request=self.request)
            )

    def header(self) -> tuple[str, str]:
        return HEADER, f"{self.count} {self.seconds * 1000:.1f}"

    def hints(self) -> None:
        """Say which query shapes ran REPEATED times or more."""
        for sql, (runs, where) in self.shapes.items():
            if runs >= REPEATED:
                events.emit(
                    protocol.RepeatedQuery(
                        sql=_fitted(sql), runs=runs, where=where, request=self.request
                    )
                )


def with_query_count(application: WSGIApp, print_sql: bool) -> WSGIApp:
    """The Django app, its requests' queries counted (and printed with print_sql); the app as
    it is where Django's settings are not configured (an app that only imported django.db)."""
    from django.conf import settings
    from django.db import connections

    if not settings.configured:
        return application

    def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = f"{environ.get('REQUEST_METHOD', '')} {environ.get('PATH_INFO', '')}"
        tally = Tally(print_sql, request)

        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            if tally.count:
                headers = [*headers, tally.header()]
            return start_response(status, headers, *exc_info)

        with contextlib.ExitStack() as stack:
            # Each database's connection of this thread (made now if the thread had none: no
            # database is connected to before a query needs it). An alias whose backend cannot
            # load (a driver not installed for a database never used) is left alone, as Django
            # leaves it until a query needs it.
            for alias in connections:
                try:
                    wrapper = connections[alias].execute_wrapper(tally)
                except Exception:
                    continue
                stack.enter_context(wrapper)
            result = application(environ, start)
        with contextlib.suppress(Exception):
            tally.hints()
        return result

    return counted


def _fitted(sql: str) -> str:
    """The SQL, shortened to what an event line has room for."""
    if len(json.dumps(sql)) <= MAX_SQL_JSON:
        return sql
    cut = MAX_SQL_JSON // 6  # even letters JSON writes as \uXXXX fit
    while cut < len(sql) and len(json.dumps(sql[: cut * 2])) <= MAX_SQL_JSON:
        cut *= 2
    return sql[:cut] + "..."


def _executed(context: Any, sql: str, params: Any, many: bool) -> str:
    """The SQL as the database ran it, parameters in (Django's own rendering), where it can."""
    if many:
        return f"{sql} (executemany)"
    try:
        connection = context["connection"]
        text = connection.ops.last_executed_query(context["cursor"].cursor, sql, params)
    except Exception:
        text = None
    if not text or text == "None":  # a backend that cannot render it: SQL and parameters apart
        return f"{sql} {params!r}"
    return str(text)


# Frames from these are not the project's code: the standard library, installed packages, wsgidev.
_LIBRARY_ROOTS = tuple(
    {
        os.path.join(path, "")
        for name in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(name))
    }
    | {os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "")}
)
_PACKAGE_DIRS = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
# ...nor these, wherever they are installed (an editable checkout of Django, say).
_LIBRARY_MODULES = ("django.", "asgiref.", "wsgidev.")


def _caller() -> str:
    """The first frame outside the standard library, installed packages and wsgidev: the line
    of the project's code that ran the query ("" when there is none)."""
    frame = sys._getframe(3)
    while frame is not None:
        filename = frame.f_code.co_filename
        module = str(frame.f_globals.get("__name__", ""))
        if not (
            filename.startswith(_LIBRARY_ROOTS)
            or filename.startswith("<")
            or any(part in filename for part in _PACKAGE_DIRS)
            or module.startswith(_LIBRARY_MODULES)
        ):
            return f"{short_path(filename)}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return ""
