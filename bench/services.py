"""Workers that reload, side by side, on the bench's large site: a Celery worker (Redis) and
django-tasks-db's `db_worker` (SQLite) under wsgidev start --run, under watchmedo auto-restart
(watchdog), under watchfiles, and the db_worker under its own `--reload` (Django's autoreloader).

    .venv/bin/python bench/services.py [--tasks 1000] [--edits 20] [--write]

Needs `pip install -e '.[bench]'` (wagtail, celery[redis], django-tasks-db, watchdog,
watchfiles) and redis-server. The site is bench/projects.py's large one (a Wagtail site) with a
Celery app as Celery's Django guide writes it (bigsite/celery.py, imported by the package's
__init__) and an app, `benchjobs`, whose tasks.py defines one task of each kind. For each
contender: a fresh Redis database and task table, both workers, then TASKS tasks (half for
each worker) enqueued at a steady pace while EDITS edits are made to a module the workers never
import (a view's helper, imported by the web at its first request), then EDITS to the tasks
module. Measured from the tasks' own records (each task writes its kind, number, the code
version it ran, when, and its worker's process id):

- save -> first task of each kind run with the new code, per edit of the tasks module (p50, p90);
- tasks lost (never run) and run twice;
- worker restarts caused by the view's edits (the worker process ids seen before the first edit
  of the tasks module, less one: the last view edit is EDIT_GAP_S + VIEW_GAP_S before it);
- the workers' memory once the edits are over: PSS of every process whose command line names
  the worker (Celery's main process and pool, wsgidev's group leaders and warmed standbys, the
  peer's watcher); wsgidev's web server (Apache, its daemons) is not counted;
- Ctrl-C (SIGINT to each process group the contender runs) -> every process of it gone, with no
  task running; beside it, each worker started alone and stopped the same way (its own floor).

Both workers import the site's URLconf, and with it every view it names: Django's system checks
run in `db_worker` (a management command) and in Celery's Django fix-up. So the view edited here
is a helper the URLconf does not import.

--write puts the tables into docs/benchmarks.md between its services markers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import proctree, projects, report  # noqa: E402
from bench.memory import read_pss_kb  # noqa: E402
from bench.projects import user_env  # noqa: E402
from wsgidev.shared.processes import pid_alive  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
EDIT_GAP_S = 6.0  # between two edits of the tasks module: longer than a worker's restart
VIEW_GAP_S = 2.0  # between two edits of the view
SETTLE_S = 10.0  # from both workers' first task to the first edit (wsgidev's standbys warm)
STOP_WAIT_S = 60.0
FLOOR_RUNS = 3

KINDS = ("celery", "db")
CELERY = "celery -A bigsite worker -l info -c 2"
# Polls 5 times a second when idle; no random 0-1 s sleep at its start (for many workers starting
# at once), which every contender would pay alike and which would blur the comparison.
DB_WORKER = "python manage.py db_worker --interval 0.2 --no-startup-delay"
WORKER_WORDS = {"celery": (b"celery",), "db": (b"db_worker",)}
WATCHER_WORDS = (b"watchmedo", b"watchfiles")

CELERY_APP = """import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bigsite.settings.dev")
app = Celery("bigsite")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
"""
PACKAGE_INIT = 'from .celery import app as celery_app\n\n__all__ = ("celery_app",)\n'
SETTINGS_TAIL = """
import importlib.util as _jobs_util  # noqa: E402
import os as _jobs_os  # noqa: E402
if _jobs_util.find_spec("django.tasks") is None:  # Django 5.2: the django-tasks backport
    INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks"]
INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db", "benchjobs"]
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
DATABASES["default"]["OPTIONS"] = {"timeout": 30}  # the producer and the worker both write
CELERY_BROKER_URL = _jobs_os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/0")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
"""
URLS_TAIL = (
    "\nfrom benchjobs import views as _jobs_views  # noqa: E402\n"
    'urlpatterns.insert(0, _bench_path("jobs/report/", _jobs_views.report))\n'
)
TASKS_MODULE = """import os
import time

from celery import shared_task

try:
    from django.tasks import task
except ImportError:  # Django 5.2: the django-tasks backport
    from django_tasks import task

VERSION = "{version}"


