"""Structured lines the daemon writes to Apache's error log, read back by `wsgidev start`.

The daemon cannot talk to the wsgidev process directly: its stderr goes through mod_wsgi to the
error log, which wsgidev streams. A line carrying MARKER and a base64 JSON object is an event,
not text: Apache escapes backslashes and control characters in error-log messages, which would
mangle plain JSON.

Where no wsgidev command reads the log (a system Apache with `wsgidev config apache`'s snippet,
mod_wsgi-express, `wsgidev config standalone`, a hand-written script calling the monitor), a
person does: there each event is one plain line instead, through mod_wsgi's LogHandler at the
level its news deserves (info for a reload or a restart, warning or error for trouble), never
an encoded payload and never error for a normal event. `LogLevel wsgi:info` shows the info ones
(the snippet sets it).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import sys
import time
from typing import Any

from wsgidev.shared import protocol

MARKER = "wsgidev-event "
SUMMARY_CHARS = 200

# Whether wsgidev start reads the events (its entry script says so); None: not said, which
# inside a mod_wsgi daemon means a person reads them, and elsewhere (tests, tools) a program.
_command_reads: bool | None = None
_handler: logging.Handler | None = None


def read_by_command(reads: bool) -> None:
    """Say whether wsgidev start reads this process's events (else a person reads the log)."""
    global _command_reads
    _command_reads = reads


def emit(event: protocol.Event) -> None:
    """Write one event to the error log: a line wsgidev start reads, or a person's line."""
    if not _for_command():
        said = for_a_person(event)
        if said is not None:
            _log(*said)
        return
    event = dataclasses.replace(event, pid=os.getpid(), t=time.time())
    record = protocol.encode(event)
    payload = base64.b64encode(json.dumps(record, separators=(",", ":")).encode()).decode()
    sys.stderr.write(f"{MARKER}{event.KIND}: {_summary(protocol.fields(event))} |{payload}\n")
    sys.stderr.flush()


def for_a_person(event: protocol.Event) -> tuple[int, str] | None:
    """The level and the line an event is for a person reading the error log; None: unsaid."""
    pid = os.getpid()
    files = [str(f) for f in getattr(event, "files", ())]
    count = int(getattr(event, "count", 0) or len(files))
    named = ", ".join(files[:3]) + (f" and {count - 3} more" if count > 3 else "")
    match event:
        case protocol.Change():
            return logging.INFO, f"{named} changed: process {pid} restarts to load the new code"
        case protocol.Ready():
            return logging.INFO, (
                f"process {pid} imported the app in {event.import_s:.2f} s and serves it"
            )
        case protocol.Handled():
            return logging.INFO, f"process {pid} took {named} without a restart (Django)"
        case protocol.Watching():
            return logging.INFO, (
                f"process {pid} watches {event.file_count} files in {event.dir_count} folders "
                f"({event.backend}) and restarts on a change"
            )
        case protocol.SilentMount():
            return logging.INFO, (
                f"process {pid} polls the watched files under {event.mount} every "
                f"{event.interval:g} s: a {event.fstype} mount sends no notification of changes "
                "made beneath it"
            )
        case protocol.Settled():
            return _settled(pid, event, named)
        case protocol.Refused():
            return logging.WARNING, f"{event.part}: {event.reason or 'refused'}"
        case protocol.ImportFailed() | protocol.RequestExit():
            what = (
                "the app failed to import"
                if isinstance(event, protocol.ImportFailed)
                else "a request raised"
            )
            text = event.traceback.rstrip()
            return logging.ERROR, f"{what}: {event.error}" + (f"\n{text}" if text else "")
        case protocol.ImportSlow():
            return logging.WARNING, f"the app is {event.error or 'slow to import'}"
    return None  # wsgidev start's own plumbing (hand-overs, listings, exits): nobody else's news


def _settled(pid: int, event: protocol.Settled, named: str) -> tuple[int, str]:
    if not event.quiet:
        return logging.WARNING, (
            f"process {pid} serves after waiting {event.waited_s:.2f} s: its code kept changing "
            f"({named or 'files it imported'}); it restarts once they are quiet"
        )
    waited = f"waited {event.waited_s:.2f} s for the code to stop changing"
    if not event.count and not event.files:
        return logging.INFO, f"process {pid} {waited}"
    return logging.INFO, (
        f"process {pid} {waited}: {named} changed after its import, so it restarts "
        "instead of serving (its requests are sent again)"
    )


def _for_command() -> bool:
    if _command_reads is None:
        return _apache_handler() is None
    return _command_reads


def _apache_handler() -> logging.Handler | None:
    """mod_wsgi's logging handler inside an Apache daemon (it keeps the record's level)."""
    global _handler
    if _handler is None:
        try:
            import mod_wsgi  # the one Apache embeds; the pip package of the name has no handler
        except ImportError:
            return None
        handler_class = getattr(mod_wsgi, "LogHandler", None)
        if handler_class is None or getattr(mod_wsgi, "process_group", None) is None:
            return None
        _handler = handler_class()
    return _handler


def _log(level: int, text: str) -> None:
    handler = _apache_handler()
    if handler is None:  # not in an Apache daemon (a test): the error stream, as the line reads
        sys.stderr.write(f"wsgidev: {text}\n")
        sys.stderr.flush()
        return
    handler.handle(logging.LogRecord("wsgidev", level, __file__, 0, "wsgidev: %s", (text,), None))


def parse(message: str) -> protocol.Event | None:
    """The event in one error-log message, or None when the message is ordinary text (a line
    that carries the marker but does not decode is protocol.Unreadable)."""
    start = message.find(MARKER)
    if start < 0:
        return None
    try:
        payload = message[start + len(MARKER) :].rsplit("|", 1)[-1].strip()
        record = json.loads(base64.b64decode(payload, validate=True))
    except (ValueError, RecursionError):
        return protocol.Unreadable(problem="not base64 JSON")
    return protocol.decode(record)


def _summary(fields: dict[str, Any]) -> str:
    """The event for a person reading the log, on one line: mod_wsgi makes each line of a write
    a log line of its own, and the payload after it must stay on the marker's line."""
    for key in ("reason", "error"):
        if fields.get(key):
            return " ".join(str(fields[key]).split())
    if fields.get("files"):
        text = ", ".join(str(f) for f in fields["files"])
    else:
        text = ", ".join(f"{key}={value}" for key, value in fields.items() if key != "traceback")
    text = " ".join(text.split())
    # A long event (the watch listing) keeps the line short.
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."
