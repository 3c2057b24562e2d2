"""A request's queries counted and described (wsgidev/daemon/queries.py), with Django's real
execute wrappers on an in-memory SQLite database, in a subprocess of its own (Django's settings
are configured once per process). Through Apache: tests/test_django.py."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r'''
import contextlib, io, json, sys
import django
from django.conf import settings

settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}})
django.setup()
from django.db import connection
from wsgidev.daemon.queries import with_query_count
from wsgidev.shared import events, protocol

events.read_by_command(True)

def app(environ, start_response):
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE t (v TEXT)")
        for _ in range(5):  # a raw query over several lines, five times
            cursor.execute("""
                SELECT COUNT(*)
                FROM t
            """)
        cursor.execute("INSERT INTO t VALUES (%s)", ["\u00e9" * 5000 + "\nline two"])
        try:
            cursor.execute("SELECT nothing FROM nowhere")
        except Exception as exc:
            failed = type(exc).__name__
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [failed.encode()]

headers = []
stderr = io.StringIO()
with contextlib.redirect_stderr(stderr):
    body = b"".join(with_query_count(app, print_sql=True)(
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/x"}, lambda s, h, *e: headers.extend(h)))
lines = stderr.getvalue().splitlines()
print(json.dumps({
    "body": body.decode(),
    "headers": headers,
    "longest": max(map(len, lines)),
    "events": [protocol.encode(events.parse(line)) for line in lines],
}))
'''


def test_every_query_is_counted_and_each_event_is_one_readable_line():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # The app's own error reached it as the database raised it.
    assert found["body"] == "OperationalError"
    count, ms = dict(found["headers"])["X-Wsgidev-Queries"].split()
    assert count == "8" and float(ms) > 0
    kinds = [event["event"] for event in found["events"]]
    assert kinds == ["sql"] * 8 + ["repeated-query"], kinds
    # Each event is one line an error log keeps whole (mod_wsgi splits writes at line breaks;
    # Apache cuts a line near 8 KB), however long its SQL, and however foreign its letters.
    assert found["longest"] < 8000
    inserted = found["events"][6]["sql"]
    assert inserted.startswith("INSERT INTO t VALUES ('\u00e9\u00e9") and inserted.endswith("...")
    repeated = found["events"][-1]
    assert repeated["runs"] == 5 and "FROM t" in repeated["sql"]
