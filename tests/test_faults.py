"""Faults, on a real Apache on loopback, bounded: what the user sees is one clear line, the
server keeps serving, and nothing is left running (the fixture checks that)."""

from __future__ import annotations

import html
import json
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import descendants, wait_for


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
    # Stopped once it listens for hand-overs (before that, its group has no process to ask).
    control = next(server.tmpdir.glob("wsgidev-*")) / "ctl" / f"1.{standby[0]}"
    wait_for(control.exists, 10, "the standby to listen")
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


# --- app code that ends or hangs the process while it is imported ----------------------------

# Inserted after the test app records its import (imports.log: one line per import begun).
FAULTS = {
    "exit": ("os._exit(3)\n", "The app failed to import: the process exited with status 3"),
    "segfault": (
        "import ctypes\nctypes.string_at(0)\n",
        "The app failed to import: the process crashed with SIGSEGV (Segmentation fault)",
    ),
}
AFTER_RECORD = "\n\n_lock = threading.Lock()"


def _break(app: Path, code: str) -> str:
    """Put code into the test app's import, after it records the import; the good text."""
    good = app.read_text()
    assert AFTER_RECORD in good
    app.write_text(good.replace(AFTER_RECORD, f"\n{code}{AFTER_RECORD}"))
    return good


def _imports(project: Path) -> int:
    path = project / "imports.log"
    return len(path.read_text().split()) if path.exists() else 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["standby", "process"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_an_app_that_dies_at_import_gets_one_line_and_a_page_until_fixed(
    project: Path, start_server, fault: str, mode: str
):
    code, line = FAULTS[fault]
    good = _break(project / "app.py", code)
    server = start_server(
        project, "app.py", "--processes", "2", "--threads", "2", "--restart-mode", mode
    )
    # A request already waiting in a process as it dies gets Apache's 502 (README); the ones
    # after it get the page.
    answers: list[tuple[int, bytes]] = []
    wait_for(
        lambda: answers.append(server.get("/", timeout_s=10)) or answers[-1][0] == 500,
        10,
        lambda: f"the error page\n{server.log()}",
    )
    assert {status for status, _ in answers} <= {500, 502}, answers
    page = html.unescape(answers[-1][1].decode())
    assert line.split(": ", 1)[1] in page, page  # what happened, as the terminal says it
    assert "app.py:" in page and ("os._exit(3)" in page or "ctypes.string_at(0)" in page), page
    time.sleep(3)  # a restart loop would show by now: more imports, more lines
    # The first death is the last: a process that starts after it serves the page at once.
    assert 1 <= _imports(project) <= 2, f"no restart loop\n{server.log()}"
    log = server.log()
    assert log.count(line) == 1, log
    assert log.count("AH00052") <= 1, log  # Apache's line for a segfault, once
    assert server.get("/", timeout_s=5)[0] == 500
    (project / "app.py").write_text(good.replace('VERSION = "v1"', 'VERSION = "v2"'))
    wait_for(lambda: server.get("/", timeout_s=5)[0] == 200, 20, lambda: f"the fix\n{server.log()}")
    assert server.json("/")["version"] == "v2"
    assert server.log().count(line) == 1


@pytest.mark.timeout(90)
def test_a_standby_that_dies_importing_an_edit_shows_it_and_the_fix_serves(
    project: Path, start_server
):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    assert server.json("/")["version"] == "v1"
    code, line = FAULTS["exit"]
    good = _break(project / "app.py", code)
    wait_for(
        lambda: server.get("/", timeout_s=5)[0] == 500,
        20,
        lambda: f"the error page\n{server.log()}",
    )
    assert "os._exit(3)" in server.get("/", timeout_s=5)[1].decode()
    time.sleep(3)
    assert server.log().count(line) == 1, server.log()
    assert _imports(project) <= 3, server.log()  # v1, the standby that died, no loop
    (project / "app.py").write_text(good.replace('VERSION = "v1"', 'VERSION = "v2"'))
    wait_for(lambda: server.get("/", timeout_s=5)[0] == 200, 20, lambda: f"the fix\n{server.log()}")
    assert server.json("/")["version"] == "v2"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["standby", "process"])
def test_an_app_that_hangs_at_import_is_named_and_a_fix_reloads(
    project: Path, start_server, mode: str
):
    good = _break(project / "app.py", "time.sleep(3600)\n")
    server = start_server(
        project, "app.py", "--processes", "2", "--threads", "2", "--restart-mode", mode, wait=False
    )
    line = "The app is still importing after 10 s, at app.py:"
    wait_for(lambda: line in server.log(), 30, lambda: f"the stuck import's line\n{server.log()}")
    started = time.monotonic()
    status, body = server.get("/", timeout_s=10)
    assert time.monotonic() - started < 5
    assert status == 503 and "time.sleep(3600)" in body.decode(), body[:2000]
    time.sleep(1)
    assert server.log().count(line) == 1, server.log()
    (project / "app.py").write_text(good.replace('VERSION = "v1"', 'VERSION = "v2"'))
    wait_for(lambda: server.get("/", timeout_s=5)[0] == 200, 20, lambda: f"the fix\n{server.log()}")
    assert server.json("/")["version"] == "v2"


