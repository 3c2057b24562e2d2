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
import tempfile
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


def _run(command: list[str], cwd: Path) -> str:
    """Run command in cwd with a user's environment; its output, or RuntimeError."""
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
    return result.stdout


# The floor of a code edit's reload (issue 22), in a fresh interpreter inside the project, by mode:
#   names     import the app, answer the probe; print the library modules a serving process
#             records for its standbys (wsgidev.daemon.preload) and the settings module;
#   standby   warm as a standby does (preload.preload: those modules, django.setup()), then time
#             the rest: the app's import and the first answer, what a taking-over process does;
#   in-place  import the app and answer, then time a re-import of the edited module and of the
#             project's modules that import it (by an import statement, or, in a URLconf, by a
#             dotted name in a string, as include("app.urls") does), transitively, with the
#             ROOT_URLCONF, and one answer: what no server restarting processes can beat.
_FLOOR_TIMER = """
import ast, importlib, importlib.util, json, os, sys, time
from wsgiref.util import setup_testing_defaults
sys.path.insert(0, os.getcwd())
project = os.path.realpath(os.getcwd()) + os.sep
wsgi_module, edited, mode = sys.argv[1:4]

def answer(application):
    environ = {"PATH_INFO": "/bench/probe", "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    statuses = []
    b"".join(application(environ, lambda status, headers, exc=None: statuses.append(status)))
    return statuses[0]

def ours(module):
    path = getattr(module, "__file__", None)
    return bool(path) and os.path.realpath(path).startswith(project)

if mode == "standby":
    with open(sys.argv[4]) as names_file:
        names = json.load(names_file)
    os.environ["DJANGO_SETTINGS_MODULE"] = names["settings"]
    from wsgidev.daemon import preload  # as a standby warms: in order, django.setup() midway
    warmed = preload.preload(names["libraries"], django=True)
    if warmed.django_error is not None:
        raise warmed.django_error
started = time.perf_counter()
application = importlib.import_module(wsgi_module).application
status = answer(application)
seconds = time.perf_counter() - started
if mode == "names":
    from wsgidev.daemon import preload  # what a serving process records for its standbys
    libraries = preload.library_modules()
    print(json.dumps({"libraries": libraries, "settings": os.environ["DJANGO_SETTINGS_MODULE"]}))
    sys.exit()
if mode == "in-place":
    from django.conf import settings
    from django.urls import clear_url_caches
    mine = {name: module for name, module in list(sys.modules.items()) if ours(module)}
    importers = {}
    for name, module in mine.items():
        with open(module.__file__, encoding="utf-8") as source:
            text = source.read()
        package = name if module.__file__.endswith("__init__.py") else name.rpartition(".")[0]
        named = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
                named.add(base)
                named.update(f"{base}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                if hasattr(module, "urlpatterns"):  # a URLconf's include("app.urls")
                    named.add(node.value)
        importers[name] = named
    stale = {edited, settings.ROOT_URLCONF}
    while True:
        more = {name for name, named in importers.items() if named & stale} - stale
        if not more:
            break
        stale |= more
    started = time.perf_counter()
    for name in stale:
        sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            delattr(sys.modules[parent], child)  # or `from . import views` finds the old one
    clear_url_caches()
    for name in [edited, *sorted(stale - {edited})]:
        importlib.import_module(name)
    if sys.modules[edited] is mine[edited]:
        raise SystemExit(f"{edited} was not imported again")
    status = answer(application)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "status": status, "modules": sorted(stale)}))
    sys.exit()
print(json.dumps({"seconds": seconds, "status": status, "modules": len(sys.modules)}))
"""


@dataclass(frozen=True, kw_only=True)
class Floor:
    """How fast a code edit could show at best (medians of a few fresh interpreters each)."""

    standby_s: float  # a warm standby (libraries, django.setup()) importing the rest, answering
    in_place_s: float  # re-importing the edited module and its importers in a warm process
    in_place_modules: tuple[str, ...]  # which modules that was
    runs: int  # fresh interpreters per figure (their median)


def time_floor(project: Project, python: Path, edited: str, runs: int = 3) -> Floor:
    """The floor of an edit of the module named edited (_FLOOR_TIMER); RuntimeError when a
    run fails or does not answer 200."""

    def run(mode: str, *extra: str) -> dict[str, object]:
        command = [str(python), "-c", _FLOOR_TIMER, project.wsgi_module, edited, mode, *extra]
        lines = _run(command, project.path).strip().splitlines()
        try:
            answer: dict[str, object] = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise RuntimeError(f"the floor's {mode} run printed no figures: {lines}") from None
        if mode != "names" and answer["status"] != "200 OK":
            raise RuntimeError(f"the floor's {mode} run answered {answer['status']}")
        return answer

    with tempfile.TemporaryDirectory(prefix="bench-floor-") as scratch:
        names_path = Path(scratch) / "names.json"
        names_path.write_text(json.dumps(run("names")), encoding="utf-8")
        standby = [run("standby", str(names_path)) for _ in range(runs)]
    in_place = [run("in-place") for _ in range(runs)]
    return Floor(
        standby_s=statistics.median(float(t["seconds"]) for t in standby),  # type: ignore[arg-type]
        in_place_s=statistics.median(float(t["seconds"]) for t in in_place),  # type: ignore[arg-type]
        in_place_modules=tuple(in_place[0]["modules"]),  # type: ignore[arg-type]
        runs=runs,
    )


def time_import(project: Project, python: Path, runs: int = 3) -> ImportTiming:
    """Median time to import the app and answer one request in a fresh interpreter."""
    timings = []
    for _ in range(runs):
        output = _run([str(python), "-c", _IMPORT_TIMER, project.wsgi_module], project.path)
        timings.append(json.loads(output.strip().splitlines()[-1]))
    if any(t["status"] != "200 OK" for t in timings):
        raise RuntimeError(f"the probe did not answer 200 in {project.path}: {timings}")
    return ImportTiming(
        seconds=statistics.median(t["seconds"] for t in timings),
        modules=max(t["modules"] for t in timings),
    )
