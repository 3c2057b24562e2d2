"""Workers that reload, side by side: a Celery worker under wsgidev start --run, under
watchmedo auto-restart (watchdog) and under watchfiles, on one project and one Redis.

    .venv/bin/python bench/services.py [--tasks 1000] [--edits 20] [--write]

Needs `pip install -e '.[bench]'` (celery[redis], watchdog, watchfiles) and redis-server. For
each contender: a fresh Redis database, the worker (prefork, 2 processes), then TASKS tasks
enqueued at a steady pace while EDITS edits are made to the module that defines them and EDITS
to a module the worker never imports (a view): the view's first, then the tasks module's. Measured as
the tasks' own records show it (each task writes its number, the code version it ran and when):

- save -> first task run with the new code, per edit of the tasks module (p50, p90);
- tasks lost (never run) and run twice;
- worker restarts caused by the edits of the view (made first, VIEW_GAP_S apart: the worker's
  "ready" lines beyond its first, before any edit of the tasks module);
- the workers' memory once the edits are over: PSS of every process whose command line names
  the worker (Celery's main process and pool, wsgidev's group leaders and warmed standby) or
  the peer's watcher; wsgidev's web server (Apache, its daemons) is not counted;
- Ctrl-C (SIGINT to the contender's process group) -> every process of it gone.

--write puts the table into docs/benchmarks.md between its services markers.
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import proctree, report  # noqa: E402
from bench.memory import read_pss_kb  # noqa: E402
from bench.projects import user_env  # noqa: E402
from wsgidev.shared.processes import pid_alive  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
EDIT_GAP_S = 6.0  # between two edits of the tasks module: longer than a worker's restart
VIEW_GAP_S = 2.0  # between two edits of the view
WORKER = "celery -A celeryapp worker -l info -c 2"
CELERY_APP = """
import os
from celery import Celery

app = Celery("proj", broker=os.environ["BENCH_BROKER"], include=["tasks"])
app.conf.broker_connection_retry_on_startup = True
"""
TASKS = """
import os, time
from celeryapp import app

VERSION = "{version}"


@app.task
def record(n):
    time.sleep(0.01)
    with open(os.environ["BENCH_RESULTS"], "a") as out:
        out.write(f"{{n}} {{VERSION}} {{time.time():.4f}}\\n")
"""
VIEW = 'VERSION = "{version}"\n'
APP = """
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""
ENQUEUE = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tasks import record
count, seconds = int(sys.argv[2]), float(sys.argv[3])
started = time.monotonic()
for n in range(count):
    record.delay(n)
    pause = started + seconds * (n + 1) / count - time.monotonic()
    if pause > 0:
        time.sleep(pause)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def contenders(bin_dir: Path, port: int) -> list[tuple[str, list[str]]]:
    return [
        (
            "wsgidev start --run (monitor inside the worker)",
            [str(bin_dir / "wsgidev"), "start", "app.py", "--port", str(port), "--run"]
            + [f"worker={WORKER}"],
        ),
        (
            "watchmedo auto-restart (watchdog), *.py",
            [str(bin_dir / "watchmedo"), "auto-restart", "--directory=.", "--pattern=*.py"]
            + ["--recursive", "--signal", "SIGTERM", "--", *WORKER.split()],
        ),
        (
            "watchfiles, Python files",
            [str(bin_dir / "watchfiles"), "--filter", "python", "--sigint-timeout", "30"]
            + [WORKER, "."],
        ),
    ]


