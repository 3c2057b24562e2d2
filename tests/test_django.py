"""Django: `manage.py runwsgidev` against a real Apache, static files, terminal log, random delay,
WSGIDEV settings, persistent connections, fork and debug modes, and bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    free_port,
    http_get,
    port_is_free,
    wait_for,
    wsgidev_command,
)

from wsgidev.errors import WsgidevError
from wsgidev.options import load_options


def _timed_get(url: str) -> tuple[int, float]:
    started = time.monotonic()
    status, _ = http_get(url, 30)
    return status, time.monotonic() - started


def _mean_latency_s(url: str, count: int, clients: int) -> float:
    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = list(pool.map(lambda _: _timed_get(url), range(count)))
    assert {status for status, _ in answers} == {200}
    return sum(seconds for _, seconds in answers) / count


# --- runserver's address forms -------------------------------------------------------------


@pytest.mark.parametrize(
    ("addrport", "host", "port"),
    [
        ("8080", None, "8080"),
        ("127.0.0.1:8080", "127.0.0.1", "8080"),
        ("0.0.0.0:8080", "0.0.0.0", "8080"),
        ("0:8080", "0.0.0.0", "8080"),
        ("[::1]:8080", "::1", "8080"),
        ("localhost:8080", "localhost", "8080"),
    ],
)
def test_addrport_forms_parse_as_runserver_reads_them(addrport: str, host: str | None, port: str):
    from wsgidev.django.management.commands.runwsgidev import parse_addrport

    assert parse_addrport(addrport) == (host, port)


@pytest.mark.parametrize("addrport", ["", "80a80", "127.0.0.1:", ":8000", "[::1]", "1.2.3.4:x"])
def test_bad_addrport_forms_are_refused(addrport: str):
    from wsgidev.django.management.commands.runwsgidev import parse_addrport

    with pytest.raises(WsgidevError, match="is not a port or address:port"):
        parse_addrport(addrport)


def test_wsgidev_settings_sit_between_env_and_pyproject(tmp_path: Path):
    from wsgidev.django.management.commands.runwsgidev import settings_layer

    (tmp_path / "pyproject.toml").write_text(
        "[tool.wsgidev]\nthreads = 7\nprocesses = 3\nport = 8100\nhost = '0.0.0.0'\n"
    )
    layer = settings_layer({"THREADS": 3, "processes": 1, "port": 8200, "watch": ["tpl"]}, tmp_path)
    options = load_options({"port": "8300"}, {"WSGIDEV_THREADS": "4"}, tmp_path, layer)
    assert options.port == 8300  # CLI
    assert options.threads == 4  # env over WSGIDEV
    assert options.processes == 1  # WSGIDEV over pyproject
    assert options.host == "0.0.0.0"  # pyproject over the default
    assert options.watch == (str(tmp_path / "tpl"),)
    with pytest.raises(WsgidevError, match="unknown key 'thread' in settings.WSGIDEV"):
        settings_layer({"thread": 3}, tmp_path)
    with pytest.raises(WsgidevError, match="must be a dict"):
        settings_layer([("threads", 3)], tmp_path)


# --- runwsgidev against a real Apache ---------------------------------------------------------


def test_runwsgidev_serves_static_logs_and_reuses_db_connections(django_project, start_server):
    server = start_server(
        django_project,
        "--threads",
        "15",
        "--processes",
        "2",
        "--no-reload",
        env={"TEST_CONN_MAX_AGE": "60"},
        manage_py=True,
    )
    # Admin CSS and an app's static file come from the finders: no collectstatic was run.
    status, body = server.get("/static/admin/css/base.css")
    assert status == 200 and b"DJANGO Admin styles" in body
    assert server.get("/static/testapp/app.css") == (200, b"body { color: teal; }\n")
    # Only the finders serve in this mode, not STATIC_ROOT.
    assert server.get("/static/only-in-root.css")[0] == 404

    # print() and logging from a view, and the access line with its status, reach the terminal.
    assert server.get("/log?m=mark-1&status=404")[0] == 404
    wait_for(lambda: "printed by the view mark-1" in server.log(), 10, "the print() line")
    wait_for(lambda: "logged by the view mark-1" in server.log(), 10, "the logging line")
    wait_for(lambda: '"GET /log?m=mark-1&status=404 HTTP/1.1" 404' in server.log(), 10, "access")
    assert "\x1b[" not in server.log(), "colour codes in piped output"

    # CONN_MAX_AGE=60: daemon threads live on, so a burst opens at most one connection per thread.
    log = django_project / "connections.log"
    log.unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda _: http_get(server.url + "/db", 30), range(600)))
    assert {status for status, _ in answers} == {200}
    served_by = {json.loads(body)["pid"] for _, body in answers}
    assert len(served_by) == 2
    opened = Counter(int(line) for line in log.read_text().split())
    assert set(opened) <= served_by
    assert all(1 <= opened[pid] <= 15 for pid in served_by), opened


def test_static_root_mode_serves_collected_files_and_media_from_apache(
    django_project, start_server
):
    server = start_server(
        django_project, "--static-root", "--processes", "1", "--no-reload", manage_py=True
    )
    assert server.get("/static/only-in-root.css") == (200, b"/* only in STATIC_ROOT */\n")
    assert server.get("/media/upload.txt") == (200, b"an upload\n")
    # Not collected, so not there: the production behaviour, not the finders'.
    assert server.get("/static/admin/css/base.css")[0] == 404
    assert f"{django_project / 'collected'} served by Apache at /static" in server.log()


def test_config_reads_static_root_from_settings_in_a_subprocess(django_project):
    result = subprocess.run(
        wsgidev_command("config", "apache", "--static-root"),
        cwd=django_project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f'Alias "/static" "{django_project / "collected"}"' in result.stdout
    assert f'Alias "/media" "{django_project / "media"}"' in result.stdout
    entry = (django_project / ".wsgidev" / "entry.wsgi").read_text()
    assert "django_static='root'" in entry


def test_config_maps_debug_to_express_and_refuses_it_for_apache(django_project):
    express = subprocess.run(
        wsgidev_command("config", "express", "--debug"),
        cwd=django_project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert express.returncode == 0 and "--debug-mode" in express.stdout, express.stderr
    code, out, err = _run(django_project, wsgidev_command("config", "apache", "--debug"))
    assert code == 1 and out == ""
    assert err.startswith("wsgidev: --debug runs Apache attached to a terminal")
    assert len(err.strip().splitlines()) == 1


def test_random_delay_slows_each_request_by_up_to_max(django_project, start_server):
    args = ("--processes", "2", "--threads", "5", "--no-reload")
    plain = start_server(django_project, *args, manage_py=True)
    baseline = _mean_latency_s(plain.url + "/", 40, 8)
    assert baseline < 0.06, f"mean {baseline * 1000:.0f} ms without --random-delay"
    plain.stop()
    delayed = start_server(django_project, *args, "--random-delay", "300", manage_py=True)
    mean = _mean_latency_s(delayed.url + "/", 40, 8) - baseline
    # Uniform over 0..300 ms: 150 ms on average; 40 samples keep it well inside this range.
    assert 0.06 < mean < 0.26, f"mean added delay {mean * 1000:.0f} ms"
    assert "each request delayed by a random 0-300 ms" in delayed.log()


def test_wsgidev_settings_apply_to_runwsgidev_but_not_to_wsgidev_start(
    django_project, start_server
):
    env = {"TEST_WSGIDEV": json.dumps({"processes": 1, "threads": 3, "log_level": "error"})}
    managed = start_server(django_project, "--no-reload", env=env, manage_py=True)
    assert "1 process(es) x 3 thread(s)" in managed.log()
    # Env beats WSGIDEV, and the command line beats env.
    overridden = start_server(
        django_project,
        "--no-reload",
        "--threads",
        "2",
        env={**env, "WSGIDEV_PROCESSES": "2", "WSGIDEV_THREADS": "9"},
        manage_py=True,
    )
    assert "2 process(es) x 2 thread(s)" in overridden.log()
    # `wsgidev start` does not import the settings to look for WSGIDEV: the defaults apply.
    plain = start_server(django_project, "--no-reload", "--nostatic", env=env)
    assert "2 process(es) x 5 thread(s)" in plain.log()
    # --nostatic: not even the finders serve STATIC_URL; the app itself still answers.
    assert plain.get("/static/admin/css/base.css")[0] == 404
    assert plain.get("/")[0] == 200


def test_fork_mode_serves_one_request_per_process(django_project, start_server):
    server = start_server(
        django_project, "--threads", "1", "--processes", "3", "--no-reload", manage_py=True
    )
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: http_get(server.url + "/sleep?s=1", 30), range(6)))
    elapsed = time.monotonic() - started
    bodies = [json.loads(body) for status, body in answers if status == 200]
    assert len(bodies) == 6
    pids = Counter(body["pid"] for body in bodies)
    assert len(pids) == 3
    assert all(len({b["thread"] for b in bodies if b["pid"] == pid}) == 1 for pid in pids)
    # Three at a time: two rounds of one second, not one, not six.
    assert 1.9 < elapsed < 4.5, f"6 x 1 s on 3 single-threaded processes took {elapsed:.1f} s"


# --- on a terminal --------------------------------------------------------------------------


def test_ctrl_c_on_a_terminal_stops_everything_and_access_lines_are_coloured(
    django_project, terminal_server
):
    server = terminal_server(
        django_project, "--processes", "2", "--no-reload", "--skip-checks", manage_py=True
    )
    assert server.pids, "Apache should run below the command"
    assert http_get(server.url + "/log?m=tty&status=404")[0] == 404
    server.read_until("printed by the view tty", 10)
    # Yellow for a 4xx, as runserver colours a 404.
    server.read_until("\x1b[33m[", 10)
    server.read_until('"GET /log?m=tty&status=404 HTTP/1.1" 404', 10)
    server.ctrl_c()
    assert server.wait_exit() == 0, server.text()
    server.assert_nothing_left()


def test_debug_mode_stops_at_breakpoint_in_a_view_and_pdb_answers(django_project, terminal_server):
    server = terminal_server(django_project, "--debug", "--skip-checks", manage_py=True)
    assert "debug mode" in server.text() and "reload off in --debug" in server.text()
    answer: dict[str, tuple[int, bytes]] = {}

    def request() -> None:
        answer["pause"] = http_get(server.url + "/pause", 60)

    client = threading.Thread(target=request)
    client.start()
    server.read_until("(Pdb) ", 20)
    assert "value = 41" in server.text() or "pause()" in server.text()
    server.type("p 1+1")
    server.read_until("\n2\r\n", 10)
    server.type("p value + 1")
    server.read_until("42", 10)
    server.type("c")
    client.join(20)
    assert answer["pause"] == (200, b"value=41")
    server.read_until('"GET /pause HTTP/1.1" 200', 10)
    # One process, one thread: Apache alone, no daemons below it.
    assert len(server.pids) == 1, server.pids
    server.ctrl_c()
    assert server.wait_exit() == 0, server.text()
    server.assert_nothing_left()


# --- bad input: one line, non-zero exit, nothing left ---------------------------------------


def _run(project: Path, command: list[str], env: dict[str, str] | None = None):
    result = subprocess.run(
        command,
        cwd=project,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["80a80"], "CommandError: wsgidev: '80a80' is not a port or address:port: pass e.g."),
        (["127.0.0.1:70000"], "CommandError: wsgidev: --port must be between 1 and 65535"),
        (["8000", "--port", "8001"], "CommandError: wsgidev: give the address once"),
        (["8000", "--debug", "--processes", "2"], "--debug runs one process with one thread"),
        (["8000", "--random-delay", "-5"], "--random-delay must be 0 to 600000 milliseconds"),
    ],
)
def test_runwsgidev_bad_input_fails_in_one_line(django_project, args, words):
    code, _, err = _run(
        django_project, [sys.executable, "manage.py", "runwsgidev", "--skip-checks", *args]
    )
    assert code == 1
    assert words in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_runwsgidev_refuses_a_wsgidev_setting_that_is_not_a_dict(django_project):
    settings = django_project / "testsite" / "settings.py"
    settings.write_text(settings.read_text() + "WSGIDEV = ['threads', 3]\n")
    code, _, err = _run(django_project, [sys.executable, "manage.py", "runwsgidev", "8000"])
    assert code == 1 and "settings.WSGIDEV must be a dict, got list" in err
    assert len(err.strip().splitlines()) == 1, err


def test_static_root_without_collected_folder_fails_clearly(django_project):
    shutil.rmtree(django_project / "collected")
    code, out, err = _run(django_project, wsgidev_command("start", "--static-root"))
    assert code == 1 and out == ""
    assert err.startswith("wsgidev: --static-root: STATIC_ROOT ")
    assert err.strip().endswith("run python manage.py collectstatic")


def test_settings_that_fail_to_import_fail_clearly(django_project):
    env = {"TEST_BREAK_SETTINGS": "1"}
    code, _, err = _run(django_project, wsgidev_command("start", "--static-root"), env)
    assert code == 1
    assert err.strip() == (
        "wsgidev: Django settings testsite.settings failed to import: RuntimeError: these "
        "settings are broken on purpose: fix the settings "
        "(python -c 'import testsite.settings' shows the traceback)"
    )


def test_settings_that_fail_to_import_stop_wsgidev_start(django_project, tmp_path):
    port = free_port()
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    env = {"TEST_BREAK_SETTINGS": "1", "TMPDIR": str(tmpdir)}
    command = wsgidev_command("start", "--no-reload", "--processes", "1", "--port", str(port))
    code, _, err = _run(django_project, command, env)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("wsgidev: the app failed to import: RuntimeError: these settings")
    assert port_is_free(port) and not any(tmpdir.iterdir())


def test_django_project_without_django_installed_fails_clearly(django_project):
    # sys.modules["django"] = None makes Django unimportable for this one wsgidev process.
    script = (
        "import sys; sys.modules['django'] = None; from wsgidev.cli import main; "
        "sys.exit(main(['start', '--no-reload']))"
    )
    code, out, err = _run(django_project, [sys.executable, "-c", script])
    assert code == 1 and out == ""
    assert err.strip() == (
        f"wsgidev: Django is not installed for {sys.executable}: pip install Django into this "
        "environment (pip install 'wsgidev[django]')"
    )


# --- a request's queries -------------------------------------------------------------------------


def _migrated(project: Path) -> Path:
    code, out, err = _run(project, [sys.executable, "manage.py", "migrate", "--noinput", "-v0"])
    assert code == 0, out + err
    return project


def _loop_line(project: Path) -> int:
    views = (project / "testapp" / "views.py").read_text().splitlines()
    return next(number for number, line in enumerate(views, 1) if "QUERY-IN-LOOP" in line)


def test_the_access_line_counts_a_requests_queries_and_a_loop_of_them_gets_a_hint(
    django_project, start_server
):
    server = start_server(_migrated(django_project), "--processes", "2", "--threads", "3")
    answers = {n: server.json(f"/queries?n={n}") for n in (1, 5)}
    # Django's own DEBUG record of the request's queries: the list, then one per name.
    assert [answers[n]["queries"] for n in (1, 5)] == [2, 6]
    for n in (1, 5):
        line = f'"GET /queries?n={n} HTTP/1.1" 200'
        wait_for(lambda line=line: line in server.log(), 10, f"the access line of n={n}")
        access = next(text for text in server.log().splitlines() if line in text)
        assert re.search(rf" [\u00b7-] {answers[n]['queries']} queries \d+ms$", access), access
    # A view without queries gets no count; the client never sees the header that carries it.
    server.json("/sleep?s=0")
    wait_for(lambda: '"GET /sleep?s=0 HTTP/1.1" 200' in server.log(), 10, "its access line")
    plain = next(text for text in server.log().splitlines() if "GET /sleep?s=0 " in text)
    assert re.search(r"200 \d+ \d+ms$", plain), plain
    with urllib.request.urlopen(server.url + "/queries?n=1", timeout=10) as response:
        assert response.headers.get("X-Wsgidev-Queries") is None
    # The loop (5 runs of one shape) gets one hint naming its line; n=1's single get does not.
    where = f"testapp/views.py:{_loop_line(django_project)} in queries"
    wait_for(lambda: "N+1? GET /queries ran one query 5 times" in server.log(), 10, "the hint")
    hints = [text for text in server.log().splitlines() if text.startswith("N+1?")]
    assert len(hints) == 1 and where in hints[0] and "django_content_type" in hints[0], hints
    assert "SQL (" not in server.log()  # each query is printed only with --print-sql


def test_print_sql_prints_each_query_as_the_database_ran_it(django_project, start_server):
    server = start_server(_migrated(django_project), "--print-sql")
    answer = server.json("/queries?n=2")
    assert answer["queries"] == 3

    def printed() -> list[str]:
        return [text for text in server.log().splitlines() if text.startswith("SQL (")]

    wait_for(lambda: len(printed()) >= 3, 10, "three SQL lines")
    wait_for(lambda: '"GET /queries?n=2 HTTP/1.1" 200' in server.log(), 10, "the access line")
    lines = printed()
    assert len(lines) == 3, lines
    assert all("GET /queries" in text and "django_content_type" in text for text in lines)
    # With its parameters in (no placeholder): the second and third look up a key each.
    assert all(
        re.search(r'"django_content_type"\."id" = \d+', text) and "%s" not in text
        for text in lines[1:]
    ), lines
