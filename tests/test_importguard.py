"""The import guard without Apache: real processes that die or hang importing a module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from wsgidev.daemon import importguard
from wsgidev.daemon.importguard import ImportGuard
from wsgidev.shared.serverroot import IMPORT_MARKS

# A process that marks itself as importing, as a daemon does, then imports the module `broken`.
IMPORTER = """
import sys
sys.path.insert(0, {folder!r})
from wsgidev.daemon.importguard import ImportGuard
guard = ImportGuard({state!r})
guard.imported({journal!r})
guard.begin()
guard.imported({journal!r})
import broken
guard.end()
"""


def _import_in_a_process(tmp_path: Path, code: str) -> tuple[Path, int]:
    """Run a process that imports a module holding code; the module's file and the exit status."""
    state = tmp_path / "root"
    (state / IMPORT_MARKS).mkdir(parents=True, exist_ok=True)
    module = tmp_path / "broken.py"
    module.write_text(textwrap.dedent(code))
    script = IMPORTER.format(folder=str(tmp_path), state=str(state), journal=str(module))
    process = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=30
    )
    return module, process.returncode


def test_an_os_exit_while_importing_is_told_with_its_status_and_line(tmp_path: Path):
    module, code = _import_in_a_process(tmp_path, "import os\nVALUE = 1\nos._exit(3)\n")
    assert code == 3
    failure = ImportGuard(str(tmp_path / "root")).failure()
    assert failure is not None
    # Where, relative to the working directory (the daemons': the project).
    assert failure.summary.startswith("the process exited with status 3 (os._exit) at ")
    assert failure.summary.endswith("broken.py:3")
    assert str(module) in failure.files
    assert "    os._exit(3)" in failure.text()


def test_a_segfault_while_importing_is_told_from_faulthandlers_report(tmp_path: Path):
    _, code = _import_in_a_process(tmp_path, "import ctypes\n\nctypes.string_at(0)\n")
    assert code == -11
    failure = ImportGuard(str(tmp_path / "root")).failure()
    assert failure is not None
    assert failure.summary.startswith("the process crashed with SIGSEGV (Segmentation fault) at ")
    assert failure.summary.endswith("broken.py:3"), failure.text()


def test_a_saved_fix_makes_the_mark_of_the_dead_importer_count_no_more(tmp_path: Path):
    module, _ = _import_in_a_process(tmp_path, "import os\nos._exit(3)\n")
    time.sleep(0.01)
    module.write_text("VALUE = 2\n")
    assert ImportGuard(str(tmp_path / "root")).failure() is None
    assert not list((tmp_path / "root" / IMPORT_MARKS).iterdir()), "the old mark is removed"


def test_an_unexplained_death_gets_one_more_try_and_a_second_counts(tmp_path: Path):
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    _, status = _import_in_a_process(tmp_path, code)
    assert status == -9
    guard = ImportGuard(str(tmp_path / "root"))
    assert guard.failure() is None  # a one-off kill, perhaps
    assert guard.unexplained
    assert not list((tmp_path / "root" / IMPORT_MARKS).iterdir()), "passed over once only"
    # The next importer says it follows an unexplained death; when it dies the same way, it counts.
    killed = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    mark = tmp_path / "root" / IMPORT_MARKS / str(killed.pid)
    mark.write_text(
        f'{{"pid": {killed.pid}, "started_ns": {time.time_ns()}, '
        f'"after_unexplained": {guard.unexplained}}}\nfile\t{tmp_path / "broken.py"}\n'
    )
    killed.kill()
    killed.wait()
    failure = ImportGuard(str(tmp_path / "root")).failure()
    assert failure is not None and failure.summary.startswith("the process died twice"), failure


def test_the_guard_in_process_restores_os_exit_and_removes_its_mark(tmp_path: Path):
    (tmp_path / IMPORT_MARKS).mkdir()
    real_exit = os._exit
    guard = ImportGuard(str(tmp_path))
    guard.begin()
    assert os._exit != real_exit and guard.mark.exists()
    guard.end()
    guard.end()  # twice is harmless
    assert os._exit == real_exit
    assert not guard.mark.exists()


def test_a_stuck_import_is_reported_with_where_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / IMPORT_MARKS).mkdir()
    monkeypatch.setattr(importguard, "SLOW_S", 0.2)
    reported = []
    release = threading.Event()

    def importing() -> None:
        guard = ImportGuard(str(tmp_path))
        guard.begin(on_slow=reported.append)
        release.wait(10)  # stuck here
        guard.end()

    thread = threading.Thread(target=importing)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not reported and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        release.set()
        thread.join()
    assert len(reported) == 1
    assert reported[0].summary.startswith("still importing after 0.2 s, at ")
    assert "release.wait(10)" in reported[0].text()
