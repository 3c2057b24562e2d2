"""The projects the benchmark serves, made afresh in a temporary folder on every run.

small: a copy of the bundled demo/ site (Django + SQLite).
large: a Wagtail site from `wagtail start`, grown to a real site's size (bench/largesite.py).
Both get the benchprobe app mounted at /bench/ and a migrated SQLite database.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import largesite

REPO = Path(__file__).resolve().parent.parent
PROBE_APP = Path(__file__).resolve().parent / "benchprobe"
SETUP_TIMEOUT_S = 300
# This machine sets the first two; users' machines do not, and they change what is measured
# (no .pyc files written, unbuffered output). The third would override each project's own
# settings. Nothing the benchmark starts inherits them.
MACHINE_ONLY_ENV = ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "DJANGO_SETTINGS_MODULE")

# Appended to the project's settings and root URLconf: the probe app, ahead of any catch-all.
# BENCH_BROWSER_RELOAD=1 (the browser scenario's django-browser-reload contenders): that
# package installed as its README says.
SETTINGS_TAIL = """
INSTALLED_APPS = [*INSTALLED_APPS, "benchprobe"]
import os as _bench_os  # noqa: E402
BENCH_BROWSER_RELOAD = bool(_bench_os.environ.get("BENCH_BROWSER_RELOAD"))
if BENCH_BROWSER_RELOAD:
    INSTALLED_APPS.append("django_browser_reload")
    MIDDLEWARE = [*MIDDLEWARE, "django_browser_reload.middleware.BrowserReloadMiddleware"]
"""
URLS_TAIL = (
    "\nfrom django.urls import include as _bench_include, path as _bench_path  # noqa: E402\n"
    'urlpatterns.insert(0, _bench_path("bench/", _bench_include("benchprobe.urls")))\n'
    "from django.conf import settings as _bench_settings  # noqa: E402\n"
    "if _bench_settings.BENCH_BROWSER_RELOAD:\n"
    '    urlpatterns.insert(0, _bench_path("__reload__/", _bench_include("django_browser_reload.urls")))\n'
)

# Run in a fresh interpreter inside the project: import the WSGI module and answer the first
# probe request, which is what a restarted server process does before it shows new code.
_IMPORT_TIMER = """
import json, os, sys, time
started = time.perf_counter()
sys.path.insert(0, os.getcwd())
import importlib
application = importlib.import_module(sys.argv[1]).application
from wsgiref.util import setup_testing_defaults
environ = {"PATH_INFO": "/bench/probe", "HTTP_HOST": "127.0.0.1"}
setup_testing_defaults(environ)
statuses = []
body = b"".join(application(environ, lambda status, headers, exc=None: statuses.append(status)))
print(json.dumps({"seconds": time.perf_counter() - started, "modules": len(sys.modules),
                  "status": statuses[0]}))
"""


@dataclass(frozen=True, kw_only=True)
class Project:
    """A project ready to serve, and the files the benchmark edits in it."""

    key: str
    title: str
    path: Path
    wsgi_module: str

    @property
    def wsgi_path(self) -> Path:
        """The WSGI script file (what mod_wsgi-express is given)."""
        return self.path / (self.wsgi_module.replace(".", "/") + ".py")

    @property
    def views_path(self) -> Path:
        """The Python file each code edit changes."""
        return self.path / "benchprobe" / "views.py"

    @property
    def models_path(self) -> Path:
        """The models module the rapid scenario's models.py edits change (django.setup() imports it)."""
        return self.path / "benchprobe" / "models.py"

    @property
    def template_path(self) -> Path:
        """The template each template edit changes."""
        return self.path / "benchprobe" / "templates" / "benchprobe" / "probe.txt"


@dataclass(frozen=True, kw_only=True)
class ImportTiming:
    """App import plus first request in a fresh interpreter (median of a few runs)."""

    seconds: float
    modules: int


def make_small(root: Path, python: Path) -> Project:
    """A copy of demo/ with the probe app and a fresh database."""
    path = root / "demo"
    shutil.copytree(REPO / "demo", path, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__"))
    project = Project(
        key="small", title="demo (Django + SQLite)", path=path, wsgi_module="demosite.wsgi"
    )
    _add_probe(project, path / "demosite" / "settings.py", path / "demosite" / "urls.py")
    _migrate(project, python)
    return project


def make_large(root: Path, python: Path) -> Project:
    """A new Wagtail site (`wagtail start`) grown to a real site's size (bench/largesite.py),
    with the probe app and a fresh database."""
    path = root / "bigsite"
    path.mkdir()
    wagtail = python.parent / "wagtail"
    _run([str(wagtail), "start", "bigsite", str(path)], cwd=root)
    apps = len(largesite.HAND_APPS) + len(largesite.SECTIONS)
    project = Project(
        key="large",
        title=f"Wagtail site (wagtail start + optional apps + {apps} project apps)",
        path=path,
        wsgi_module="bigsite.wsgi",
    )
    settings_path = path / "bigsite" / "settings" / "base.py"
    urls_path = path / "bigsite" / "urls.py"
    new_models = largesite.grow(path, settings_path, urls_path)
    _add_probe(project, settings_path, urls_path)
    _run([str(python), "manage.py", "makemigrations", "-v", "0", *new_models], cwd=path)
    _migrate(project, python)
    return project


def _add_probe(project: Project, settings_path: Path, urls_path: Path) -> None:
    shutil.copytree(
        PROBE_APP, project.path / "benchprobe", ignore=shutil.ignore_patterns("__pycache__")
    )
    with open(settings_path, "a", encoding="utf-8") as settings:
        settings.write(SETTINGS_TAIL)
    with open(urls_path, "a", encoding="utf-8") as urls:
        urls.write(URLS_TAIL)


def _migrate(project: Project, python: Path) -> None:
    _run([str(python), "manage.py", "migrate", "--noinput", "-v", "0"], cwd=project.path)


def user_env() -> dict[str, str]:
    """This process's environment as a user's shell would give it (see MACHINE_ONLY_ENV)."""
    return {k: v for k, v in os.environ.items() if k not in MACHINE_ONLY_ENV}


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(
        command,
        cwd=cwd,
        env=user_env(),
        capture_output=True,
        text=True,
        timeout=SETUP_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def time_import(project: Project, python: Path, runs: int = 3) -> ImportTiming:
    """Median time to import the app and answer one request in a fresh interpreter."""
    timings = []
    for _ in range(runs):
        result = subprocess.run(
            [str(python), "-c", _IMPORT_TIMER, project.wsgi_module],
            cwd=project.path,
            env=user_env(),
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT_S,
            check=True,
        )
        timings.append(json.loads(result.stdout.strip().splitlines()[-1]))
    if any(t["status"] != "200 OK" for t in timings):
        raise RuntimeError(f"the probe did not answer 200 in {project.path}: {timings}")
    return ImportTiming(
        seconds=statistics.median(t["seconds"] for t in timings),
        modules=max(t["modules"] for t in timings),
    )
