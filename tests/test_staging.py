"""The monitor under a system Apache (the `wsgidev config apache` snippet): deploys reload once.

A deploy (rsync, git pull, a CI copy) writes many files over seconds while clients keep asking;
each daemon restarts once the tree is quiet, no process imports a half-copied tree, and no
request fails.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, free_port, holds_for, http_get, wait_for
from test_config import minimal_main_config, render, running

from wsgidev.apache import find_apache, python_library_readable
from wsgidev.privileges import plan_run_as, unreadable_by
from wsgidev.shared.spec import STAGING_SETTLE_S

MODULES = 200
DEPLOY_S = 3.0
CLIENTS = 4
REPETITIONS = int(os.environ.get("WSGIDEV_DEPLOY_REPETITIONS", "20"))

APP = """\
import os
import site_code

# Each process says it has imported the code (tests pace a deploy by it).
open(os.path.join(os.path.dirname(__file__), ".imported-%d" % os.getpid()), "w").close()

def application(environ, start_response):
    body = ("%s %d" % (",".join(site_code.versions()), os.getpid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def _site(project: Path) -> Path:
    """app.py over a package of MODULES modules, each holding the deployed version."""
    package = project / "site_code"
    package.mkdir()
    names = [f"m{index:03d}" for index in range(MODULES)]
    (package / "__init__.py").write_text(
        "".join(f"from . import {name}\n" for name in names)
        + f"MODULES = [{', '.join(names)}]\n"
        + "def versions():\n    return sorted({m.VERSION for m in MODULES})\n"
    )
    for name in names:
        (package / f"{name}.py").write_text(f"VERSION = 'v1'\nNAME = {name!r}\n")
    (project / "app.py").write_text(APP)
    return package


def _deploy(package: Path, version: str, midway: Callable[[], object] = lambda: None) -> float:
    """What rsync does: each file written beside its target under a temporary name, then renamed
    over it, in name order, spread over DEPLOY_S; the longest pause between two files. midway:
    called when half the files are written."""
    files = sorted(package.glob("m*.py"))
    pause = DEPLOY_S / len(files)
    longest, last = 0.0, time.monotonic()
    for index, path in enumerate(files):
        if index == len(files) // 2:
            midway()
            last = time.monotonic()
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        temporary.write_text(f"VERSION = {version!r}\nNAME = {path.stem!r}\n")
        os.replace(temporary, path)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        time.sleep(pause)
    return longest


@dataclass(frozen=True)
class SystemApache:
    """A minimal system Apache that Includes a project's `config apache` snippet (2 daemons)."""

    main: Path
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def error_log(self) -> Path:
        return self.root / "logs" / "error.log"

    def running(self) -> AbstractContextManager[None]:
        command = [find_apache().httpd, "-f", str(self.main), "-DFOREGROUND"]
        return running(command, self.port, self.root / "apache.log")


def _system_apache(project: Path, tmp_path: Path) -> SystemApache:
    include = tmp_path / "wsgidev.conf"
    include.write_text(render(project, "apache", "app:application", "--processes", "2"))
    port, root = free_port(), tmp_path / "root"
    return SystemApache(minimal_main_config(root, port, include), port, root)


def _pids(url: str) -> set[str]:
    """The daemon processes that answer a few requests."""
    return {http_get(url)[1].decode().split()[1] for _ in range(8)}


class Clients:
    """CLIENTS threads asking in a loop; every answer that is not 200 with one version counts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.pids_by_version: dict[str, set[str]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = http_get(self.url, 30)
            except urllib.error.HTTPError as exc:
                outcome = f"HTTP {exc.code}: {exc.read()[:200]!r}"
            except OSError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                versions, _, pid = body.decode().partition(" ")
                if status == 200 and "," not in versions:
                    with self._lock:
                        self.answers[versions] += 1
                        self.pids_by_version.setdefault(versions, set()).add(pid)
                    continue
                outcome = f"{status} {body[:200]!r}"
            with self._lock:
                self.failures.append(outcome)


@pytest.mark.timeout(30 + 12 * REPETITIONS)
def test_a_deploy_of_many_files_restarts_each_daemon_once_and_fails_no_request(
    project: Path, tmp_path: Path
):
    package = _site(project)
    apache = _system_apache(project, tmp_path)
    url, error_log = apache.url, apache.error_log

    def restarts() -> Counter[str]:
        found = re.findall(r"process (\d+) restarts to load the new code", error_log.read_text())
        return Counter(found)

    def imports() -> int:
        return error_log.read_text().count("imported the app in")

    def served_everywhere(version: str) -> bool:
        return all(http_get(url)[1].startswith(f"{version} ".encode()) for _ in range(8))

    with apache.running():
        wait_for(lambda: imports() == 2, 30, "both daemons' imports")
        wait_for(lambda: served_everywhere("v1"), 30, "v1 from both daemons")
        summary, judged = [], 0
        for repetition in range(2, REPETITIONS + 2):
            version = f"v{repetition}"
            before, imported = restarts(), imports()
            with Clients(url) as clients:
                started = time.monotonic()
                longest = _deploy(package, version)
                # Both new daemons are in (Apache starts a daemon that ended within its
                # once-a-second tick, and one daemon can answer every request meanwhile).
                wait_for(lambda n=imported: imports() >= n + 2, 60, f"{version}'s two imports")
                wait_for(lambda v=version: served_everywhere(v), 60, f"{version} everywhere")
                took = time.monotonic() - started
            after = restarts() - before
            summary.append(
                (version, round(took, 2), round(longest, 3), dict(after), len(clients.failures))
            )
            if longest >= STAGING_SETTLE_S / 2:
                # The machine stalled the writer for about the settle time: a restart midway
                # is then what the settle rule says, not a fault. Judged by the others.
                continue
            judged += 1
            assert not clients.failures, (
                summary,
                clients.failures[:10],
                error_log.read_text()[-6000:],
            )
            assert sorted(after.values()) == [1, 1], (summary, error_log.read_text()[-4000:])
        print(summary)
        assert judged >= REPETITIONS * 3 // 4, summary
        # mod_wsgi's own trigger: a touched WSGI script restarts the daemons, as before.
        pids, imported = _pids(url), imports()
        with Clients(url) as clients:
            (project / ".wsgidev" / "entry.wsgi").touch()
            wait_for(lambda: imports() >= imported + 2, 30, "new daemons after touching the script")
            assert not _pids(url) & pids
        assert not clients.failures, clients.failures[:10]
    lines = [line for line in error_log.read_text().splitlines() if "wsgidev" in line]
    assert not any(":error]" in line or "wsgidev-event" in line for line in lines), lines


def test_daemons_started_during_a_deploy_serve_only_the_whole_new_code(
    project: Path, tmp_path: Path
):
    # Apache (re)started while a deploy copies the tree: its daemons import half of it (the
    # deploy waits for their imports at its midpoint). Each waits for the code to be quiet
    # before serving, and, as its imports changed meanwhile, has its requests sent again and
    # restarts.
    package = _site(project)
    apache = _system_apache(project, tmp_path)
    url, error_log = apache.url, apache.error_log

    def imported() -> bool:
        return len(list(project.glob(".imported-*"))) >= 2

    halfway = threading.Event()

    written = sorted(package.glob("m*.py"))[MODULES // 2 - 1]  # the last before the midpoint

    def still_writing() -> bool:
        # A deploy under way writes on while Apache starts: without this, a start slower than
        # the settle time (a loaded machine) would see a quiet half tree, which the settle rule
        # rightly serves (seen once with another suite running beside this one).
        os.utime(written)
        return imported()

    def midway() -> None:
        halfway.set()
        wait_for(still_writing, 60, "both daemons' imports")

    deploy = threading.Thread(target=_deploy, args=(package, "v2", midway))
    deploy.start()
    try:
        halfway.wait(30)
        with apache.running():
            first = http_get(url)
            with Clients(url) as clients:
                deploy.join(30)
                wait_for(lambda: all(_version(url) == "v2" for _ in range(8)), 30, "v2 served")
            assert first[0] == 200 and first[1].startswith(b"v2 "), first
            assert not clients.failures, clients.failures[:10]
            assert set(clients.answers) <= {"v2"}, clients.answers
    finally:
        deploy.join(60)
    log = error_log.read_text()
    assert log.count("changed after its import, so it restarts instead of serving") == 2, log
    assert "restarts to load the new code" in log  # the monitor's own restart


def test_a_daemon_that_imports_a_file_being_written_never_serves_its_error(
    project: Path, tmp_path: Path
):
    # A deploy that writes a file in place, slowly: daemons starting meanwhile fail to import it
    # (an unclosed bracket; the writer goes on until both have failed). Each waits for the
    # file to be quiet and restarts; no client sees the error page.
    package = _site(project)
    apache = _system_apache(project, tmp_path)
    url, error_log = apache.url, apache.error_log
    slow = package / "m199.py"
    started = threading.Event()

    def both_failed() -> bool:
        return error_log.exists() and error_log.read_text().count("failed to import") >= 2

    def write_slowly() -> None:
        deadline = time.monotonic() + 60
        with slow.open("w") as handle:
            handle.write("PARTS = (\n")
            part = 0
            while part < 3 or not both_failed() and time.monotonic() < deadline:
                handle.write(f"    {part},\n")
                handle.flush()
                part += 1
                if part == 3:
                    started.set()
                time.sleep(0.1)
            handle.write(")\nVERSION = 'v1'\nNAME = 'm199'\n")

    writer = threading.Thread(target=write_slowly)
    writer.start()
    try:
        started.wait(10)
        with apache.running():
            first = http_get(url)
            with Clients(url) as clients:
                writer.join(60)
                wait_for(lambda: all(_version(url) == "v1" for _ in range(8)), 30, "v1 served")
            assert first[0] == 200 and first[1].startswith(b"v1 "), first
            assert not clients.failures, clients.failures[:10]
    finally:
        writer.join(60)
    log = error_log.read_text()
    assert log.count("changed after its import, so it restarts instead of serving") == 2, log


def _version(url: str) -> str:
    return http_get(url)[1].decode().split()[0]


RECIPE_MARK = "<!-- staging recipe: tests/test_staging.py runs the commands of the next block -->"


def _recipe() -> list[str]:
    """The README's staging recipe, one command per line, without its comments."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split(RECIPE_MARK, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def _check_doctor(result: subprocess.CompletedProcess[str], confdir: Path, project: Path) -> None:
    """`wsgidev doctor apache` names the user of this Apache's config and, if that user cannot
    reach Python or the project (a 0700 /root: the test's Apache runs in a user namespace,
    where it can), that folder; every other check passes, and no port is checked."""
    lines = dict(line[5:].split(": ", 1) for line in result.stdout.splitlines())
    assert "port" not in lines and "root readiness" not in lines, result.stdout
    user = re.search(r"APACHE_RUN_USER='([^']*)'", (confdir / "envvars").read_text())[1]
    entry = pwd.getpwuid(int(user[1:])) if user.startswith("#") else pwd.getpwnam(user)
    blocked = unreadable_by(
        [*python_library_readable(find_apache()), project.resolve()], entry, entry.pw_gid
    )
    failed = {
        line[5:].split(": ", 1)[0] for line in result.stdout.splitlines() if line[:4] == "FAIL"
    }
    if blocked is None:
        assert f"daemons run as {entry.pw_name} (the system Apache's User)" in lines["daemon user"]
        assert failed <= {"Django data"}, result.stdout
    else:
        assert lines["daemon user"].startswith(
            f"the daemons run as {entry.pw_name} (the system Apache's User), who cannot read "
            f"{blocked}: "
        ), result.stdout
        assert failed == {"daemon user", "Django data"}, result.stdout
        assert result.returncode == 1


def _django_pids(port: int) -> set[int]:
    """The daemon processes that answer a few requests of the Django test site."""
    return {json.loads(http_get(f"http://127.0.0.1:{port}/")[1])["pid"] for _ in range(8)}


def _debian_apache(root: Path, port: int) -> Path:
    """A copy of the system's /etc/apache2, as `APACHE_CONFDIR`, that listens on a loopback
    port, keeps its pid, logs and sockets under root, and runs as wsgidev's own run-as plan."""
    confdir = root / "apache2"
    shutil.copytree("/etc/apache2", confdir, symlinks=True)
    run_as = plan_run_as(None, None, [])
    if run_as.mode == "userns":  # Apache sees this unprivileged id and does not switch
        user, group = f"#{run_as.inner_uid}", f"#{run_as.inner_gid}"
    elif run_as.mode == "apache-user":
        user, group = run_as.user or "", run_as.group or ""
    else:
        user = group = pwd.getpwuid(os.getuid()).pw_name
    for name in ("run", "run/socks", "lock", "log"):
        (root / name).mkdir(exist_ok=True)  # made here, so apache2ctl does not chown them
    (confdir / "envvars").write_text(
        f"unset HOME\nexport APACHE_RUN_USER='{user}'\nexport APACHE_RUN_GROUP='{group}'\n"
        f"export APACHE_PID_FILE={root}/run/apache2.pid\nexport APACHE_RUN_DIR={root}/run\n"
        f"export APACHE_LOCK_DIR={root}/lock\nexport APACHE_LOG_DIR={root}/log\nexport LANG=C\n"
    )
    (confdir / "ports.conf").write_text(f"Listen 127.0.0.1:{port}\n")
    # A test's Apache is not started by the init system, so mod_wsgi's socket folder is its own.
    (confdir / "conf-enabled" / "zz-test-sockets.conf").write_text(
        f'WSGISocketPrefix "{root}/run/wsgi"\n'
    )
    return confdir


@pytest.mark.skipif(
    not (Path("/etc/apache2/apache2.conf").is_file() and shutil.which("a2enconf")),
    reason="the staging recipe is Debian's Apache layout (/etc/apache2, a2enconf)",
)
def test_the_readme_staging_recipe_serves_reloads_and_turns_off(
    django_project: Path, tmp_path: Path
):
    recipe = _recipe()
    port = free_port()
    root = tmp_path / "system"
    root.mkdir()
    confdir = _debian_apache(root, port)
    environ = {**os.environ, "APACHE_CONFDIR": str(confdir)}
    venv_bin = f"{Path(sys.executable).parent}/"

    def run(command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = command.replace("/etc/apache2", str(confdir)).replace(".venv/bin/", venv_bin)
        result = subprocess.run(
            ["bash", "-c", command],
            cwd=django_project,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0 or not check, (command, result.stdout, result.stderr)
        return result

    # What a test machine cannot do as written: its set-up installed the packages, and the
    # venv is the suite's own.
    install, cd, venv, *steps = recipe
    assert install.startswith("apt-get install ") and cd.startswith("cd /srv/mysite"), recipe
    assert venv.startswith("python3 -m venv .venv && .venv/bin/pip install wsgidev"), recipe
    packages = install.split()[2:]
    assert subprocess.run(["dpkg", "-s", *packages], capture_output=True).returncode == 0
    start = steps.index("apache2ctl graceful")
    configure = steps[0]
    for command in steps[:start]:
        run(command)
    url = f"http://127.0.0.1:{port}/page"
    error_log = root / "log" / "error.log"
    # A graceful restart of a stopped Apache starts it; the test starts it in the foreground,
    # in wsgidev's run-as plan (a user namespace as root), and stops it at the end.
    apache = ["env", f"APACHE_CONFDIR={confdir}", "apache2ctl", "-DFOREGROUND"]
    with running(apache, port, tmp_path / "apache.log", cwd=django_project):
        (doctor,) = steps[start + 1 :]
        _check_doctor(run(doctor, check=False), confdir, django_project)
        assert b"view-1" in http_get(url)[1]
        views = django_project / "testapp" / "views.py"
        views.write_text(views.read_text().replace('"view-1"', '"view-2"'))
        wait_for(lambda: b"view-2" in http_get(url)[1], 30, "the edit served")
        wait_for(
            lambda: error_log.read_text().count("imported the app in") >= 4, 20, "the import lines"
        )
        log = error_log.read_text()
        assert f"{views} changed: process" in log, log
        # Reloading off: rendered again with --no-reload, then a graceful restart.
        run(configure.replace(" > ", " --no-reload > ", 1))
        run("apache2ctl graceful")

        def restarted() -> str:
            return error_log.read_text().rpartition("Doing graceful restart")[2]

        wait_for(lambda: restarted().count("imported the app in") == 2, 30, "the new daemons")
        daemons = {int(pid) for pid in re.findall(r"process (\d+) imported", restarted())}
        views.write_text(views.read_text().replace('"view-2"', '"view-3"'))
        holds_for(lambda: b"view-2" in http_get(url)[1], 3, "the old code, reloading off")
        assert _django_pids(port) <= daemons
        assert " watches " not in restarted() and " changed: " not in restarted()
    lines = [line for line in error_log.read_text().splitlines() if "wsgidev" in line]
    assert not any(":error]" in line or "wsgidev-event" in line for line in lines), lines
