"""Structured lines the daemon writes to Apache's error log, read back by `wsgidev start`.

The daemon cannot talk to the wsgidev process directly: its stderr goes through mod_wsgi to the
error log, which wsgidev streams. A line carrying MARKER and a base64 JSON object is an event,
not text: Apache escapes backslashes and control characters in error-log messages, which would
mangle plain JSON.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any

MARKER = "wsgidev-event "
SUMMARY_CHARS = 200


def emit(kind: str, **fields: Any) -> None:
    """Write one event line to stderr (the error log, inside a mod_wsgi daemon)."""
    record = {"event": kind, "pid": os.getpid(), "t": time.time(), **fields}
    payload = base64.b64encode(json.dumps(record, separators=(",", ":")).encode()).decode()
    # Readable for a person reading a staging Apache's error log; the payload is for wsgidev.
    sys.stderr.write(f"{MARKER}{kind}: {_summary(fields)} |{payload}\n")
    sys.stderr.flush()


def parse(message: str) -> dict[str, Any] | None:
    """The event in one error-log message, or None when the message is ordinary text."""
    start = message.find(MARKER)
    if start < 0:
        return None
    try:
        payload = message[start + len(MARKER) :].rsplit("|", 1)[-1].strip()
        record = json.loads(base64.b64decode(payload, validate=True))
    except ValueError:
        return None
    return record if isinstance(record, dict) and "event" in record else None


def _summary(fields: dict[str, Any]) -> str:
    for key in ("reason", "error"):
        if fields.get(key):
            return " ".join(str(fields[key]).split())
    if fields.get("files"):
        return ", ".join(str(f) for f in fields["files"])
    text = ", ".join(f"{key}={value}" for key, value in fields.items() if key != "traceback")
    # For a person reading the log; a long event (the watch listing) keeps the line short.
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."
