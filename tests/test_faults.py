"""Faults, on a real Apache on loopback, bounded: what the user sees is one clear line, the
server keeps serving, and nothing is left running (the fixture checks that)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from conftest import descendants, wait_for

from wsgidev.shared import CONTROL_DIR


def _set_version(app: Path, version: str) -> None:
    app.write_text(app.read_text().replace('VERSION = "v1"', f'VERSION = "{version}"'))


def test_a_stopped_standby_does_not_hold_the_reload(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    assert server.process is not None
    # The standby group's daemon: its display name (argv[0], cut to the original's length).
    standby = [
        pid
        for pid in descendants(server.process.pid)
        if b"(wsgidev.b:" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(standby) == 1, standby
    # Stopped once it is a standby a hand-over asks (its control socket is bound), not while
    # it is still starting: the server answers as soon as the serving group does.
    control = f"{CONTROL_DIR}/1.{standby[0]}"
    wait_for(lambda: any(server.tmpdir.rglob(control)), 20, "the standby to register")
    os.kill(standby[0], signal.SIGSTOP)
    try:
        started = time.monotonic()
        _set_version(project / "app.py", "v2")
        wait_for(lambda: server.json("/")["version"] == "v2", 15, "the new code")
        assert time.monotonic() - started < 8, "the stopped standby held the reload"
        wait_for(
            lambda: f"Standby process {standby[0]} did not answer within 2 s" in server.log(),
            5,
            "the line that says so",
        )
        assert {json.dumps(server.json("/")["version"]) for _ in range(5)} == {'"v2"'}
    finally:
        os.kill(standby[0], signal.SIGCONT)
