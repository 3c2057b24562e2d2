"""Bad input: one line naming the problem and the fix, a non-zero exit, nothing left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO, assert_one_line_error, free_port, run_wsgidev, wait_for

from wsgidev.apache import apache_version, find_apache

CASES = {
    "threads zero": (["--threads", "0"], ["--threads", "at least 1"]),
    "threads not a number": (["--threads", "many"], ["threads", "whole number"]),
    "processes negative": (["--processes", "-1"], ["--processes", "at least 1"]),
    "port out of range": (["--port", "70000"], ["--port", "65535"]),
    "port not a number": (["--port", "http"], ["port", "whole number"]),
    "host not an address": (["--host", "not a host!"], ["--host"]),
    "host not on this machine": (["--host", "192.0.2.1"], ["not an address of this machine"]),
    "log level": (["--log-level", "loud"], ["log-level"]),
    "unknown flag": (["--frobnicate"], ["--frobnicate"]),
    "missing Apache": (["--httpd", "/nonexistent/httpd"], ["Apache httpd not found", "apt-get"]),
    "bad env": (["--env", "NOEQUALS"], ["KEY=VALUE", "NOEQUALS=VALUE"]),
    "standbys out of range": (["--standbys", "3"], ["--standbys", "1 or 2"]),
    "python path missing": (["--python-path", "/nonexistent-w"], ["--python-path", "not a folder"]),
    "static folder missing": (["--static", "/x=/nonexistent-w"], ["--static", "not a folder"]),
    "httpd not Apache": (["--httpd", "/bin/false"], ["--httpd /bin/false", "not Apache"]),
    "privileged port": (["--port", "80"], ["port 80", "above 1023"]),
    "env file missing": (["--env-file", "/nonexistent-w.env"], ["--env-file", "not a file"]),
    "exclude bad glob": (["--exclude", "gen/[ab"], ["--exclude 'gen/[ab'", "without its ']'"]),
    "exclude empty": (["--exclude", ""], ["--exclude ''", "is empty"]),
    "watch bad glob": (["--watch", "["], ["--watch", "without its ']'", "[[]"]),
    # Accepted once, then broken at run time (every request a 500, or 1,010 daemons):
    "poll interval nan": (["--poll-interval", "nan"], ["--poll-interval", "at most 3600"]),
    "poll interval inf": (["--poll-interval", "inf"], ["--poll-interval", "at most 3600"]),
    "reload settle negative": (["--reload-settle", "-1"], ["--reload-settle", "0 to 60"]),
    "reload settle nan": (["--reload-settle", "nan"], ["--reload-settle", "0 to 60"]),
    "random delay huge": (["--random-delay", "99999999999999999999"], ["--random-delay", "600000"]),
    "proxy port out of range": (["--proxy", "/p=http://127.0.0.1:99999/"], ["--proxy URL"]),
    "static at the root": (["--static", "/=/etc"], ["--static", "below"]),
    "processes 500": (["--processes", "500"], ["--processes", "at most 64"]),
    "threads 5000": (["--threads", "5000"], ["--threads", "at most 500"]),
    "processes x threads": (["--processes", "10", "--threads", "300"], ["3000 daemon threads"]),
    "timeout past a day": (["--shutdown-timeout", "100000"], ["--shutdown-timeout", "86400"]),
    "server root in /proc": (["--server-root", "/proc/wsgidev-x"], ["--server-root", "drop"]),
    "werkzeug and pdb": (["--werkzeug", "--pdb"], ["--werkzeug and --pdb", "choose one"]),
    "run without a command": (["--run", "worker"], ["'worker' is not KEY=VALUE"]),
    "run bad name": (["--run", "1x=true"], ["--run 1x=", "NAME=COMMAND"]),
    "run no such command": (
        ["--run", "w=nonexistent-wsgidev-command -x"],
        ["service command 'nonexistent-wsgidev-command' not found", "install it"],
    ),
    "run twice one name": (["--run", "w=true", "--run", "w=false"], ["two services are named"]),
    "procfile missing": (
        ["--procfile", "/nonexistent-w.procfile"],
        ["--procfile", "cannot be read"],
    ),
    "werkzeug pin": (
        ["--werkzeug", "--env", "WERKZEUG_DEBUG_PIN=secret"],
        ["WERKZEUG_DEBUG_PIN='secret' is no PIN", "digits"],
    ),
}


@pytest.mark.bad_input
@pytest.mark.parametrize("case", CASES)
def test_bad_option(case: str, project: Path, short_tmp: Path):
    args, words = CASES[case]
    code, _, err = run_wsgidev(project, short_tmp, "start", "app:application", *args)
    assert_one_line_error(code, err, *words)
    assert not any(short_tmp.iterdir())


@pytest.mark.bad_input
def test_a_procfile_line_that_is_not_name_command(project: Path, short_tmp: Path):
    (project / "Procfile.dev").write_text("web: wsgidev start\njust a command\n")
    code, _, err = run_wsgidev(project, short_tmp, "start", "app:application")
    assert_one_line_error(code, err, "Procfile.dev:2 is not `name: command`", "one `name: command`")
    assert not any(short_tmp.iterdir())


@pytest.mark.bad_input
def test_port_in_use(project: Path, short_tmp: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = run_wsgidev(project, short_tmp, "start", "app.py", "--port", str(port))
    assert_one_line_error(code, err, f"port {port}", "in use", "--port")


@pytest.mark.bad_input
def test_https_port_in_use_names_the_https_option(project: Path, short_tmp: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = run_wsgidev(
            project, short_tmp, "start", "app.py", "--port", str(free_port()), "--https", str(port)
        )
    assert_one_line_error(code, err, f"port {port}", "in use", f"--https {port + 1}")


@pytest.mark.bad_input
def test_a_folder_as_target_says_what_to_pass(project: Path, short_tmp: Path):
    (project / "mysite").mkdir()
    (project / "shop").mkdir()
    (project / "shop" / "manage.py").write_text("")
    code, _, err = run_wsgidev(project, short_tmp, "start", "mysite")
    assert_one_line_error(code, err, "mysite is a folder", "mysite/wsgi.py")
    code, _, err = run_wsgidev(project, short_tmp, "start", "shop")
    assert_one_line_error(code, err, "shop is a folder", "inside shop", "manage.py")
    # A package is a module: its application is served, as the README says.
    (project / "pkgapp").mkdir()
    (project / "pkgapp" / "__init__.py").write_text("application = None\n")
    code, _, err = run_wsgidev(project, short_tmp, "config", "apache", "pkgapp")
    assert code == 0, err


@pytest.mark.bad_input
def test_config_into_a_read_only_folder_is_one_line(project: Path, short_tmp: Path, tmp_path: Path):
    # Root writes anywhere a mode allows: a file in the way of the folder to create fails
    # as a read-only folder does, with an OSError.
    blocker = tmp_path / "file"
    blocker.write_text("")
    for kind in ("standalone", "apache"):
        code, _, err = run_wsgidev(
            project, short_tmp, "config", kind, "app.py", "--output", str(blocker / "out")
        )
        assert_one_line_error(code, err, "cannot write the entry script", "--output")


@pytest.mark.bad_input
def test_https_with_an_unwritable_data_folder_is_one_line(
    project: Path, short_tmp: Path, tmp_path: Path
):
    blocker = tmp_path / "data"
    blocker.write_text("")  # XDG_DATA_HOME is a file: the CA's folder cannot be made
    code, _, err = run_wsgidev(
        project,
        short_tmp,
        "start",
        "app.py",
        "--port",
        str(free_port()),
        "--https",
        env={"XDG_DATA_HOME": str(blocker)},
    )
    assert_one_line_error(code, err, "local certificate authority", "XDG_DATA_HOME")
    assert not any(short_tmp.iterdir())


@pytest.mark.bad_input
def test_missing_target_file(project: Path, short_tmp: Path):
    code, _, err = run_wsgidev(project, short_tmp, "start", "nothere/wsgi.py")
    assert_one_line_error(code, err, "nothere/wsgi.py", "not found")


@pytest.mark.bad_input
def test_missing_target_module(project: Path, short_tmp: Path):
    code, _, err = run_wsgidev(project, short_tmp, "start", "nosuchmodule.wsgi:application")
    assert_one_line_error(code, err, "nosuchmodule.wsgi", "--python-path")


@pytest.mark.bad_input
def test_no_manage_py_and_no_target(project: Path, short_tmp: Path):
    code, _, err = run_wsgidev(project, short_tmp, "start")
    assert_one_line_error(code, err, "manage.py", "mysite/wsgi.py")


@pytest.mark.bad_input
def test_manage_py_naming_missing_settings(project: Path, short_tmp: Path):
    (project / "manage.py").write_text(
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'gone.settings')\n"
    )
    code, _, err = run_wsgidev(project, short_tmp, "start")
    assert_one_line_error(code, err, "gone.settings")


@pytest.mark.bad_input
def test_mod_wsgi_missing(project: Path, short_tmp: Path, tmp_path: Path):
    shadow = tmp_path / "shadow" / "mod_wsgi"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")  # a mod_wsgi without its express/server parts
    code, _, err = run_wsgidev(
        project, short_tmp, "start", "app.py", env={"PYTHONPATH": str(shadow.parent)}
    )
    assert_one_line_error(code, err, "mod_wsgi is not installed", "pip install mod_wsgi")


@pytest.mark.bad_input
def test_broken_app_without_reload_fails_and_cleans_up(project: Path, short_tmp: Path):
    (project / "broken.py").write_text("import nosuchthing_xyz\napplication = None\n")
    port = free_port()
    code, _, err = run_wsgidev(
        project, short_tmp, "start", "broken:application", "--no-reload", "--port", str(port)
    )
    assert_one_line_error(code, err, "failed to import", "nosuchthing_xyz", app_traceback=True)
    # The app's own traceback is shown, from the app's first frame: no wsgidev or importlib.
    assert 'broken.py", line 1' in err
    assert "wsgidev/entry.py" not in err and "importlib/__init__.py" not in err
    assert "save" not in err  # no promise of a reload that --no-reload will not do
    assert not any(short_tmp.iterdir())


@pytest.mark.bad_input
def test_doctor_reports_missing_apache_with_fix(project: Path, short_tmp: Path):
    code, out, _ = run_wsgidev(project, short_tmp, "doctor", "--httpd", "/nonexistent/httpd")
    assert code == 1
    assert "FAIL Apache httpd" in out and "/nonexistent/httpd" in out
    for fix in ("apt-get install apache2", "dnf install httpd", "brew install httpd"):
        assert fix in out


@pytest.mark.bad_input
def test_doctor_apache_names_what_the_daemon_user_cannot_read(project: Path, short_tmp: Path):
    # pytest's folders are root's 0700 ones: what a system Apache's www-data could not read.
    code, out, _ = run_wsgidev(project, short_tmp, "doctor", "apache", "--user", "nobody")
    assert code == 1, out
    (line,) = [line for line in out.splitlines() if line.startswith("FAIL daemon user")]
    assert "the daemons run as nobody (--user), who cannot read /" in line
    assert "wsgidev config apache --user NAME" in line
    names = {line[5:].split(":", 1)[0] for line in out.splitlines()}
    assert "daemon user" in names and not names & {"port", "root readiness"}, out
    code, _, err = run_wsgidev(project, short_tmp, "doctor", "apache", "--port", "8001")
    assert_one_line_error(code, err, "doctor apache checks no port", "drop --port")


def test_doctor_passes_here(project: Path, short_tmp: Path):
    code, out, _ = run_wsgidev(project, short_tmp, "doctor", "--port", str(free_port()))
    assert code == 0, out
    apache = find_apache()
    assert out.count("ok  ") == 11 + bool(apache.library_path)
    assert "mod_http2.so (--http2" in out and "mod_ssl.so (--https)" in out
    # Where each piece was found, as wsgidev will use it.
    lines = dict(line[5:].split(": ", 1) for line in out.splitlines())
    assert lines["Apache httpd"].startswith(
        f"Apache {apache_version(apache.httpd, apache.environ())} at {apache.httpd} ("
    )
    assert lines["Apache modules"].startswith(f"modules in {apache.modules_dir} (")
    assert lines["mod_wsgi"].endswith(apache.mod_wsgi_so)
    assert (
        lines["MIME types"].startswith(f"{apache.mime_types} (")
        and Path(apache.mime_types).is_file()
    )
    assert lines["dependencies"].startswith(
        "needs inotify-simple>=1.3.5, jinja2>=3.0, mod-wsgi>=6.0"
    )
    assert "[https] for --https" in lines["dependencies"]
    assert lines["import names"] == "no import name is defined by two installed distributions"
    assert lines["Django data"] == "no project found here: nothing to check"
    if apache.library_path:
        assert lines["library path"].startswith(f"LD_LIBRARY_PATH gets {apache.library_path} ")


@pytest.mark.bad_input
def test_doctor_names_a_missing_mime_types_file(project: Path, short_tmp: Path, tmp_path: Path):
    # An Apache with no mime.types of its own, on a system with none where mod_wsgi looks:
    # a wrapper httpd answers -V with an empty HTTPD_ROOT, and mimetypes.knownfiles is empty.
    real = find_apache()
    fake = tmp_path / "httpd"
    fake.write_text(
        "#!/bin/sh\n"
        f'case "$1" in -V) echo \' -D HTTPD_ROOT="{tmp_path}/none"\' ;; *) exec {real.httpd} "$@" ;; esac\n'
    )
    fake.chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import mimetypes\nmimetypes.knownfiles[:] = []\n")
    code, out, _ = run_wsgidev(
        project,
        short_tmp,
        "doctor",
        "--httpd",
        str(fake),
        "--port",
        str(free_port()),
        env={"PYTHONPATH": str(site)},
    )
    assert code == 1
    line = next(line for line in out.splitlines() if "MIME types" in line)
    assert line.startswith("FAIL MIME types: no MIME types file")
    assert f"{tmp_path}/none/conf/mime.types" in line and "apt-get install media-types" in line


@pytest.mark.bad_input
@pytest.mark.parametrize("kind", ["apache", "express"])
def test_config_without_a_terminal_refuses_pdb(kind: str, project: Path, short_tmp: Path):
    code, out, err = run_wsgidev(project, short_tmp, "config", kind, "app.py", "--pdb")
    assert_one_line_error(code, err, "--pdb", f"config {kind}", "wsgidev start --pdb")
    assert out == ""


@pytest.mark.bad_input
@pytest.mark.parametrize(
    ("kind", "flag"),
    [
        ("apache", "--live-reload"),
        ("express", "--live-reload"),
        ("apache", "--print-sql"),
        ("express", "--print-sql"),
        ("standalone", "--print-sql"),
        ("apache", "--werkzeug"),
        ("express", "--werkzeug"),
        ("standalone", "--werkzeug"),
    ],
)
def test_config_without_wsgidev_start_refuses_what_needs_its_terminal(
    kind: str, flag: str, project: Path, short_tmp: Path
):
    code, out, err = run_wsgidev(project, short_tmp, "config", kind, "app.py", flag)
    assert_one_line_error(code, err, flag, f"wsgidev start {flag}")
    assert out == ""


def test_config_express_in_debug_mode_takes_pdb(project: Path, short_tmp: Path):
    code, out, err = run_wsgidev(
        project, short_tmp, "config", "express", "app.py", "--debug", "--pdb"
    )
    assert code == 0 and "--debug-mode" in out, err
    # The entry script carries the post-mortem, for mod_wsgi-express's one process.
    entry = (project / ".wsgidev" / "entry.wsgi").read_text()
    assert "post_mortem=True" in entry and "local=True" in entry, entry


@pytest.mark.bad_input
def test_server_root_naming_a_file(project: Path, short_tmp: Path, tmp_path: Path, busy_port):
    # Named even while the port is busy: what the user typed comes before what the machine has.
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("")
    code, _, err = run_wsgidev(
        project,
        short_tmp,
        "start",
        "app.py",
        "--server-root",
        str(a_file),
        "--port",
        str(busy_port),
    )
    assert_one_line_error(code, err, "--server-root", "is a file")


def test_apache_killed_is_said_in_one_line_and_nothing_is_left(project: Path, start_server):
    import signal
    import time

    from conftest import alive, wait_for

    server = start_server(project, "app.py")
    assert server.process is not None
    children = [
        pid
        for pid in server.apache_pids
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]
        == str(server.process.pid)
    ]
    assert len(children) == 1, children  # the Apache parent, wsgidev's one child
    os.kill(children[0], signal.SIGKILL)
    server.process.wait(30)
    assert server.process.returncode == 1
    wait_for(lambda: "Apache stopped by itself" in server.log(), 10, "the line")
    assert "killed by signal 9 (SIGKILL)" in server.log(), server.log()
    time.sleep(0.5)
    assert not any(alive(pid) for pid in server.apache_pids)


@pytest.mark.bad_input
def test_doctor_names_a_mod_wsgi_built_for_another_python(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from wsgidev import doctor
    from wsgidev.options import Options

    other = tmp_path / "other-python" / "lib" / "libpython3.11.so.1.0"
    from wsgidev import apache

    monkeypatch.setattr(apache, "linked_libpython", lambda so: str(other))
    check = {c.name: c for c in doctor.run_checks(Options(port=1))}["libpython"]
    assert not check.ok
    assert f"loads {other}, not this Python's" in check.detail
    assert "--no-binary mod_wsgi" in check.detail


def test_no_reload_hears_a_stop_while_the_app_imports(project: Path, start_server):
    (project / "slow.py").write_text(
        "import time\ntime.sleep(25)\n\ndef application(e, s):\n    s('200 OK', [])\n"
        "    return [b'late']\n"
    )
    server = start_server(project, "slow:application", "--no-reload", wait=False)
    wait_for(lambda: "wsgidev serving" in server.log(), 30, lambda: f"the banner\n{server.log()}")
    started = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout_s=15) == 0, server.log()
    assert time.monotonic() - started < 10  # it waited for the 25 s import before


def test_many_daemon_processes_for_the_cpus_get_a_warning():
    from wsgidev.banner import daemons_warning
    from wsgidev.options import Options

    assert daemons_warning(Options(processes=8), cpus=2) is None  # 16 with the one standby
    warning = daemons_warning(Options(processes=9), cpus=2)
    assert warning is not None and "18 daemon processes in 2 groups" in warning
    assert daemons_warning(Options(processes=9, restart_mode="process"), cpus=2) is None


def test_the_readme_counts_every_bad_input():
    # The README's table of bad inputs is this suite's: each test marked bad_input, by file.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "bad_input"]
        + ["-p", "no:cacheprovider", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    counted = Counter(line.split("::")[0] for line in result.stdout.splitlines() if "::" in line)
    assert counted, result.stdout + result.stderr
    readme = (REPO / "README.md").read_text()
    table = re.findall(r"^\| `(tests/test_\w+\.py)` \| (\d+) \|", readme, re.MULTILINE)
    assert {path: int(count) for path, count in table} == dict(counted)
    total = re.search(r"^\| total \| (\d+) \|", readme, re.MULTILINE)
    assert total is not None and int(total.group(1)) == sum(counted.values())


def test_a_module_beside_the_wsgi_file_but_not_on_the_path_is_named(project: Path, start_server):
    # `wsgidev start sandbox/wsgi.py` from a repository's root: the WSGI file's folder is not
    # on sys.path, so its `import settings` fails; the line says which option puts it there.
    sandbox = project / "sandbox"
    sandbox.mkdir()
    (sandbox / "settings.py").write_text("NAME = 'sandbox'\n")
    (sandbox / "wsgi.py").write_text(
        "import settings\n\n\ndef application(environ, start_response):\n"
        "    start_response('200 OK', [])\n    return [settings.NAME.encode()]\n"
    )
    server = start_server(project, "sandbox/wsgi.py", wait=False)
    hint = "settings.py is beside wsgi.py in sandbox, which is not on sys.path: pass --working-dir sandbox (or --python-path sandbox)"
    wait_for(lambda: hint in server.log(), 30, lambda: f"the hint\n{server.log()}")
    assert "No module named 'settings'" in server.log()
