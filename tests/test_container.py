"""The container example (docs/container/Dockerfile), its layout rebuilt here without Docker.

As the Dockerfile lays it out: a venv of a system Python outside /root, wsgidev and the project's
requirements installed into it (not editable), a root-owned project whose database folder
alone belongs to www-data, wsgidev run as root. tests/nouserns.py refuses user namespaces as
Docker's default seccomp profile does, so wsgidev takes its other way: Apache's daemons run as
www-data. Served, written to SQLite, reloaded, secrets kept from other www-data processes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, WsgidevServer, descendants, free_port, wait_for

SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_APXS = ("/usr/bin/apxs2", "/usr/bin/apxs")
DAEMON_USER = "www-data"
SECRET = "container-secret-4711"
# The versions this suite runs with, so the container's venv differs only in where it lives.
PINNED = ("mod_wsgi", "Django", "Jinja2", "inotify_simple")


# The first test builds the venv (pip, and a compile of mod_wsgi): minutes on a cold machine.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def image() -> Iterator[Path]:
    """A folder holding venv/ (system Python, wsgidev installed) and app/ (the test project),
    laid out as the Dockerfile does; removed afterwards."""
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.fail(f"{SYSTEM_PYTHON} is needed (bash dev.sh test installs python3-venv/-dev)")
    if not any(os.access(path, os.X_OK) for path in SYSTEM_APXS):
        # The image's Apache is the system's (apt-get install apache2 apache2-dev), and its
        # mod_wsgi is compiled against it. compat's pip-httpd leg hides the system Apache to
        # prove wsgidev runs pip's own: there is no such image to build (the other legs build it).
        pytest.skip("no system Apache (apxs2) to build the image's mod_wsgi against")
    base = Path(tempfile.mkdtemp(prefix="wsgidev-container-", dir="/var/tmp"))
    try:
        base.chmod(0o755)  # as /opt and /app are: every user may look in
        venv = base / "venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
        pins = [f"{name}=={importlib.metadata.version(name)}" for name in PINNED]
        # No pip cache: a mod_wsgi wheel built for this suite's Python would load its libpython.
        subprocess.run(
            [str(venv / "bin/pip"), "install", "-q", "--no-cache-dir", str(REPO), *pins],
            check=True,
            timeout=900,
            env={k: v for k, v in os.environ.items() if not k.startswith("PIP_")},
        )
        app = base / "app"
        shutil.copytree(REPO / "tests" / "djangoproject", app)
        settings = app / "testsite" / "settings.py"
        text = settings.read_text()
        settings.write_text(
            text.replace('BASE_DIR / "db.sqlite3"', 'BASE_DIR / "data" / "db.sqlite3"')
        )
        (app / "data").mkdir()
        subprocess.run(
            [str(venv / "bin/python"), "manage.py", "migrate", "--noinput", "-v0"],
            cwd=app,
            check=True,
            timeout=120,
        )
        (app / "connections.log").touch()  # the test app's record of database connections
        daemon = pwd.getpwnam(DAEMON_USER)
        writable = [app / "data", *(app / "data").iterdir(), app / "media", app / "connections.log"]
        for path in writable:
            os.chown(path, daemon.pw_uid, daemon.pw_gid)
        env_file = app / ".env"
        env_file.write_text(f"API_TOKEN={SECRET}\n")
        env_file.chmod(0o600)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


class ContainerServer(WsgidevServer):
    """wsgidev of the container's venv, started under the seccomp filter, as root."""

    venv: Path

    def command(self) -> list[str]:
        nouserns = str(REPO / "tests" / "nouserns.py")
        return [sys.executable, nouserns, str(self.venv / "bin/wsgidev"), *self.args]


@pytest.fixture
def container(image: Path, tmp_path: Path) -> Iterator[ContainerServer]:
    """The container's command, started; stopped, and checked for leftovers, afterwards."""
    ContainerServer.venv = image / "venv"
    args = ["--processes", "2", "--threads", "4", "--env-file", ".env"]
    server = ContainerServer(image / "app", tmp_path, args, {})
    server.tmpdir.chmod(0o755)  # as /tmp is: the daemons reach their sockets through it
    try:
        yield server.start()
        assert server.stop() == 0, server.log()
        server.assert_nothing_left()
    finally:
        server.kill_everything()
        sys.stdout.write(f"--- wsgidev log ({server.url}) ---\n{server.log()}\n")


def _as_daemon_user(paths: list[str]) -> dict[str, str]:
    """What another www-data process (a system Apache's PHP, say) gets reading each path."""
    code = (
        "import json, sys\n"
        "out = {}\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        out[p] = open(p, 'rb').read().decode('latin-1')\n"
        "    except OSError as e:\n"
        "        out[p] = type(e).__name__\n"
        "print(json.dumps(out))\n"
    )
    daemon = pwd.getpwnam(DAEMON_USER)

    def drop() -> None:
        os.setgroups([])
        os.setgid(daemon.pw_gid)
        os.setuid(daemon.pw_uid)

    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", code, *paths],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        preexec_fn=drop,
        cwd="/",
    )
    return dict(json.loads(result.stdout))