def run_one(
    label: str, command: list[str], project: Path, broker: str, tasks: int, edits: int
) -> dict[str, object]:
    results = project / "results.txt"
    results.unlink(missing_ok=True)
    (project / "tasks.py").write_text(TASKS.format(version="v0"))
    (project / "views.py").write_text(VIEW.format(version="w0"))
    subprocess.run(["redis-cli", "-u", broker, "flushall"], check=True, capture_output=True)
    env = {
        **user_env(),
        "BENCH_BROKER": broker,
        "BENCH_RESULTS": str(results),
        "NO_COLOR": "1",
        # As in an activated venv: the worker's `celery` is found by every contender.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = project / f"{label.split()[0]}.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while log.read_text(errors="replace").count(" ready.") < 1:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"{label} did not start:\n{log.read_text()}")
            time.sleep(0.1)
        duration = edits * (VIEW_GAP_S + EDIT_GAP_S) + EDIT_GAP_S
        producer = subprocess.Popen(
            [sys.executable, "-c", ENQUEUE, str(project), str(tasks), str(duration)],
            env=env,
        )
        # First the view's edits (the worker never imports it): each restart they cause counts.
        for index in range(edits):
            time.sleep(VIEW_GAP_S)
            (project / "views.py").write_text(VIEW.format(version=f"w{index + 1}"))
        time.sleep(VIEW_GAP_S)
        starts_before = log.read_text(errors="replace").count(" ready.")
        # Then the tasks module's: save -> the first task that ran the new code.
        saves: list[tuple[str, float]] = []
        for index in range(edits):
            time.sleep(EDIT_GAP_S)
            version = f"v{index + 1}"
            (project / "tasks.py").write_text(TASKS.format(version=version))
            saves.append((version, time.time()))
        producer.wait(duration + 60)
        deadline = time.monotonic() + 120
        while _count(results) < tasks and time.monotonic() < deadline:
            if server.poll() is not None:
                print(f"{label} exited early:\n{log.read_text(errors='replace')[-3000:]}")
                break
            time.sleep(0.2)
        time.sleep(2)  # a task run twice shows up a little after the last
        worker_pss_kb = sum(read_pss_kb(pid) or 0 for pid in _worker_processes(server.pid))
    finally:
        everything = set(proctree.tree(server.pid))  # services run in sessions of their own
        stop_started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGINT)  # the group this script started
        killed = False
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            killed = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)
        while any(pid_alive(pid) for pid in everything) and time.monotonic() - stop_started < 60:
            time.sleep(0.01)
        left = sorted(pid for pid in everything if pid_alive(pid))
        stop_s = None if left or killed else time.monotonic() - stop_started
        for pid in left:  # bounded: the bench leaves nothing running either
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    records = (
        [line.split() for line in results.read_text().splitlines()] if results.exists() else []
    )
    numbers = [int(r[0]) for r in records]
    latencies = []
    for version, saved in saves:
        runs = [float(r[2]) for r in records if r[1] == version]
        if runs:
            latencies.append(min(runs) - saved)
    return {
        "label": label,
        "p50": statistics.median(latencies) if latencies else None,
        "p90": sorted(latencies)[math.ceil(0.9 * len(latencies)) - 1] if latencies else None,
        "seen": len(latencies),
        "edits": edits,
        "lost": len(set(range(tasks)) - set(numbers)),
        "twice": len(numbers) - len(set(numbers)),
        "extra_restarts": starts_before - 1,
        "worker_mib": worker_pss_kb / 1024,
        "stop_s": stop_s,
    }


def _worker_processes(root: int) -> list[int]:
    """The contender's processes that are the worker or watch it (not wsgidev's web server)."""
    found = []
    for pid in proctree.tree(root):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if any(word in cmdline for word in (b"celery", b"watchmedo", b"watchfiles")):
                found.append(pid)
    return found


def _count(results: Path) -> int:
    if not results.exists():
        return 0
    return len({line.split()[0] for line in results.read_text().splitlines() if line.strip()})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--edits", type=int, default=20, help="edits of each module")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
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
    rows = []
    try:
        time.sleep(0.5)
        broker = f"redis://127.0.0.1:{redis_port}/0"
        for label, command in contenders(bin_dir, free_port()):
            project = scratch / label.split()[0]
            project.mkdir()
            (project / "celeryapp.py").write_text(CELERY_APP)
            (project / "app.py").write_text(APP)
            result = run_one(label, command, project, broker, args.tasks, args.edits)
            print(result, flush=True)
            rows.append(result)
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(scratch, ignore_errors=True)
    best_peer = min((r["p50"] for r in rows[1:] if isinstance(r["p50"], float)), default=None)

    def stop(value: object) -> str:
        return f"{value:.2f} s" if isinstance(value, float) else "> 60 s (killed)"

    def ms(value: object) -> str:
        return f"{value * 1000:.0f} ms" if isinstance(value, float) else "-"

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Workers that reload (Celery + Redis)",
        "",
        f"- Command: `.venv/bin/python bench/services.py --tasks {args.tasks} --edits "
        f"{args.edits} --write`; {now}, `{revision}`",
        f"- {args.tasks} tasks at a steady pace while {args.edits} edits of a view the worker "
        f"never imports ({VIEW_GAP_S:g} s apart), then {args.edits} of the tasks module "
        f"({EDIT_GAP_S:g} s apart); `celery -A celeryapp worker -c 2` (prefork) on one Redis.",
        "",
        "| contender | save → new code in a task p50 | p90 | vs the faster peer | edits seen | "
        "tasks lost | run twice | restarts for the view's edits | worker PSS | Ctrl-C → all gone |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = (
            f"{row['p50'] / best_peer:.2f}×" if isinstance(row["p50"], float) and best_peer else "-"
        )
        lines.append(
            f"| {row['label']} | {ms(row['p50'])} | {ms(row['p90'])} | {ratio} | "
            f"{row['seen']}/{row['edits']} | {row['lost']} | {row['twice']} | "
            f"{row['extra_restarts']} | {row['worker_mib']:.0f} MiB | {stop(row['stop_s'])} |"
        )
    block = "\n".join(lines)
    print(block)
    if args.write:
        report.write_docs(DOC, block, "services")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
