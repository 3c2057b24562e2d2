"""A service's pool processes (forked) tell its monitor what they import
(wsgidev/daemon/poolimports.py): what one that still runs imported counts, what only exited ones
imported does not, unless the main process watches it for itself or its program has ended.

Each case runs in a process of its own: an at-fork handler cannot be taken back, and the pytest
process forks for other tests."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DRIVER = """
import json, os, sys, threading, time

case, folder = sys.argv[1], sys.argv[2]
sys.path.insert(0, folder)
from wsgidev.daemon.monitor import start
from wsgidev.daemon.poolimports import PoolImports

import mainmod  # the main process's own

calls = []
called = threading.Event()


def on_change(files):
    calls.append(files)
    called.set()


watch = [os.path.join(folder, "poolmod.py")] if case == "watched" else []
monitor = start(watch, "poll", 0.05, on_change=on_change, settle_s=0.05)
pool = PoolImports(monitor)
imported_r, imported_w = os.pipe()
pid = os.fork()
if pid == 0:
    import poolmod  # only the pool process imports it

    os.write(imported_w, b"x")
    if case == "running":
        time.sleep(30)
    os._exit(0)
os.read(imported_r, 1)
if case != "running":
    os.waitpid(pid, 0)
path = os.path.join(folder, "poolmod.py")
deadline = time.monotonic() + 10
while not monitor.is_watching(path) and time.monotonic() < deadline:
    time.sleep(0.01)
watching = monitor.is_watching(path)
if case == "ended":
    pool.program_ended()
with open(path, "w") as out:
    out.write("VALUE = 2\\n")
time.sleep(0.01)
with open(os.path.join(folder, "mainmod.py"), "w") as out:
    out.write("VALUE = 2\\n")  # a change that counts: the monitor's answer comes with it
called.wait(10)
if case == "running":
    os.kill(pid, 9)
    os.waitpid(pid, 0)
print(json.dumps({"watching": watching, "changed": calls[0] if calls else None}))
"""


@pytest.mark.parametrize(
    ("case", "counts"),
    [
        ("exited", False),  # an RQ job's horse: the next job imports the file afresh
        ("running", True),  # a Dramatiq worker process, a Celery prefork child
        ("watched", True),  # also a --watch file of the main process: it counts for that
        ("ended", True),  # the program ended (a failure): the service waits for any fix
    ],
)
def test_what_a_pool_process_imported_counts_while_it_runs(
    tmp_path: Path, case: str, counts: bool
) -> None:
    (tmp_path / "mainmod.py").write_text("VALUE = 1\n")
    (tmp_path / "poolmod.py").write_text("VALUE = 1\n")
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    done = subprocess.run(
        [sys.executable, str(driver), case, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["watching"], "the pool process's import was not heard"
    assert result["changed"] is not None, done.stderr
    # The pool file is saved first: its change comes alone or with the main file's.
    if counts:
        assert str(tmp_path / "poolmod.py") in result["changed"], (result, done.stderr)
    else:
        assert result["changed"] == [str(tmp_path / "mainmod.py")], (result, done.stderr)