def _record(kind, n, worker):
    time.sleep(0.01)
    with open(os.environ["BENCH_RESULTS"], "a") as out:
        out.write(f"{{kind}} {{n}} {{VERSION}} {{time.time():.4f}} {{worker}}\\n")


@shared_task
def record_celery(n):
    _record("celery", n, os.getppid())  # a pool process: its parent is the worker


@task()
def record_db(n):
    _record("db", n, os.getpid())
"""
VIEWS = """from django.http import HttpResponse


def report(request):
    from benchjobs import report  # at the first request: the URLconf does not import it

    return HttpResponse(report.VERSION, content_type="text/plain")
"""
REPORT = 'VERSION = "{version}"\n'
ENQUEUE = """
import os, sys, time
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bigsite.settings.dev")
import django
django.setup()
from benchjobs.tasks import record_celery, record_db
first, count, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
started = time.monotonic()
ids = open(os.environ["BENCH_RESULTS"] + ".ids", "a")
for n in range(first, first + count):
    sent = (record_celery.delay if n % 2 == 0 else record_db.enqueue)(n)
    print(n, sent.id, file=ids, flush=True)  # to find a lost task in the worker's log
    pause = started + seconds * (n - first + 1) / count - time.monotonic()
    if pause > 0:
        time.sleep(pause)