def test_the_container_layout_serves_writes_reloads_and_keeps_secrets(
    container: ContainerServer, image: Path
) -> None:
    log = container.log()
    assert f"daemons run as {DAEMON_USER}" in log and "user namespace" not in log, log
    assert "warning" not in log, log  # the database folder is www-data's: nothing to say

    def write() -> dict[str, object]:
        status, body = container.get("/write?env=API_TOKEN")
        assert status == 200, body[:3000]
        return dict(json.loads(body))

    first = write()
    assert first["env"] == SECRET  # --env-file's value reached the app
    assert write()["count"] == int(str(first["count"])) + 1  # SQLite written as www-data

    # A save reloads: the hand-over works for daemons that run as another user too.
    views = image / "app" / "testapp" / "views.py"
    views.write_text(views.read_text().replace('VIEW_MARK = "view-1"', 'VIEW_MARK = "view-2"'))
    try:
        wait_for(lambda: write()["view_mark"] == "view-2", 20, lambda: f"view-2\n{container.log()}")
    finally:
        views.write_text(views.read_text().replace('VIEW_MARK = "view-2"', 'VIEW_MARK = "view-1"'))

    # Another www-data process reads neither the server root's files nor the environment of
    # any process of this server (where the secret rides): only root can.
    root = next(container.tmpdir.iterdir())
    files = [str(p) for p in root.rglob("*") if p.is_file()]
    pids = descendants(container.process.pid) if container.process else set()
    environs = [f"/proc/{pid}/environ" for pid in sorted(pids)]
    assert files and environs
    seen = _as_daemon_user(files + environs)
    leaked = {path: "..." for path, text in seen.items() if SECRET in text}
    assert not leaked, leaked
    # A process that exited meanwhile (a daemon retiring after the reload) reads as empty.
    readable = [p for p in environs if seen[p] not in ("PermissionError", "FileNotFoundError", "")]
    assert not readable, readable


def test_doctor_and_the_banner_say_when_the_daemon_user_cannot_write_the_database(
    image: Path, tmp_path: Path
) -> None:
    data = image / "app" / "data"
    database = data / "db.sqlite3"
    nouserns = [sys.executable, str(REPO / "tests" / "nouserns.py")]
    wsgidev = str(image / "venv" / "bin" / "wsgidev")
    os.chown(data, 0, 0)
    try:
        doctor = subprocess.run(
            [*nouserns, wsgidev, "doctor"],
            cwd=image / "app",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        line = next(x for x in doctor.stdout.splitlines() if "Django data" in x)
        assert line.startswith("FAIL") and f"{DAEMON_USER} cannot write {data}" in line, line
        assert f"chown {DAEMON_USER} the database's folder" in line, line
    finally:
        daemon = pwd.getpwnam(DAEMON_USER)
        os.chown(data, daemon.pw_uid, daemon.pw_gid)
    doctor = subprocess.run(
        [*nouserns, wsgidev, "doctor"],
        cwd=image / "app",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert f"ok   Django data: the daemons can write {database}" in doctor.stdout, doctor.stdout


@pytest.mark.bad_input
def test_a_venv_under_root_gets_the_fixes_that_apply_without_user_namespaces(
    image: Path,
) -> None:
    # This suite's own venv (under a 0700 /root here, or wherever the clone is): www-data
    # cannot read it when no namespace maps it to root.
    folders = {f for prefix in (sys.prefix, sys.base_prefix) for f in _and_parents(prefix)}
    if all(os.stat(folder).st_mode & 0o001 for folder in folders):
        # (compat/run.sh's trixie legs: a venv under /opt of the system's /usr Python)
        pytest.skip(f"this suite's Python is open to {DAEMON_USER} here: nothing to refuse")
    process = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "nouserns.py"),
            sys.executable,
            "-m",
            "wsgidev",
            "start",
            "--port",
            str(free_port()),
        ],
        cwd=image / "app",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)  # a server that started after all: stopped
        process.wait(30)
    process = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    if "cannot read" not in process.stderr:
        pytest.fail(
            f"expected this suite's venv to be unreadable by {DAEMON_USER}: {process.stderr}"
        )
    lines = [x for x in process.stderr.splitlines() if x.startswith("wsgidev:")]
    assert process.returncode != 0 and len(lines) == 1, process.stderr
    assert "user namespaces are unavailable" in lines[0], lines[0]
    assert "python3 -m venv /opt/venv" in process.stderr, process.stderr


def _and_parents(path: str) -> list[Path]:
    resolved = Path(path).resolve()
    return [resolved, *resolved.parents]
