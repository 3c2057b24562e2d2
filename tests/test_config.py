"""`wsgidev config`: every output passes `httpd -t` and serves the app from a real Apache."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from conftest import (
    alive,
    descendants,
    free_port,
    http_get,
    port_is_free,
    wait_for,
    wsgidev_command,
)

from wsgidev.apache import find_apache
from wsgidev.privileges import child_setup, plan_run_as

# What a stock main config loads (where they are modules, not built in): the snippet and the
# monitor's hand-written sites need authz_core and alias; unixd for User/Group.
MAIN_CONFIG_MODULES = (
    ("unixd_module", "mod_unixd.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("alias_module", "mod_alias.so"),
)


def render(project: Path, *args: str) -> str:
    """Run `wsgidev config ...` in project and return what it printed."""
    result = subprocess.run(
        wsgidev_command("config", *args),
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def minimal_main_config(root: Path, port: int, include: Path) -> Path:
    """The smallest main config a system Apache could have, Including the snippet: every path
    from find_apache() (mod_wsgi's build settings), each module loaded only where this Apache
    build lacks it, and the user wsgidev's own run-as plan gives."""
    modules = find_apache().modules_dir
    run_as = plan_run_as(None, None, [])
    if run_as.mode == "apache-user":
        user = f"User {run_as.user}\nGroup {run_as.group}\n"
    elif run_as.mode == "userns":  # Apache sees this unprivileged id and does not switch
        user = f"User #{run_as.inner_uid}\nGroup #{run_as.inner_gid}\n"
    else:
        user = ""
    (root / "logs").mkdir(parents=True)
    conf = root / "main.conf"
    conf.write_text(
        f'ServerRoot "{root}"\n'
        f"ServerName 127.0.0.1\n"
        f"Listen 127.0.0.1:{port}\n"
        f'PidFile "{root}/httpd.pid"\n'
        f'DefaultRuntimeDir "{root}"\n'
        f'ErrorLog "{root}/logs/error.log"\n'
        "<IfModule !mpm_event_module>\n<IfModule !mpm_worker_module>\n"
        "<IfModule !mpm_prefork_module>\n"
        f'LoadModule mpm_event_module "{modules}/mod_mpm_event.so"\n'
        "</IfModule>\n</IfModule>\n</IfModule>\n"
        + "".join(
            f'<IfModule !{name}>\nLoadModule {name} "{modules}/{file}"\n</IfModule>\n'
            for name, file in MAIN_CONFIG_MODULES
        )
        + user
        + f'Include "{include}"\n'
        # mod_wsgi's default socket folder is Apache's runtime folder (DEFAULT_REL_RUNTIMEDIR,
        # or the distribution's own), which only an Apache started by the init system may
        # write; a hand-started one names its own place.
        + f'WSGISocketPrefix "{root}/wsgi"\n'
    )
    return conf


def config_test(conf: Path) -> subprocess.CompletedProcess[str]:
    """`httpd -t` on a config file, as the server would be run."""
    apache = find_apache()
    return subprocess.run(
        [apache.httpd, "-t", "-f", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=apache.environ(),
        preexec_fn=child_setup(plan_run_as(None, None, [])),
    )


@contextmanager
def running(command: list[str], port: int, log: Path, cwd: Path | None = None) -> Iterator[None]:
    """Run a server command in its own session until the port answers; always stop it."""
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=find_apache().environ(),  # a pip-built Apache's own libraries (library_path)
            preexec_fn=child_setup(plan_run_as(None, None, [])) if command[0] != "bash" else None,
        )
    pids: set[int] = set()
    try:

        def answers() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                http_get(f"http://127.0.0.1:{port}/", 2)
            except OSError:
                return False
            return True

        wait_for(answers, 60, f"port {port} to answer\n{log.read_text()}")
        pids = descendants(process.pid) | {process.pid}
        yield
    finally:
        pids |= descendants(process.pid)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        wait_for(lambda: not any(alive(pid) for pid in pids), 20, "the server to stop")
        wait_for(lambda: port_is_free(port), 10, "the port to be free")
        sys.stdout.write(log.read_text(errors="replace"))


def daemon_pids(port: int, count: int) -> set[int]:
    """The pids that answered count parallel half-second requests."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        answers = list(
            pool.map(lambda _: http_get(f"http://127.0.0.1:{port}/sleep?s=0.5", 30), range(count))
        )
    assert [status for status, _ in answers] == [200] * count
    return {json.loads(body)["pid"] for _, body in answers}


def test_apache_snippet_included_from_a_minimal_main_config_serves(project: Path, tmp_path: Path):
    snippet = render(
        project, "apache", "app:application", "--processes", "2", "--threads", "4", "--no-reload"
    )
    assert "WSGIDaemonProcess" in snippet and "processes=2 threads=4" in snippet
    assert "LoadModule wsgi_module" in snippet
    assert f'<Directory "{project / ".wsgidev"}">' in snippet
    # For a system Apache: no trace of wsgidev's own dev port in the daemons' ps names.
    assert f'display-name="(wsgidev:{project.name})"' in snippet and ":8000" not in snippet
    include = tmp_path / "wsgidev.conf"
    include.write_text(snippet)
    port = free_port()
    main = minimal_main_config(tmp_path / "root", port, include)
    check = config_test(main)
    assert check.returncode == 0, check.stderr
    assert "Syntax OK" in check.stderr
    with running([find_apache().httpd, "-f", str(main), "-DFOREGROUND"], port, tmp_path / "a.log"):
        assert len(daemon_pids(port, 8)) == 2
        status, body = http_get(f"http://127.0.0.1:{port}/../app.py")
        assert status in (400, 403, 404)


def test_apache_snippet_without_load_module(project: Path):
    snippet = render(project, "apache", "app:application", "--no-load-module")
    assert "LoadModule" not in snippet
    assert "WSGIDaemonProcess" in snippet


def test_standalone_config_passes_configtest_and_serves(project: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "standalone"
    conf_text = render(
        project, "standalone", "app.py", "--port", str(port), "--output", str(out), "--no-reload"
    )
    conf = out / "httpd.conf"
    conf.write_text(conf_text)
    check = config_test(conf)
    assert check.returncode == 0, check.stderr
    with running([find_apache().httpd, "-f", str(conf), "-DFOREGROUND"], port, tmp_path / "s.log"):
        assert len(daemon_pids(port, 6)) == 2


def test_standalone_config_reloads_by_hand_over(project: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "standalone"
    conf = out / "httpd.conf"
    conf_text = render(
        project, "standalone", "app:application", "--port", str(port), "--output", str(out)
    )
    conf.write_text(conf_text)
    assert "WSGIImportScript" in conf_text and "SetEnvIfExpr" in conf_text
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "r.log"
    with running([find_apache().httpd, "-f", str(conf), "-DFOREGROUND"], port, log):
        # Both serving processes have imported v1: a process still importing when the edit
        # lands imports v2 itself, and the new code shows with no hand-over at all.
        # (No wsgidev command reads this log: each daemon says so in a plain line, at info.)
        ready = "imported the app in"
        wait_for(lambda: log.read_text().count(ready) >= 2, 30, "both processes")
        first = json.loads(http_get(url)[1])
        app = project / "app.py"
        app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
        wait_for(lambda: json.loads(http_get(url)[1])["version"] == "v2", 20, "the new code")
        assert json.loads(http_get(url)[1])["pid"] != first["pid"]
        assert (out / "route-1").exists()  # the first standby group serves now


def test_express_command_serves_the_same_app(project: Path, tmp_path: Path):
    port = free_port()
    out = tmp_path / "express"
    command = render(
        project,
        "express",
        "app:application",
        "--port",
        str(port),
        "--processes",
        "2",
        "--threads",
        "3",
        "--output",
        str(out),
        "--no-reload",
    )
    assert "start-server" in command and "--processes 2 --threads 3" in command
    with running(["bash", "-c", command], port, tmp_path / "e.log", cwd=project):
        assert len(daemon_pids(port, 6)) == 2


@pytest.mark.parametrize("kind", ["standalone", "apache", "express"])
def test_entry_script_goes_to_the_output_folder(project: Path, kind: str):
    text = render(project, kind, "app:application")
    entry = project / ".wsgidev" / "entry.wsgi"
    assert entry.is_file()
    assert str(entry) in text
    assert "wsgidev.daemon.entry.load" in entry.read_text()
    # The folder wsgidev made in the project keeps itself out of git status.
    assert (project / ".wsgidev" / ".gitignore").read_text() == "*\n"
    subprocess.run(["git", "init", "-q", str(project)], check=True, timeout=30)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "app.py" in status.stdout and ".wsgidev" not in status.stdout, status.stdout