"""


@dataclass(frozen=True)
class Contender:
    label: str
    # Each process group it runs, by the workers it holds: one command may run both.
    commands: tuple[tuple[tuple[str, ...], list[str]], ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(kind for kinds, _ in self.commands for kind in kinds)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def contenders(bin_dir: Path, site: Path) -> list[Contender]:
    # watchdog 7.1 matches the whole path ("*.py" is a file of the top folder alone: "**/*.py"),
    # and given "." it warns "Path b'./app' is not under watched root b'.'" for every subfolder
    # and sees no save in them: an absolute folder.
    watchmedo = [str(bin_dir / "watchmedo"), "auto-restart", f"--directory={site}"]
    watchmedo += ["--pattern=**/*.py"]
    watchmedo += ["--recursive", "--signal", "SIGTERM", "--"]
    watchfiles = [str(bin_dir / "watchfiles"), "--filter", "python", "--sigint-timeout", "30"]
    # The peers get --no-reload: in DEBUG, db_worker reloads itself (Django's autoreloader).
    db_plain = f"{DB_WORKER} --no-reload"
    return [
        Contender(
            "wsgidev start --run (monitor inside each worker)",
            (
                (
                    KINDS,
                    [str(bin_dir / "wsgidev"), "start", "--processes", "2", "--threads", "15"]
                    + ["--port", str(free_port()), "--run", f"celery={CELERY}"]
                    + ["--run", f"tasks={DB_WORKER}"],
                ),
            ),
        ),
        Contender(
            "watchmedo auto-restart (watchdog), **/*.py",
            ((("celery",), watchmedo + CELERY.split()), (("db",), watchmedo + db_plain.split())),
        ),
        Contender(
            "watchfiles, Python files",
            ((("celery",), [*watchfiles, CELERY, "."]), (("db",), [*watchfiles, db_plain, "."])),
        ),
        Contender(
            "db_worker --reload (Django's autoreloader)",
            ((("db",), [*DB_WORKER.split(), "--reload"]),),
        ),
    ]


def make_site(root: Path, python: Path) -> Path:
    """The bench's large site, with a Celery app and the benchjobs app, migrated."""
    site = projects.make_large(root, python).path
    (site / "bigsite" / "celery.py").write_text(CELERY_APP)
    (site / "bigsite" / "__init__.py").write_text(PACKAGE_INIT)
    jobs = site / "benchjobs"
    jobs.mkdir()
    (jobs / "__init__.py").write_text("")
    (jobs / "tasks.py").write_text(TASKS_MODULE.format(version="v0"))
    (jobs / "views.py").write_text(VIEWS)
    (jobs / "report.py").write_text(REPORT.format(version="w0"))
    with open(site / "bigsite" / "settings" / "base.py", "a", encoding="utf-8") as settings:
        settings.write(SETTINGS_TAIL)
    with open(site / "bigsite" / "urls.py", "a", encoding="utf-8") as urls:
        urls.write(URLS_TAIL)
    subprocess.run(
        [str(python), "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=site, env=user_env(), check=True, timeout=projects.SETUP_TIMEOUT_S,
    )  # fmt: skip
    return site


def _env(site: Path, broker: str, results: Path) -> dict[str, str]:
    return {
        **user_env(),
        "BENCH_BROKER": broker,
        "BENCH_RESULTS": str(results),
        "NO_COLOR": "1",
        # As in an activated venv: `celery` and `python` are the venv's for every contender.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _reset(site: Path, broker: str, results: Path) -> None:
    """A fresh Redis database, an empty task table and results file, the modules at v0/w0."""
    results.unlink(missing_ok=True)
    results.with_name(results.name + ".ids").unlink(missing_ok=True)
    (site / "benchjobs" / "tasks.py").write_text(TASKS_MODULE.format(version="v0"))
    (site / "benchjobs" / "report.py").write_text(REPORT.format(version="w0"))
    subprocess.run(["redis-cli", "-u", broker, "flushall"], check=True, capture_output=True)
    with contextlib.closing(sqlite3.connect(site / "db.sqlite3", timeout=30)) as db, db:
        db.execute("DELETE FROM django_tasks_database_dbtaskresult")


def _records(results: Path) -> list[list[str]]:
    if not results.exists():
        return []
    return [line.split() for line in results.read_text().splitlines() if line.count(" ") == 4]


def _start(commands: list[list[str]], site: Path, env: dict[str, str], log: Path):
    out = log.open("wb")
    try:
        return [
            subprocess.Popen(
                command,
                cwd=site,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            for command in commands
        ]
    finally:
        out.close()


def _stop(started: list[subprocess.Popen]) -> float | None:
    """SIGINT to each group; seconds until every process of them is gone (None: killed)."""
    everything: set[int] = set()
    for process in started:
        everything |= set(proctree.tree(process.pid))  # services run in sessions of their own
    began = time.monotonic()
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)  # a group this script started
    while any(pid_alive(pid) for pid in everything) and time.monotonic() - began < STOP_WAIT_S:
        for process in started:
            process.poll()
        time.sleep(0.01)
    left = sorted(pid for pid in everything if pid_alive(pid))
    for pid in left:  # bounded: the bench leaves nothing running either
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for process in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
    return None if left else time.monotonic() - began


def _wait_for_first_tasks(
    contender: Contender, site: Path, env: dict[str, str], results: Path, log: Path, started
) -> None:
    """One task of each of the contender's kinds (numbered -1, -2) run: the workers are up."""
    ping = subprocess.run(
        [sys.executable, "-c", ENQUEUE, "-2", "2", "0"], cwd=site, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    if ping.returncode != 0:
        raise RuntimeError(f"enqueueing failed:\n{ping.stderr}")
    deadline = time.monotonic() + 120
    while {r[0] for r in _records(results)} < set(contender.kinds):
        if time.monotonic() > deadline or any(p.poll() is not None for p in started):
            raise RuntimeError(f"{contender.label} did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)


def run_one(
    contender: Contender, site: Path, broker: str, scratch: Path, tasks: int, edits: int
) -> list[dict[str, object]]:
    results = scratch / "results.txt"
    _reset(site, broker, results)
    env = _env(site, broker, results)
    log = scratch / f"{contender.label.split()[0]}.log"
    started = _start([command for _, command in contender.commands], site, env, log)
    saves: list[tuple[str, float]] = []
    try:
        _wait_for_first_tasks(contender, site, env, results, log, started)
        time.sleep(SETTLE_S)
        duration = edits * (VIEW_GAP_S + EDIT_GAP_S) + EDIT_GAP_S
        producer = subprocess.Popen(
            [sys.executable, "-c", ENQUEUE, "0", str(tasks), str(duration)], cwd=site, env=env
        )
        # First the view's edits (no worker imports it): each restart they cause counts.
        for index in range(edits):
            time.sleep(VIEW_GAP_S)
            (site / "benchjobs" / "report.py").write_text(REPORT.format(version=f"w{index + 1}"))
        time.sleep(VIEW_GAP_S)
        # Then the tasks module's: save -> the first task of each kind that ran the new code.
        for index in range(edits):
            time.sleep(EDIT_GAP_S)
            version = f"v{index + 1}"
            (site / "benchjobs" / "tasks.py").write_text(TASKS_MODULE.format(version=version))
            saves.append((version, time.time()))
        producer.wait(duration + 60)
        expected = {kind: _expected(kind, tasks) for kind in contender.kinds}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
            not expected[kind] <= {int(r[1]) for r in _records(results) if r[0] == kind}
            for kind in contender.kinds
        ):
            if any(p.poll() is not None for p in started):
                print(f"{contender.label} exited early:\n{log.read_text()[-3000:]}")
                break
            time.sleep(0.2)
        time.sleep(2)  # a task run twice shows up a little after the last
        pss = {kind: 0 for kind in contender.kinds}
        for process in started:
            for pid, kind in _worker_processes(process.pid, contender.kinds):
                pss[kind] += read_pss_kb(pid) or 0
    finally:
        stop_s = _stop(started)
    records = _records(results)
    _keep_evidence(contender, tasks, records, results, log)
    rows = []
    for kind in contender.kinds:
        mine = [r for r in records if r[0] == kind and int(r[1]) >= 0]
        numbers = [int(r[1]) for r in mine]
        latencies = []
        for version, saved in saves:
            runs = [float(r[3]) for r in mine if r[2] == version]
            if runs:
                latencies.append(min(runs) - saved)
        before_tasks_edits = {r[4] for r in records if r[0] == kind and float(r[3]) < saves[0][1]}
        rows.append(
            {
                "label": contender.label,
                "kind": kind,
                "p50": statistics.median(latencies) if latencies else None,
                "p90": sorted(latencies)[math.ceil(0.9 * len(latencies)) - 1]
                if latencies
                else None,
                "seen": len(latencies),
                "edits": edits,
                "lost": len(_expected(kind, tasks) - set(numbers)),
                "twice": len(numbers) - len(set(numbers)),
                "extra_restarts": len(before_tasks_edits) - 1,
                "worker_mib": pss[kind] / 1024,
                "stop_s": stop_s,
            }
        )
    return rows


def _keep_evidence(
    contender: Contender, tasks: int, records: list[list[str]], results: Path, log: Path
) -> None:
    """A task lost or run twice: the contender's log and the task ids, kept out of the scratch
    folder, and the numbers said."""
    numbers = [(r[0], int(r[1])) for r in records if int(r[1]) >= 0]
    lost = sorted(
        (kind, n)
        for kind in contender.kinds
        for n in _expected(kind, tasks) - {m for k, m in numbers if k == kind}
    )
    twice = sorted({item for item in numbers if numbers.count(item) > 1})
    if not lost and not twice:
        return
    kept = Path(tempfile.gettempdir()) / f"wsgidev-services-evidence-{contender.label.split()[0]}"
    kept.mkdir(exist_ok=True)
    for source in (log, results, results.with_name(results.name + ".ids")):
        with contextlib.suppress(OSError):
            shutil.copy(source, kept / source.name)
    print(f"{contender.label}: lost {lost}, run twice {twice}; evidence in {kept}", flush=True)


def _expected(kind: str, tasks: int) -> set[int]:
    return set(range(0 if kind == "celery" else 1, tasks, 2))


def _worker_processes(root: int, kinds: tuple[str, ...]) -> list[tuple[int, str]]:
    """The contender's processes that are a worker or watch one (not wsgidev's web server)."""
    found = []
    for pid in proctree.tree(root):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            for kind in kinds:
                words = WORKER_WORDS[kind] + (WATCHER_WORDS if len(kinds) == 1 else ())
                if any(word in cmdline for word in words):
                    found.append((pid, kind))
                    break
    return found


def stop_floor(site: Path, broker: str, scratch: Path) -> dict[str, float]:
    """Each worker alone, idle once its first task ran, stopped by SIGINT to its group: the
    median seconds until it is gone (what the worker's own shutdown takes)."""
    results = scratch / "results.txt"
    floors = {}
    for kind, command in (("celery", CELERY), ("db", f"{DB_WORKER} --no-reload")):
        times = []
        for _ in range(FLOOR_RUNS):
            _reset(site, broker, results)
            env = _env(site, broker, results)
            log = scratch / f"floor-{kind}.log"
            started = _start([command.split()], site, env, log)
            alone = Contender(kind, (((kind,), command.split()),))
            try:
                _wait_for_first_tasks(alone, site, env, results, log, started)
                time.sleep(2)
            finally:
                stop_s = _stop(started)
            if stop_s is not None:
                times.append(stop_s)
        floors[kind] = statistics.median(times) if times else math.inf
    return floors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in all, half of each kind")
    parser.add_argument("--edits", type=int, default=20, help="edits of each module")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    parser.add_argument("--only", help="the contenders whose label starts so (a quick look)")
    parser.add_argument("--keep", action="store_true", help="keep the site and the logs")
    args = parser.parse_args()
    python = Path(sys.executable)
    revision = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    scratch = Path(tempfile.mkdtemp(prefix="wsgidev-services-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
        + ["--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=scratch,
    )
    rows: list[dict[str, object]] = []
    try:
        broker = f"redis://127.0.0.1:{redis_port}/0"
        site = make_site(scratch, python)
        floors = stop_floor(site, broker, scratch) if not args.only else {}
        print("stop floors:", floors, flush=True)
        for contender in contenders(python.parent, site):
            if args.only and not contender.label.startswith(args.only):
                continue
            for row in run_one(contender, site, broker, scratch, args.tasks, args.edits):
                print(row, flush=True)
                rows.append(row)
    finally:
        redis.terminate()
        redis.wait(10)
        if args.keep:
            print(f"kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    block = _table(rows, floors, args, revision)
    print(block)
    if args.write:
        report.write_docs(DOC, block, "services")
    return 0


def _table(rows: list[dict[str, object]], floors: dict[str, float], args, revision: str) -> str:
    def stop(value: object) -> str:
        return f"{value:.2f} s" if isinstance(value, float) else f"> {STOP_WAIT_S:.0f} s (killed)"

    def ms(value: object) -> str:
        return f"{value * 1000:.0f} ms" if isinstance(value, float) else "-"

    names = {"celery": "Celery", "db": "db_worker"}
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Workers that reload (Celery + Redis, django-tasks-db's db_worker, large site)",
        "",
        f"- Command: `.venv/bin/python bench/services.py --tasks {args.tasks} --edits "
        f"{args.edits} --write`; {now}, `{revision}`",
        f"- The large site (Wagtail) with `{CELERY}` (prefork) on one Redis and `{DB_WORKER}` "
        f"on its SQLite database; {args.tasks} tasks (half for each) at a steady pace while "
        f"{args.edits} edits of a view's helper no worker imports ({VIEW_GAP_S:g} s apart), "
        f"then {args.edits} of the tasks module ({EDIT_GAP_S:g} s apart).",
        "",
        "| worker | contender | save → new code in a task p50 | p90 | vs the faster peer | "
        "edits seen | tasks lost | run twice | restarts for the view's edits | worker PSS |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        mine = [row for row in rows if row["kind"] == kind]
        peers = [r["p50"] for r in mine if not str(r["label"]).startswith("wsgidev")]
        best_peer = min((p for p in peers if isinstance(p, float)), default=None)
        for row in mine:
            p50 = row["p50"]
            ratio = f"{p50 / best_peer:.2f}×" if isinstance(p50, float) and best_peer else "-"
            lines.append(
                f"| {names[kind]} | {row['label']} | {ms(p50)} | {ms(row['p90'])} | {ratio} | "
                f"{row['seen']}/{row['edits']} | {row['lost']} | {row['twice']} | "
                f"{row['extra_restarts']} | {row['worker_mib']:.0f} MiB |"
            )
    lines += [
        "",
        "Ctrl-C (SIGINT to every process group of the contender, no task running) → all gone:",
        "",
        "| contender | Ctrl-C → all gone |",
        "|---|---|",
    ]
    seen: set[str] = set()
    for row in rows:
        if row["label"] not in seen:
            seen.add(str(row["label"]))
            lines.append(f"| {row['label']} | {stop(row['stop_s'])} |")
    for kind in floors:
        lines.append(
            f"| {names[kind]} alone (its own shutdown; median of {FLOOR_RUNS}) | "
            f"{stop(floors[kind])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
