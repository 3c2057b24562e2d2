"""The reload monitor end to end: real Apache, real edits, real restarts (and none too many)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from conftest import (
    alive,
    descendants,
    holds_for,
    http_get,
    imports,
    reload_lines,
    set_version,
    versions,
    wait_for,
)
from test_config import config_test, minimal_main_config, render, running

from wsgidev.apache import find_apache

PROCESSES = "2"


def wait_version(server, version: str, timeout_s: float = 20) -> None:
    wait_for(lambda: versions(server) == {version}, timeout_s, lambda: f"{version}\n{server.log()}")


@pytest.mark.parametrize("mode", ["standby", "process"])
@pytest.mark.parametrize("style", ["in-place", "rename", "delete-create", "older-mtime"])
def test_each_save_style_reloads_once(project: Path, start_server, style: str, mode: str):
    server = start_server(
        project, "app:application", "--processes", PROCESSES, "--restart-mode", mode
    )
    assert versions(server) == {"v1"}
    wait_for(lambda: len(imports(project)) == 2, 10, "both daemons to import the app")
    set_version(project / "app.py", "v2", style)
    wait_version(server, "v2")
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    # Two imports at start, two for the new code (the standby group's, or each restarted
    # process's), no more; and one line naming the file.
    wait_for(lambda: len(imports(project)) >= 4, 10, "both new imports")
    lines = reload_lines(server)
    assert len(lines) == 1 and lines[0].endswith(": app.py changed"), lines
    assert len(imports(project)) == 4, imports(project)


def test_a_serving_daemon_runs_few_threads_however_many_folders_it_watches(
    project: Path, start_server
):
    # watchdog ran one thread per watched folder: 2,657 in a Wagtail site's serving daemon.
    many_folders(project, 400)
    server = start_server(project, "app:application", "--processes", "1", "--threads", "5")
    for version in ("v2", "v3"):  # before and after a hand-over
        pid = int(server.json()["pid"])
        threads = len(list(Path(f"/proc/{pid}/task").iterdir()))
        assert threads <= 5 + 10, f"{threads} threads in the serving daemon {pid}"
        set_version(project / "app.py", version)
        wait_version(server, version)


def many_folders(project: Path, count: int) -> None:
    """Make app.py import count packages, each in a folder of its own (all watched)."""
    imports_text = ""
    for index in range(count):
        package = project / f"pkg{index:03d}"
        package.mkdir()
        (package / "__init__.py").write_text(f"N = {index}\n")
        imports_text += f"import pkg{index:03d}\n"
    app = project / "app.py"
    app.write_text(imports_text + app.read_text())


def test_a_save_right_after_a_hand_over_is_seen_at_once(project: Path, start_server):
    # The group that takes over watches every folder before the route flips to it.
    many_folders(project, 400)
    server = start_server(project, "app:application", "--processes", PROCESSES)
    wait_for(lambda: len(imports(project)) == 2, 20, "both daemons to import the app")
    set_version(project / "app.py", "v2")
    wait_version(server, "v2")
    set_version(project / "app.py", "v3")  # within milliseconds of the flip
    wait_version(server, "v3", timeout_s=10)
    wait_for(
        lambda: len(reload_lines(server)) == 2, 10, lambda: f"two reload lines\n{server.log()}"
    )


@pytest.mark.parametrize("mode", ["standby", "process", "server"])
def test_each_reload_gets_one_honest_line(
    project: Path, start_server, mode: str, request: pytest.FixtureRequest
):
    (project / "other.py").write_text("N = 1\n")
    app = project / "app.py"
    app.write_text("import other\n" + app.read_text())
    # Polling every 1.5 s: a change is seen up to 1.5 s after its save, which the line must count.
    server = start_server(
        project,
        "app:application",
        "--processes",
        PROCESSES,
        "--restart-mode",
        mode,
        "--reload-backend",
        "poll",
        "--poll-interval",
        "1.5",
        "--log-level",
        "info",  # each line's timeline, and Apache's and mod_wsgi's words on each process
    )
    wait_for(lambda: len(imports(project)) == 2, 10, "both daemons to import the app")
    # imports.log is written as the import begins: the first save lands after it has ended (a
    # save in the same milliseconds as an import is ambiguous until the process polls again).
    time.sleep(0.3)
    # When each import was first seen, for the failure's message.
    seen: list[tuple[float, str]] = []
    watching = threading.Event()

    def watch_imports() -> None:
        while not watching.wait(0.02):
            for pid in imports(project)[len(seen) :]:
                seen.append((time.time(), pid))

    watcher = threading.Thread(target=watch_imports, daemon=True)
    watcher.start()
    request.addfinalizer(watching.set)
    for number, edit in enumerate(("app", "other", "app"), start=1):
        saved = time.time()
        if edit == "app":
            set_version(app, f"v{number + 1}")
            wait_version(server, f"v{number + 1}")
        else:
            (project / "other.py").write_text("N = 2\n")
        wait_for(lambda n=number: len(imports(project)) >= 2 * (n + 1), 20, "the restart")
        # When the last process imported the new code (the app appends to imports.log as it
        # is imported): from then on every request gets it, whichever process takes it.
        last_import_s = (project / "imports.log").stat().st_mtime - saved
        wait_for(lambda n=number: len(reload_lines(server)) >= n, 10, f"line {number}")
        line = reload_lines(server)[number - 1]
        assert line.endswith(f": {edit}.py changed"), reload_lines(server)
        # The figure counts from the save, not from when the change was seen (up to 1.5 s
        # later), to when the new code serves everywhere.
        shown_s = float(line.split()[2])
        timeline = ", ".join(f"{pid} at {at - saved:+.2f} s" for at, pid in seen)
        assert last_import_s - 0.1 <= shown_s <= last_import_s + 0.3, (
            f"{line!r}, last import {last_import_s:.2f} s after save {number}; imports seen: "
            f"{timeline}\n{server.log()}"
        )
    assert len(reload_lines(server)) == 3, server.log()


@pytest.mark.parametrize("mode", ["standby", "process", "server"])
def test_same_size_edits_in_the_same_second_are_all_served(project: Path, start_server, mode: str):
    # Python trusts __pycache__/app.*.pyc when the source's whole-second mtime and its size
    # match the ones stamped in it: an edit that keeps both would run the old code.
    server = start_server(
        project, "app:application", "--processes", PROCESSES, "--restart-mode", mode
    )
    app = project / "app.py"
    wait_for(lambda: len(imports(project)) == 2, 10, "both daemons to import the app")
    for index in range(1, 6):
        before = app.stat()
        set_version(app, f"e{index}")  # as long as "v1": the same size
        # Pinned to the second of the previous save (a save within the same second).
        second_ns = before.st_mtime_ns // 1_000_000_000 * 1_000_000_000
        os.utime(app, ns=(before.st_atime_ns, second_ns + index * 1_000_000))
        assert app.stat().st_size == before.st_size
        wait_version(server, f"e{index}")
    assert (project / "__pycache__").is_dir(), "bytecode was not written: not a user's machine"


def test_a_burst_of_edits_gives_one_reload(project: Path, start_server):
    for index in range(30):
        (project / f"helper_{index}.py").write_text(f"N = {index}\n")
    app = project / "app.py"
    app.write_text("".join(f"import helper_{i}\n" for i in range(30)) + app.read_text())
    server = start_server(project, "app:application", "--processes", PROCESSES)
    wait_for(lambda: len(imports(project)) == 2, 10, "both daemons to preload the app")
    for index in range(30):  # a git checkout touching 30 files
        (project / f"helper_{index}.py").write_text(f"N = {index + 100}\n")
    wait_for(lambda: len(imports(project)) >= 4, 20, lambda: f"a reload\n{server.log()}")
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    # One reload: no second import comes after the settle time.
    holds_for(lambda: len(imports(project)) == 4, 1.5, "one reload's two imports")
    assert len(reload_lines(server)) == 1, server.log()


def test_module_imported_lazily_at_request_time_is_watched(project: Path, start_server):
    (project / "lazy_mod.py").write_text("VALUE = 'lazy-1'\n")
    (project / "lazy_app.py").write_text(
        "def application(environ, start_response):\n"
        "    import lazy_mod\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [lazy_mod.VALUE.encode()]\n"
    )
    server = start_server(project, "lazy_app:application", "--processes", "1")
    assert server.get("/") == (200, b"lazy-1")
    # Edited right after its first import: judged against its import-time state.
    (project / "lazy_mod.py").write_text("VALUE = 'lazy-2'\n")
    wait_for(lambda: server.get("/") == (200, b"lazy-2"), 20, lambda: f"lazy-2\n{server.log()}")


def test_broken_code_shows_the_error_and_a_fix_recovers(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", PROCESSES)
    app = project / "app.py"
    good = app.read_text()
    app.write_text(good.replace('VERSION = "v1"', 'VERSION = "v1" +'))  # a SyntaxError
    # Every process: a daemon Apache started late may import the broken save first, while its
    # sibling serves v1 until the hand-over (seen on a loaded machine).
    wait_for(
        lambda: all(server.get("/")[0] == 500 for _ in range(6)),
        20,
        lambda: f"the error page\n{server.log()}",
    )
    status, body = server.get("/")
    assert b"SyntaxError" in body and b"app.py" in body
    wait_for(lambda: "SyntaxError" in server.log(), 10, "the error in the terminal")
    app.write_text(good.replace('VERSION = "v1"', 'VERSION = "v3"'))
    wait_version(server, "v3")


def test_requests_during_reloads_wait_and_succeed(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", PROCESSES, "--threads", "5")
    failures: list[str] = []
    seen: set[str] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                status, body = server.get("/sleep?s=0.05", timeout_s=30)
            except OSError as exc:
                failures.append(repr(exc))
                continue
            if status != 200:
                failures.append(f"status {status}")
            else:
                seen.add(json.loads(body)["version"])

    clients = [threading.Thread(target=client) for _ in range(4)]
    for thread in clients:
        thread.start()
    try:
        for version in ("v2", "v3", "v4"):
            count = len(seen)
            wait_for(lambda c=count: len(seen) == c and failures == [], 5, "the clients to run")
            set_version(project / "app.py", version)
            wait_for(lambda v=version: v in seen, 20, f"{version} to be served")
    finally:
        stop.set()
        for thread in clients:
            thread.join(30)
    assert failures == []
    assert {"v1", "v2", "v3", "v4"} <= seen


def test_watch_option_globs_extra_files(project: Path, start_server):
    (project / "conf").mkdir()
    (project / "conf" / "site.ini").write_text("a = 1\n")
    server = start_server(project, "app:application", "--processes", "1", "--watch", "conf/*.ini")
    assert len(imports(project)) == 1
    (project / "conf" / "site.ini").write_text("a = 2\n")
    wait_for(lambda: len(imports(project)) == 2, 20, lambda: f"a restart\n{server.log()}")


def test_no_reload_leaves_the_old_code_running(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "1", "--no-reload")
    set_version(project / "app.py", "v2")
    holds_for(lambda: versions(server, 3) == {"v1"}, 2.0, "the old code serving")
    assert len(imports(project)) == 1


def test_poll_backend_reloads_too(project: Path, start_server):
    server = start_server(
        project,
        "app:application",
        "--processes",
        "1",
        "--reload-backend",
        "poll",
        "--poll-interval",
        "0.2",
    )
    set_version(project / "app.py", "v2", "rename")
    wait_version(server, "v2")


def _django_site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    shutil.copytree(Path(__file__).parent / "djangoproject", site)
    templates = site / "testapp" / "templates" / "testapp"
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "edited.html").write_text("<p>template one</p>\n")
    views = site / "testapp" / "views.py"
    views.write_text(
        views.read_text()
        + "\n\ndef edited(request):\n"
        + "    from django.shortcuts import render\n"
        + "    response = render(request, 'testapp/edited.html')\n"
        + "    response['X-Pid'] = str(os.getpid())\n"
        + "    return response\n"
    )
    urls = site / "testsite" / "urls.py"
    urls.write_text(
        urls.read_text().replace(
            'path("", views.index),', 'path("", views.index),\n    path("edited", views.edited),'
        )
    )
    return site


def test_django_template_edit_shows_without_a_restart(tmp_path: Path, start_server):
    site = _django_site(tmp_path)
    server = start_server(site, "--processes", "1", "--threads", "2")
    status, body = server.get("/edited")
    assert status == 200 and b"template one" in body
    pids_before = {json.loads(server.get("/")[1])["pid"] for _ in range(3)}
    (site / "testapp" / "templates" / "testapp" / "edited.html").write_text("<p>template two</p>\n")
    wait_for(
        lambda: b"template two" in server.get("/edited")[1], 10, lambda: f"the edit\n{server.log()}"
    )
    assert {json.loads(server.get("/")[1])["pid"] for _ in range(3)} == pids_before
    # Each save is said once, the later ones too.
    template = site / "testapp" / "templates" / "testapp" / "edited.html"
    picked_up = f"Picked up {template} without a restart"
    wait_for(lambda: server.log().count(picked_up) == 1, 10, lambda: f"one line\n{server.log()}")
    template.write_text("<p>template three</p>\n")
    wait_for(
        lambda: b"template three" in server.get("/edited")[1], 10, lambda: f"again\n{server.log()}"
    )
    wait_for(lambda: server.log().count(picked_up) == 2, 10, lambda: f"two lines\n{server.log()}")
    assert "Reloaded in" not in server.log()


def test_django_python_edit_reloads(tmp_path: Path, start_server):
    site = _django_site(tmp_path)
    server = start_server(site, "--processes", "1")
    pid = json.loads(server.get("/")[1])["pid"]
    views = site / "testapp" / "views.py"
    views.write_text(views.read_text() + "\nEDITED = True\n")
    wait_for(
        lambda: json.loads(server.get("/")[1])["pid"] != pid, 20, lambda: f"reload\n{server.log()}"
    )


def test_django_standby_is_warmed_and_a_settings_edit_still_reloads(tmp_path: Path, start_server):
    site = _django_site(tmp_path)
    views = site / "testapp" / "views.py"
    views.write_text(
        views.read_text()
        + "\n\ndef motto(request):\n"
        + "    from django.conf import settings\n"
        + "    return HttpResponse(f'{settings.MOTTO} {VIEW_VERSION}')\n"
        + "\n\nVIEW_VERSION = 'view-1'\n"
    )
    urls = site / "testsite" / "urls.py"
    urls.write_text(
        urls.read_text().replace(
            'path("", views.index),', 'path("", views.index),\n    path("motto", views.motto),'
        )
    )
    settings = site / "testsite" / "settings.py"
    settings.write_text(settings.read_text() + "\nMOTTO = 'settings-1'\n")
    server = start_server(site, "--processes", "1", "--log-level", "info")
    assert server.get("/motto") == (200, b"settings-1 view-1")
    # The standby has imported Django and run its setup (settings.py included) before any edit.
    wait_for(
        lambda: "and Django's setup" in server.log(), 20, lambda: f"the warm-up\n{server.log()}"
    )
    views.write_text(views.read_text().replace("view-1", "view-2"))
    wait_for(lambda: server.get("/motto") == (200, b"settings-1 view-2"), 20, server.log())
    # settings.py was imported by the standby too: it is stale, restarts, and still takes over.
    settings.write_text(settings.read_text().replace("settings-1", "settings-2"))
    wait_for(lambda: server.get("/motto") == (200, b"settings-2 view-2"), 20, server.log())
    # The line waits for the old group to exit, a moment after the flip shows the new code.
    wait_for(lambda: len(reload_lines(server)) >= 2, 5, lambda: f"the second line\n{server.log()}")
    assert len(reload_lines(server)) == 2, server.log()


def test_django_settings_broken_then_fixed_recovers(tmp_path: Path, start_server):
    site = _django_site(tmp_path)
    settings = site / "testsite" / "settings.py"
    good = settings.read_text()
    server = start_server(site, "--processes", "1", "--log-level", "info")
    assert server.get("/")[0] == 200
    # Broken three times over, the next standby warming in between (each breakage makes it
    # stale: it restarts and warms again, with the broken settings): it must see that
    # settings.py has changed since (its failed import's files count) rather than show an old error.
    for version in (1, 2, 3):
        wait_for(
            lambda v=version: warmed(server) >= v, 30, lambda: f"a warm standby\n{server.log()}"
        )
        settings.write_text(good + f"\nraise RuntimeError('settings broken {version}')\n")
        # The exception's own line: a traceback's source lines are read when it is formatted.
        expected = f"RuntimeError: settings broken {version}".encode()
        wait_for(
            lambda e=expected: e in server.get("/")[1],
            30,
            lambda e=expected: f"{e!r}\n{server.log()}",
        )
        assert server.get("/")[0] == 500
    # Each breakage shown once, in order: no standby served an error older than the code.
    shown = [
        line.rsplit(" ", 1)[1]
        for line in server.log().splitlines()
        if line.startswith("The app failed to import: RuntimeError: settings broken")
    ]
    assert shown == ["1", "2", "3"], server.log()
    settings.write_text(good)
    wait_for(lambda: server.get("/")[0] == 200, 30, lambda: f"the recovery\n{server.log()}")


STAGING_SCRIPT = """
import wsgidev.monitor
wsgidev.monitor.start()
import os, sys
sys.path.insert(0, {folder!r})
import staged

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{{staged.VALUE}} {{os.getpid()}}".encode()]
"""


def _handwritten_site(tmp_path: Path, daemon: bool) -> tuple[Path, int, Path]:
    """A hand-written Apache config and WSGI script that starts the monitor itself."""
    from conftest import free_port

    site = tmp_path / "handwritten"
    site.mkdir()
    (site / "staged.py").write_text("VALUE = 'staged-1'\n")
    script = site / "app.wsgi"
    script.write_text(STAGING_SCRIPT.format(folder=str(site)))
    apache = find_apache()
    port = free_port()
    if daemon:
        wsgi = (
            f'WSGIDaemonProcess staging processes=1 threads=2 home="{site}"'
            f' python-home="{apache.python_home}"\n'
            f'WSGIScriptAlias / "{script}" process-group=staging application-group=%{{GLOBAL}}\n'
        )
    else:
        # One Apache child, so every request meets the one that loaded the script.
        wsgi = (
            "StartServers 1\nServerLimit 1\nThreadsPerChild 25\nMaxRequestWorkers 25\n"
            f'WSGIScriptAlias / "{script}"\n'
        )
    snippet = site / "site.conf"
    snippet.write_text(
        f'LoadModule wsgi_module "{apache.mod_wsgi_so}"\n'
        f'WSGIPythonHome "{apache.python_home}"\n'
        f"{wsgi}"
        f'<Directory "{site}">\n    Require all granted\n</Directory>\n'
    )
    root = tmp_path / "root"
    main = minimal_main_config(root, port, snippet)
    assert config_test(main).returncode == 0
    return main, port, root


def test_monitor_in_a_handwritten_daemon_mode_script(tmp_path: Path):
    main, port, root = _handwritten_site(tmp_path, daemon=True)
    url = f"http://127.0.0.1:{port}/"
    with running([find_apache().httpd, "-f", str(main), "-DFOREGROUND"], port, tmp_path / "d.log"):
        assert http_get(url)[1].startswith(b"staged-1 ")
        (tmp_path / "handwritten" / "staged.py").write_text("VALUE = 'staged-2'\n")
        wait_for(lambda: http_get(url)[1].startswith(b"staged-2 "), 20, "the staged edit")


def test_monitor_refuses_embedded_mode_and_never_signals_apache(tmp_path: Path):
    main, port, root = _handwritten_site(tmp_path, daemon=False)
    url = f"http://127.0.0.1:{port}/"
    with running([find_apache().httpd, "-f", str(main), "-DFOREGROUND"], port, tmp_path / "e.log"):
        status, body = http_get(url)
        assert status == 200 and body.startswith(b"staged-1 ")
        child = body.split()[1]
        (tmp_path / "handwritten" / "staged.py").write_text("VALUE = 'staged-2'\n")
        # The same child keeps the old code: nothing restarts it.
        holds_for(lambda: http_get(url) == (200, b"staged-1 " + child), 2.0, "the old code")
    error_log = (root / "logs" / "error.log").read_text()
    assert "embedded mode" in error_log


def test_monitor_in_the_apache_snippet(project: Path, tmp_path: Path):
    snippet = render(project, "apache", "app:application", "--processes", "1")
    include = tmp_path / "wsgidev.conf"
    include.write_text(snippet)
    from conftest import free_port

    port = free_port()
    root = tmp_path / "root"
    main = minimal_main_config(root, port, include)
    url = f"http://127.0.0.1:{port}/"
    error_log = root / "logs" / "error.log"
    with running([find_apache().httpd, "-f", str(main), "-DFOREGROUND"], port, tmp_path / "s.log"):
        assert json.loads(http_get(url)[1])["version"] == "v1"
        set_version(project / "app.py", "v2")
        wait_for(lambda: json.loads(http_get(url)[1])["version"] == "v2", 20, "v2 served")
        # A person reads this log: plain lines at info, what changed and when it serves.
        wait_for(lambda: error_log.read_text().count("imported the app in") >= 2, 10, "2 lines")
    lines = [line for line in error_log.read_text().splitlines() if "wsgidev" in line]
    assert any(
        "[wsgi:info]" in line
        and f"{project / 'app.py'} changed: process" in line
        and "restarts to load the new code" in line
        for line in lines
    ), lines
    assert any("[wsgi:info]" in line and "watches" in line for line in lines), lines
    assert not any("wsgidev-event" in line or ":error]" in line for line in lines), lines


def test_git_checkout_of_many_files_reloads_once(project: Path, start_server, tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for index in range(10):
        (project / f"mod_{index}.py").write_text("X = 1\n")
    app = project / "app.py"
    app.write_text("".join(f"import mod_{i}\n" for i in range(10)) + app.read_text())
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "."], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=project, check=True)
    for index in range(10):
        (project / f"mod_{index}.py").write_text("X = 2\n")
    subprocess.run([*git, "commit", "-qam", "two"], cwd=project, check=True)
    server = start_server(project, "app:application", "--processes", "1")
    before = len(imports(project))
    subprocess.run([*git, "checkout", "-q", "HEAD~1", "--", "."], cwd=project, check=True)
    wait_for(lambda: len(imports(project)) > before, 20, lambda: f"a reload\n{server.log()}")
    holds_for(lambda: len(imports(project)) == before + 1, 1.5, "one reload's import")
    assert len(reload_lines(server)) == 1, server.log()


def test_a_request_in_flight_during_a_reload_finishes(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "1", "--threads", "2")
    answer: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: answer.append(server.get("/sleep?s=2", 30)))
    slow.start()
    wait_for(lambda: server.json()["peak"] == 2, 5, "the slow request to be in flight")
    set_version(project / "app.py", "v2")
    wait_version(server, "v2")
    slow.join(30)
    status, body = answer[0]
    assert status == 200 and json.loads(body)["version"] == "v1"


def test_server_restart_mode_reloads_every_process_at_once(project: Path, start_server):
    server = start_server(
        project, "app:application", "--processes", PROCESSES, "--restart-mode", "server"
    )
    wait_for(lambda: len(imports(project)) == 2, 10, "both daemons to preload the app")
    set_version(project / "app.py", "v2", "rename")
    wait_version(server, "v2")
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    # One new daemon can serve v2 while the other is still importing (seen on a trixie leg).
    wait_for(lambda: len(imports(project)) >= 4, 10, lambda: f"both new daemons\n{server.log()}")
    holds_for(lambda: len(imports(project)) == 4, 0.5, "one import by each new daemon")


def warmed(server) -> int:
    """How many standby processes have said they are warm (--log-level info)."""
    return sum(" warmed: " in line for line in server.log().splitlines())


def test_standby_group_takes_over_and_the_old_one_waits_empty(project: Path, start_server):
    server = start_server(
        project, "app:application", "--processes", "1", "--standbys", "2", "--log-level", "info"
    )
    wait_for(lambda: len(imports(project)) == 1, 10, "the serving daemon to import the app")
    # The next group warms fully, the one after it holds its libraries.
    wait_for(lambda: warmed(server) == 2, 20, lambda: f"both standbys to warm\n{server.log()}")
    assert len(imports(project)) == 1, imports(project)  # warm, and the app not imported
    first = json.loads(server.get("/")[1])["pid"]
    for round_, version in enumerate(("v2", "v3"), start=2):
        set_version(project / "app.py", version)
        wait_version(server, version)
        # Exactly one import per hand-over: the standby's; the retired group comes back empty.
        # Two warm-ups each time: the group now next completes, the retired one comes back.
        wait_for(lambda r=round_: warmed(server) == 2 * r, 20, "the retired group back, warm")
        assert len(imports(project)) == round_, imports(project)
        pid = json.loads(server.get("/")[1])["pid"]
        assert pid != first
        wait_for(lambda p=first: not Path(f"/proc/{p}").exists(), 10, f"pid {first} to exit")
        first = pid
    lines = [line for line in server.log().splitlines() if line.startswith("Reloaded in")]
    assert len(lines) == 2, server.log()
    # wsgidev's info, not Apache's: no line per daemon start from mod_wsgi.
    assert "Starting daemon process" not in server.log(), server.log()


@pytest.mark.parametrize("standbys", ["1", "2"])
def test_standby_groups_hand_over_round_the_ring(project: Path, start_server, standbys: str):
    server = start_server(project, "app:application", "--processes", "1", "--standbys", standbys)
    names = {
        Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        for pid in descendants(server.process.pid)
        if alive(pid)
    }
    assert any(name.startswith("(wsgidev.b:") for name in names), names
    assert any(name.startswith("(wsgidev.c:") for name in names) == (standbys == "2"), names
    pids = [int(server.json()["pid"])]
    for version in ("v2", "v3", "v4"):
        set_version(project / "app.py", version)
        wait_version(server, version)
        pids.append(int(server.json()["pid"]))
    assert len(set(pids)) == 4, pids  # each hand-over to a fresh process of the other group
    wait_for(
        lambda: len(reload_lines(server)) == 3, 10, lambda: f"three reload lines\n{server.log()}"
    )


def test_process_restart_mode_restarts_each_daemon(project: Path, start_server):
    server = start_server(
        project, "app:application", "--processes", PROCESSES, "--restart-mode", "process"
    )
    wait_for(lambda: len(imports(project)) == 2, 10, "both daemons to preload the app")
    pids = {json.loads(server.get("/")[1])["pid"] for _ in range(8)}
    set_version(project / "app.py", "v2", "rename")
    wait_version(server, "v2")
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    # One new daemon can serve v2 while the other is still importing (seen on a trixie leg).
    wait_for(lambda: len(imports(project)) >= 4, 10, lambda: f"both new daemons\n{server.log()}")
    holds_for(lambda: len(imports(project)) == 4, 0.5, "one import by each new daemon")
    new_pids = {json.loads(server.get("/")[1])["pid"] for _ in range(8)}
    assert not pids & new_pids


STRAY_APP = """
import os, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSION = "v1"
with open(HERE / "imports.log", "a") as log:
    log.write(f"{os.getpid()}\\n")
