"""wsgidev installed into real Django projects nobody here wrote (compat/realprojects.toml).

    bash dev.sh compat real-projects          (or: .venv/bin/python -m pytest compat/real)

For each project, pinned to a commit: its source in .compat/real/src/NAME (cloned from its
repository when missing), its own venv in .compat/real/venv/NAME set up exactly as its README
says (the toml's `setup` commands), then wsgidev's wheel installed into that venv as a user
would (`pip install wsgidev`). Then, as the client sees it:

- the install changes none of the project's imports: every top-level name its distributions
  provide resolves to the same file before and after, and no installed version changes;
- `pip check` has nothing new to say and the project's `manage.py check` passes;
- `wsgidev start --processes 2 --threads 15` serves its real pages (status, content type, text);
- a view edit and a template edit are served; Ctrl-C stops everything and leaves nothing behind.

The edits are undone (git checkout) whatever happens. Each project's facts go to the JSON file
named by $WSGIDEV_REAL_FACTS, which compat/report.py turns into docs/compat.md's table.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from conftest import alive, descendants, free_port, wait_for  # noqa: E402  (the suite's helpers)

CACHE = REPO / ".compat" / "real"
PROJECTS = tomllib.loads((REPO / "compat" / "realprojects.toml").read_text())["project"]
FACTS: dict[str, Any] = {}
# A user's machine: bytecode is written, output buffered (these machines set both otherwise).
MACHINE_ONLY_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONPATH", "VIRTUAL_ENV")
# A user's python3: the system's where there is one, else the one this venv was made from.
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys._base_executable
JS_TYPES = ("text/javascript", "application/javascript")

# Run in the project's venv: where every top-level name its distributions provide resolves,
# without importing any of them, and every installed distribution's version.
SNAPSHOT = r"""
import importlib.metadata as m, importlib.util, json, sys
names = {n for n in m.packages_distributions() if n.isidentifier()}
where = {}
for name in sorted(names):
    try:
        spec = importlib.util.find_spec(name)
    except Exception as exc:
        where[name] = f"error: {type(exc).__name__}"
        continue
    if spec is None:
        where[name] = None
    else:
        where[name] = spec.origin if spec.origin not in (None, "namespace") else sorted(spec.submodule_search_locations or [])
versions = {d.metadata["Name"].lower().replace("_", "-"): d.version for d in m.distributions()}
print(json.dumps({"where": where, "versions": versions}))
"""


def _env(venv: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in MACHINE_ONLY_ENV}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    env["VIRTUAL_ENV"] = str(venv)
    # pip's wheel cache is per user, not per Python: a mod_wsgi built for this checkout's own
    # Python (pyenv 3.11.7) was reused by the system's 3.11.2 and failed at `import math`. The
    # projects' venvs, all of the system's Python, share a cache of their own.
    env["PIP_CACHE_DIR"] = str(CACHE / "pip-cache")
    return {**env, **(extra or {})}


def _sh(command: str, cwd: Path, env: dict[str, str], timeout_s: float = 1800) -> str:
    done = subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert done.returncode == 0, (
        f"{command!r} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return done.stdout


@pytest.fixture(scope="session")
def wheel() -> Path:
    """wsgidev's wheel, built from this checkout, as PyPI would serve it."""
    folder = CACHE / "wheel"
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), str(REPO)],
        check=True,
        timeout=600,
    )
    (built,) = folder.glob("wsgidev-*.whl")
    return built


@pytest.fixture(scope="session", autouse=True)
def write_facts() -> Iterator[None]:
    yield
    out = os.environ.get("WSGIDEV_REAL_FACTS")  # the run's facts (facts.py): projects added
    if out:
        try:
            facts = json.loads(Path(out).read_text())
        except (OSError, ValueError):
            facts = {}
        Path(out).write_text(json.dumps({**facts, "projects": FACTS}, indent=2) + "\n")