@pytest.mark.timeout(120)
def test_a_standby_that_hangs_importing_an_edit_is_named_and_a_fix_reloads(
    project: Path, start_server
):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    assert server.json("/")["version"] == "v1"
    good = _break(project / "app.py", "time.sleep(3600)\n")
    line = "The app is still importing after 10 s, at app.py:"
    wait_for(lambda: line in server.log(), 30, lambda: f"the stuck import's line\n{server.log()}")
    status, body = server.get("/", timeout_s=10)
    assert status == 503 and "time.sleep(3600)" in body.decode(), body[:2000]
    (project / "app.py").write_text(good.replace('VERSION = "v1"', 'VERSION = "v2"'))
    wait_for(lambda: server.get("/", timeout_s=5)[0] == 200, 20, lambda: f"the fix\n{server.log()}")
    assert server.json("/")["version"] == "v2"
    assert server.log().count(line) == 1, server.log()
    # One reload line, the fix's: the stuck edit's line was the stuck import's.
    wait_for(lambda: "Reloaded in" in server.log(), 10, lambda: f"the reload line\n{server.log()}")
    assert server.log().count("Reloaded in") == 1, server.log()


# --- Django: a broken URLconf, sys.exit() in a view module --------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("where", "code", "line"),
    [
        (
            "testsite/urls.py",
            "import no_such_module_here\n",
            "The app failed to import: ModuleNotFoundError: No module named 'no_such_module_here'",
        ),
        (
            "testapp/views.py",
            "import sys\nsys.exit('views broken')\n",
            "The app failed to import: SystemExit: views broken",
        ),
    ],
)
def test_django_urls_or_views_that_fail_at_import_get_the_traceback_page(
    django_project: Path, start_server, where: str, code: str, line: str
):
    broken = django_project / where
    good = broken.read_text()
    broken.write_text(good + "\n" + code)
    server = start_server(django_project, "--processes", "2", "--threads", "2")
    status, body = server.get("/", timeout_s=10)
    page = html.unescape(body.decode())
    assert status == 500 and "wsgidev: app failed to import" in page, page[:2000]
    assert where.split("/")[-1] in page and code.splitlines()[-1] in page, page
    time.sleep(2)
    assert server.log().count(line) == 1, server.log()
    assert "Internal Server Error" not in server.get("/", timeout_s=5)[1].decode()
    broken.write_text(good)
    wait_for(lambda: server.get("/", timeout_s=5)[0] == 200, 20, lambda: f"the fix\n{server.log()}")


LEAVING_APP = """
import os


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/leave":
        import leaving  # noqa: F401 - imported at request time, as a view module may be
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]
"""


@pytest.mark.timeout(90)
def test_sys_exit_while_a_request_imports_a_module_gets_a_page_and_threads_live(
    tmp_path: Path, start_server
):
    folder = tmp_path / "leave"
    folder.mkdir()
    (folder / "app.py").write_text(LEAVING_APP)
    (folder / "leaving.py").write_text("import sys\n\nsys.exit(4)\n")
    server = start_server(folder, "app.py", "--processes", "1", "--threads", "2")
    pid = server.get("/")[1]
    for _ in range(5):  # more than the threads: none of them died
        status, body = server.get("/leave", timeout_s=5)
        assert status == 500 and "SystemExit: 4" in body.decode(), body[:2000]
        assert "leaving.py" in body.decode()
        assert server.get("/", timeout_s=5) == (200, pid)
    assert server.log().count("A request raised SystemExit: 4") == 1, server.log()
    (folder / "leaving.py").write_text("VALUE = 1\n")
    wait_for(
        lambda: server.get("/leave", timeout_s=5)[0] == 200, 20, lambda: f"the fix\n{server.log()}"
    )


@pytest.mark.timeout(90)
def test_django_settings_that_end_the_process_do_not_loop_the_standbys(
    django_project: Path, start_server
):
    server = start_server(django_project, "--processes", "1", "--threads", "2")
    assert server.get("/")[0] == 200
    settings = django_project / "testsite" / "settings.py"
    good = settings.read_text()
    record = django_project / "settings-imports.log"
    # Each import of the broken settings says so first: the serving group's restart in place,
    # the standby warming up (django.setup()), and any process Apache starts after them.
    settings.write_text(
        good + f"\nwith open({str(record)!r}, 'a') as log:\n    log.write('x')\nos._exit(7)\n"
    )
    line = "The app failed to import: the process exited with status 7 (os._exit) at"
    wait_for(lambda: line in server.log(), 20, lambda: f"the line\n{server.log()}")
    status, body = server.get("/", timeout_s=10)
    assert status == 500 and "settings.py" in body.decode(), body[:2000]
    time.sleep(1)
    deaths = len(record.read_text())
    time.sleep(3)
    assert len(record.read_text()) == deaths <= 3, f"no restart loop\n{server.log()}"
    assert server.log().count(line) == 1, server.log()
    settings.write_text(good)
    wait_for(lambda: server.get("/", timeout_s=5)[0] == 200, 30, lambda: f"the fix\n{server.log()}")