try:
    import mod_wsgi  # told to stop: the test lets the held request go only then

    mod_wsgi.subscribe_shutdown(lambda *a, **k: (HERE / f"stopping.{os.getpid()}").touch())
except (ImportError, AttributeError):
    pass


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    body = VERSION
    if path == "/hold":  # held until the test removes the mark
        (HERE / "holding").touch()
        while (HERE / "holding").exists():
            time.sleep(0.02)
    if path == "/lazy":
        import lazy_mod
        body = lazy_mod.VALUE
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"{body} {os.getpid()}".encode()]
"""


def queued_connections(server) -> int:
    """Connections waiting in the accept queues of this server's daemon sockets (`ss -xl`, of
    iproute2, which dev.sh installs: /proc/net/unix shows no queue)."""
    found = subprocess.run(["ss", "-xlnH"], capture_output=True, text=True, check=True).stdout
    queued = 0
    for line in found.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4].startswith(str(server.tmpdir)):
            queued += int(fields[2])
    return queued


def test_a_standby_that_took_a_queued_request_leads_the_hand_over_after_its_own(
    project: Path, start_server
):
    # A request queued on the serving group's socket when a hand-over retires that group is
    # taken by the process Apache starts in its place: a standby, which imports the app for
    # it. Once its group takes over, the next edit must still be handed over at once (seen on
    # django-oscar's sandbox under load: nobody led, and an edit came in "Reloaded in 67.94 s").
    (project / "stray_app.py").write_text(STRAY_APP)
    (project / "lazy_mod.py").write_text("VALUE = 'lazy-1'\n")
    server = start_server(project, "stray_app:application", "--processes", "1", "--threads", "1")

    def answer(path: str = "/") -> tuple[str, int]:
        status, body = server.get(path, 30)
        assert status == 200, body[:2000]
        text, pid = body.decode().split()
        return text, int(pid)

    assert answer("/lazy")[0] == "lazy-1"  # the serving process imports lazy_mod
    first = answer()[1]
    held: list[tuple[str, int]] = []
    queued: list[tuple[str, int]] = []
    holding = threading.Thread(target=lambda: held.append(answer("/hold")))
    holding.start()
    wait_for((project / "holding").exists, 10, "the held request")
    waiting = threading.Thread(target=lambda: queued.append(answer()))
    waiting.start()
    wait_for(lambda: queued_connections(server) >= 1, 10, "a request queued on the daemon")

    set_version(project / "stray_app.py", "v2", "rename")
    # A request sent before the flip would queue behind the held one too: wait for the route.
    wait_for(lambda: any(server.tmpdir.glob("*/route-1")), 10, lambda: f"the flip\n{server.log()}")
    version, taker = answer()
    assert version == "v2" and taker != first
    wait_for((project / f"stopping.{first}").exists, 10, f"{first} told to retire")
    (project / "holding").unlink()  # the retiring process finishes; the queued request goes on
    holding.join(30)
    waiting.join(30)
    assert held and held[0][1] == first
    assert queued and queued[0][0] == "v2" and queued[0][1] not in (first, taker), queued
    stray = queued[0][1]  # a standby of the first group, which imported the app for it

    # An edit of a module only the serving process imported: the stray standby is not stale,
    # and takes over.
    assert answer("/lazy")[0] == "lazy-1"
    (project / "lazy_mod.py").write_text("VALUE = 'lazy-2'\n")
    wait_for(lambda: answer("/lazy") == ("lazy-2", stray), 20, f"lazy-2 from {stray}")

    # The next edit: handed over at once, not after the 60 s the non-leaders wait.
    set_version(project / "stray_app.py", "v3", "rename")
    wait_for(lambda: answer()[0] == "v3", 20, lambda: f"v3\n{server.log()}")
    wait_for(
        lambda: len(reload_lines(server)) == 3, 10, lambda: f"three reload lines\n{server.log()}"
    )