def _checkout(project: dict[str, Any]) -> Path:
    source = CACHE / "src" / project["name"]
    if not (source / ".git").exists():
        source.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "clone", "-q", project["repo"], str(source)], check=True, timeout=900
        )
    # Tracked files as committed; what the set-up made (the database, .env) stays.
    known = ["git", "-C", str(source), "cat-file", "-e", project["commit"] + "^{commit}"]
    if subprocess.run(known, check=False, capture_output=True).returncode:
        subprocess.run(["git", "-C", str(source), "fetch", "-q", "origin"], check=True, timeout=900)
    subprocess.run(
        ["git", "-C", str(source), "checkout", "-q", "--force", project["commit"]], check=True
    )
    return source


def _set_up(project: dict[str, Any], source: Path) -> Path:
    """The project's venv, set up by its own commands (done once; a stamp says with which)."""
    venv = CACHE / "venv" / project["name"]
    stamp = venv / ".compat-setup"
    # The checkout's place too: an editable install (django-oscar's) points at the source it was
    # made from, and a .compat folder copied elsewhere kept importing the old checkout.
    wanted = json.dumps([project["commit"], project["setup"], str(source)])
    frozen = venv / ".compat-freeze"
    if stamp.exists() and stamp.read_text() == wanted and frozen.exists():
        # Reused: take out wsgidev and what it brought, so that the install below is a first one.
        extra = sorted(_installed(venv) - {_name(line) for line in frozen.read_text().splitlines()})
        if extra:
            subprocess.run(
                [str(venv / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", *extra], check=True
            )
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True)
    env = _env(venv, project.get("env"))
    _sh("python -m pip install -q --upgrade pip", source, env)
    for command in project["setup"]:
        _sh(command, source, env)
    (venv / ".compat-freeze").write_text("\n".join(sorted(_installed(venv))) + "\n")
    stamp.write_text(wanted)
    return venv


def _installed(venv: Path) -> set[str]:
    """The distributions installed in venv, by name."""
    freeze = subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "freeze", "--all"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {_name(line) for line in freeze.stdout.splitlines() if line.strip()}


def _name(line: str) -> str:
    return line.split("==")[0].split(" @ ")[0].strip().lower().replace("_", "-")


def _snapshot(venv: Path, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(venv / "bin/python"), "-c", SNAPSHOT],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _get(url: str, timeout_s: float = 30) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """wait_for, counting a refused connection as not yet; the seconds it took."""

    def holds() -> bool:
        try:
            return predicate()
        except OSError:
            return False

    start = time.monotonic()
    wait_for(holds, timeout_s, what)
    return time.monotonic() - start


PROBE_VIEW = """

def wsgidev_probe(request):  # added by wsgidev's compat run (undone after it)
    from django.http import HttpResponse

    return HttpResponse("wsgidev-probe v1")
"""

PROBE_URL = """

# added by wsgidev's compat run (undone after it)
from django.urls import path as _wsgidev_path  # noqa: E402
from {module} import wsgidev_probe as _wsgidev_probe  # noqa: E402

urlpatterns.insert(0, _wsgidev_path("wsgidev-probe/", _wsgidev_probe))
"""


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("project", PROJECTS, ids=[p["name"] for p in PROJECTS])
def test_real_project(project: dict[str, Any], wheel: Path) -> None:
    facts: dict[str, Any] = {"commit": project["commit"][:12], "repo": project["repo"]}
    FACTS[project["name"]] = facts
    source = _checkout(project)
    started = time.monotonic()
    venv = _set_up(project, source)
    facts["setup_s"] = round(time.monotonic() - started, 1)
    site = source / project.get("manage_dir", ".")
    env = _env(venv, project.get("env"))
    python = str(venv / "bin/python")

    # -- installing wsgidev changes nothing the project imports ---------------------------------
    before = _snapshot(venv, site, env)
    check_before = subprocess.run(
        [python, "-m", "pip", "check"], capture_output=True, text=True, env=env
    )
    _sh(f"{python} -m pip install -q {wheel}", site, env)
    after = _snapshot(venv, site, env)
    moved = {
        n: (w, after["where"].get(n))
        for n, w in before["where"].items()
        if after["where"].get(n) != w
    }
    changed = {
        n: (v, after["versions"].get(n))
        for n, v in before["versions"].items()
        if after["versions"].get(n) != v
    }
    added = sorted(set(after["versions"]) - set(before["versions"]))
    facts.update(
        imports_checked=len(before["where"]),
        imports_moved=moved,
        versions_changed=changed,
        added=added,
    )
    facts["dotenv"] = after["where"].get("dotenv")
    assert moved == {}, f"installing wsgidev moved imports: {moved}"
    assert changed == {}, f"installing wsgidev changed installed versions: {changed}"
    check_after = subprocess.run(
        [python, "-m", "pip", "check"], capture_output=True, text=True, env=env
    )
    new_problems = set(check_after.stdout.splitlines()) - set(check_before.stdout.splitlines())
    facts["pip_check"] = "clean" if check_after.returncode == 0 else check_after.stdout.strip()
    assert not new_problems or check_after.returncode == 0, new_problems
    _sh(f"{python} manage.py check", site, env)
    facts["manage_check"] = "passed"

    # -- wsgidev start --processes 2 --threads 15 ------------------------------------------------
    views, urls, template = (
        source / project[k] for k in ("views_file", "urls_file", "template_file")
    )
    tmp = Path(tempfile.mkdtemp(prefix="wr-", dir="/tmp"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (CACHE / f"{project['name']}.wsgidev.log").open("w")
    process: subprocess.Popen[bytes] | None = None
    pids: set[int] = set()
    try:
        views.write_text(views.read_text() + PROBE_VIEW)
        urls.write_text(urls.read_text() + PROBE_URL.format(module=project["views_module"]))
        start = time.monotonic()
        process = subprocess.Popen(
            [
                str(venv / "bin/wsgidev"),
                "start",
                "--processes",
                "2",
                "--threads",
                "15",
                "--port",
                str(port),
            ],
            cwd=site,
            env={**env, "TMPDIR": str(tmp)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _wait(lambda: _get(base + "/wsgidev-probe/")[0] == 200, 120, "the first 200")
        facts["first_200_s"] = round(time.monotonic() - start, 2)
        pids = {process.pid, *descendants(process.pid)}
        pages = []
        for page in project["pages"]:
            status, ctype, body = _get(base + page["path"])
            ok_type = ctype.split(";")[0].strip() in (
                JS_TYPES if page["type"] in JS_TYPES else (page["type"],)
            )
            ok_text = page.get("contains", "").encode() in body
            pages.append(
                {
                    "path": page["path"],
                    "status": status,
                    "type": ctype.split(";")[0],
                    "ok": status == 200 and ok_type and ok_text,
                }
            )
        facts["pages"] = pages
        assert all(p["ok"] for p in pages), pages

        # A view edit, in place: every process serves it (ten answers in a row).
        views.write_text(views.read_text().replace("wsgidev-probe v1", "wsgidev-probe v2"))
        facts["view_edit_s"] = round(
            _wait(
                lambda: _get(base + "/wsgidev-probe/")[2] == b"wsgidev-probe v2",
                60,
                "the view edit",
            ),
            2,
        )
        answers = [_get(base + "/wsgidev-probe/")[2] for _ in range(10)]
        assert set(answers) == {b"wsgidev-probe v2"}, answers

        # A template edit: the page shows it.
        marker = f"<!-- wsgidev-template-edit {time.time_ns()} -->"
        template.write_text(template.read_text() + f"\n{marker}\n")
        facts["template_edit_s"] = round(
            _wait(
                lambda: marker.encode() in _get(base + project["template_page"])[2],
                60,
                "the template edit",
            ),
            2,
        )
        pids |= descendants(process.pid)

        # Ctrl-C: everything stops, nothing is left.
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        facts["stop"] = f"exit {code}"
        assert code == 0
        _wait(lambda: not any(alive(p) for p in pids), 10, "every process gone")
        _wait(lambda: not any(tmp.iterdir()), 5, "the server root removed")
        facts["stop"] = f"exit {code}, {len(pids)} processes gone, server root removed"
    finally:
        if process is not None and process.poll() is None:
            pids |= {process.pid, *descendants(process.pid)}
            process.send_signal(signal.SIGINT)  # wsgidev stops Apache (in its own session) too
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
        for pid in pids:  # what is still alive of what this test started, by pid
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
        subprocess.run(
            [
                "git",
                "-C",
                str(source),
                "checkout",
                "-q",
                "--",
                str(views),
                str(urls),
                str(template),
            ],
            check=True,
        )
        shutil.rmtree(tmp, ignore_errors=True)
