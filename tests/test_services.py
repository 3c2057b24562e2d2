"""Services beside the server (--run, Procfile.dev): a Python service restarts when code it
imported changes (through its own graceful stop) and only then, a failing one waits for a fix,
any other command is started again when it exits, and nothing is left behind; real Apache."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    alive,
    descendants,
    free_port,
    holds_for,
    port_is_free,
    reload_lines,
    wait_for,
)

from wsgidev.daemon.handover import REPLACEMENT_WAIT_S, REPLACEMENT_WARM_S
from wsgidev.services import hands_over, stop_signal

# A worker as Celery's main process behaves: SIGTERM is a warm shutdown (the task it runs
# finishes, then it exits); it imports tasks.py and never app.py's helpers.
WORKER = """
import signal, sys, time
import tasks

stopping = False


def warm_shutdown(signum, frame):
    global stopping
    print("warm shutdown, task finishing", flush=True)
    stopping = True


signal.signal(signal.SIGTERM, warm_shutdown)
print(f"worker up with {tasks.VERSION}", flush=True)
while not stopping:
    time.sleep(0.02)
print(f"worker stopped, {tasks.VERSION} done", flush=True)
"""


def _project(project: Path) -> Path:
    (project / "worker.py").write_text(textwrap.dedent(WORKER))
    (project / "tasks.py").write_text('VERSION = "t1"\n')
    (project / "helpers.py").write_text('NAME = "h1"\n')
    app = (project / "app.py").read_text()
    (project / "app.py").write_text("import helpers  # noqa\n" + app)
    return project


def _lines(server, prefix: str) -> list[str]:
    return [line for line in server.log().splitlines() if line.startswith(prefix)]


def _standbys(server) -> list[int]:
    """The services' warmed standbys, as ps shows them (wsgidev.daemon.service --standby)."""
    found = []
    for pid in descendants(server.process.pid):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"--standby" in argv and b"wsgidev.daemon.service" in argv:
                found.append(pid)
    return found


def _client(project: Path, env: dict[str, str], code: str, *args: int) -> None:
    """Run code as a worker's client does (enqueuing tasks): a fresh interpreter, the project
    first on sys.path, the test's environment; args are sys.argv[1:]."""
    subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(project)!r})\n{code}"]
        + [str(arg) for arg in args],
        env={**os.environ, **env},
        check=True,
        timeout=30,
    )


RANGE = "range(int(sys.argv[1]), int(sys.argv[2]))"  # a client's tasks: first and last + 1


def test_a_python_service_restarts_when_its_own_code_changes_and_only_then(project, start_server):
    server = start_server(_project(project), "app.py", "--run", "worker=python worker.py")
    wait_for(
        lambda: "worker | worker up with t1" in server.log(),
        20,
        lambda: f"the worker\n{server.log()}",
    )
    # A file the web app imports and the worker does not: the web reloads, the worker stays.
    (project / "helpers.py").write_text('NAME = "h2"\n')
    wait_for(lambda: reload_lines(server), 20, lambda: f"the web's reload\n{server.log()}")
    holds_for(lambda: len(_lines(server, "worker | worker up")) == 1, 1.0, "one worker start")
    # The worker's own module: its graceful stop, then a new process with the new code.
    (project / "tasks.py").write_text('VERSION = "t2"\n')
    wait_for(
        lambda: "worker | worker up with t2" in server.log(), 20, lambda: f"t2\n{server.log()}"
    )
    worker = _lines(server, "worker |")
    assert worker == [
        "worker | python worker.py (restarts when code it imported changes)",
        "worker | worker up with t1",
        "worker | tasks.py changed: restarting",
        "worker | warm shutdown, task finishing",
        "worker | worker stopped, t1 done",
        "worker | worker up with t2",
    ], worker


def test_a_failing_service_shows_its_traceback_once_and_waits_for_a_fix(project, start_server):
    server = start_server(_project(project), "app.py", "--run", "worker=python worker.py")
    wait_for(lambda: "worker | worker up with t1" in server.log(), 20, "the worker")
    (project / "tasks.py").write_text('VERSION = "t2"\nraise RuntimeError("broken on purpose")\n')
    wait_for(
        lambda: "waiting for a fix" in server.log(), 20, lambda: f"the failure\n{server.log()}"
    )
    holds_for(lambda: server.log().count("RuntimeError: broken on purpose\n") == 1, 1.5, "no loop")
    traceback = _lines(server, "worker |   File")
    assert traceback and all("wsgidev" not in line for line in traceback), traceback
    (project / "tasks.py").write_text('VERSION = "t3"\n')
    wait_for(
        lambda: "worker | worker up with t3" in server.log(), 20, lambda: f"t3\n{server.log()}"
    )


def test_a_command_that_exits_is_started_again_with_a_back_off(project, start_server):
    server = start_server(project, "app.py", "--run", "tick=sh -c 'echo tick; exit 3'")
    wait_for(lambda: "in 2 s" in server.log(), 20, lambda: f"two restarts\n{server.log()}")
    assert _lines(server, "tick |")[:5] == [
        "tick | sh -c 'echo tick; exit 3' (not watched: restarts if it exits)",
        "tick | tick",
        "tick | exited with status 3; starting it again in 1 s",
        "tick | tick",
        "tick | exited with status 3; starting it again in 2 s",
    ], server.log()


def test_a_procfile_runs_beside_the_server_without_its_web_entry(project, start_server):
    _project(project)
    (project / "Procfile.dev").write_text(
        "# honcho's format\nweb: python manage.py runserver\nworker: python worker.py\n"
    )
    server = start_server(project, "app.py")
    wait_for(
        lambda: "worker | worker up with t1" in server.log(),
        20,
        lambda: f"the worker\n{server.log()}",
    )
    assert (
        "Services from Procfile.dev; its web entry is this server (--procfile off: none): worker"
        in server.log()
    )
    assert server.json("/")["version"] == "v1"  # wsgidev serves the app, not runserver


def test_sigkill_of_wsgidev_leaves_no_service_behind(project, start_server):
    server = start_server(
        _project(project),
        "app.py",
        "--run",
        "worker=python worker.py",
        "--run",
        "sleeper=sh -c 'sleep 300 & sleep 300'",  # a shell and its children
        "--run",
        'helper=python -c \'import subprocess; subprocess.run(["sleep", "300"])\'',
    )
    wait_for(lambda: "worker  | worker up with t1" in server.log(), 20, "the worker")
    assert server.process is not None
    sleepers = lambda: {  # noqa: E731
        pid
        for pid in descendants(server.process.pid)
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\x00300")
    }
    wait_for(lambda: len(sleepers()) == 3, 20, "the sleepers")
    tree = descendants(server.process.pid)  # Apache, its daemons and the services
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait(10)
    # Each gets SIGTERM from the kernel (parent-death signal): the worker its warm shutdown, the
    # shell's wrapper passes it to the shell's children.
    wait_for(lambda: not any(alive(pid) for pid in tree), 20, f"{tree} to go")
    for root in server.tmpdir.glob("wsgidev-*"):  # nobody was left to remove it
        shutil.rmtree(root)


# --- a real Celery worker and a real Redis --------------------------------------------------------

CELERY_APP = """
import os
from celery import Celery

app = Celery("proj", broker=os.environ["TEST_BROKER"], include=["tasks"])
app.conf.broker_connection_retry_on_startup = True
"""

CELERY_TASKS = """
import os, time
from celeryapp import app

VERSION = "{version}"


@app.task
def record(n):
    time.sleep(0.05)
    results = os.environ["TEST_RESULTS"]
    if n == 0:  # a long task: it ends once a task has run on the next code (or after 30 s)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(results) as done:
                if any(line.split()[1] != VERSION for line in done.read().splitlines()):
                    break
            time.sleep(0.05)
    with open(results, "a") as out:
        out.write(f"{{n}} {{VERSION}}\\n")
"""


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own, on a free loopback port, saving nothing."""
    server = shutil.which("redis-server")
    assert server, "redis-server is not installed (bash dev.sh test installs it with apt-get)"
    port = free_port()
    with subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        cwd=tmp_path,
    ) as redis:
        try:
            wait_for(lambda: not port_is_free(port), 10, "redis-server to listen")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            redis.terminate()
            redis.wait(10)


def test_a_celery_worker_hands_over_on_its_tasks_module_with_no_task_lost_or_run_twice(
    project, start_server, redis_url, tmp_path
):
    (project / "celeryapp.py").write_text(textwrap.dedent(CELERY_APP))
    (project / "tasks.py").write_text(textwrap.dedent(CELERY_TASKS).format(version="t1"))
    results = tmp_path / "results.txt"
    results.touch()
    env = {"TEST_BROKER": redis_url, "TEST_RESULTS": str(results)}
    server = start_server(
        project,
        "app.py",
        "--shutdown-timeout",
        "40",  # the long task must not be cut: it waits for the new code's first task
        "--run",
        "worker=celery -A celeryapp worker -l info -c 2",
        env=env,
    )
    wait_for(lambda: "celery@" in server.log() and " ready." in server.log(), 30, "Celery")
    wait_for(lambda: _standbys(server), 30, lambda: f"the worker's warmed standby\n{server.log()}")

    def enqueue(first: int, last: int) -> None:
        _client(
            project,
            env,
            f"from tasks import record\n[record.delay(n) for n in {RANGE}]",
            first,
            last,
        )

    def done() -> list[str]:
        return results.read_text().splitlines()

    enqueue(0, 60)  # 1.5 s of work for 2 processes besides task 0: the edit comes while they run
    wait_for(lambda: len(done()) >= 5, 20, "the first tasks")
    (project / "tasks.py").write_text(textwrap.dedent(CELERY_TASKS).format(version="t2"))
    wait_for(
        lambda: "Warm shutdown" in server.log(), 20, lambda: f"the warm shutdown\n{server.log()}"
    )
    enqueue(60, 80)
    wait_for(lambda: len(done()) >= 80, 60, lambda: f"80 tasks\n{server.log()}")
    holds_for(lambda: len(done()) == 80, 1.0, "no task run twice")
    numbers = sorted(int(line.split()[0]) for line in done())
    assert numbers == list(range(80)), "a task lost or run twice"
    versions = [line.split()[1] for line in done()]
    first_new = versions.index("t2")
    # The old process finished its long task on its code after the new one had run a task of
    # the new code: they ran side by side. Of the old code, only what it ran at its warm
    # shutdown came after (task 0, and at most the one its second pool process ran).
    assert "0 t1" in done()[first_new:], done()
    assert versions[0] == "t1" and versions[-1] == "t2"
    assert len([v for v in versions[first_new:] if v == "t1"]) <= 2, done()
    assert (
        server.log().count("worker | tasks.py changed: handed over (the old process finishes") == 1
    ), server.log()


# --- a real RQ worker on the same Redis -------------------------------------------------------

RQ_SETTINGS = """
import os

REDIS_URL = os.environ["TEST_BROKER"]
NAME = "wsgidev-test-worker"  # a fixed name: RQ refuses a second live worker of the same name
# {edit}
"""

RQ_TASKS = """
import os, time

VERSION = "{version}"


def record(n):
    if n == 100:  # a long job: it ends once the test releases it (or after 30 s)
        with open(os.environ["TEST_RESULTS"] + ".started", "w"):
            pass
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not os.path.exists(os.environ["TEST_RELEASE"]):
            time.sleep(0.05)
    with open(os.environ["TEST_RESULTS"], "a") as out:
        out.write(f"{{n}} {{VERSION}}\\n")
"""


def test_an_rq_worker_runs_new_job_code_without_a_restart_and_hands_over_on_its_own_code(
    project, redis_url, start_server, tmp_path
):  # Redis is asked for first, so that it outlives the server: RQ retries a lost Redis for ever
    # RQ's worker imports a job's module in the work horse it forks for that job, never in
    # itself: an edit of tasks.py needs no restart (and gets none). Its settings module is its
    # own: an edit hands over, and the fixed worker name must not leave the queue without one.
    (project / "rqsettings.py").write_text(textwrap.dedent(RQ_SETTINGS).format(edit=1))
    (project / "tasks.py").write_text(textwrap.dedent(RQ_TASKS).format(version="t1"))
    results, release = tmp_path / "results.txt", tmp_path / "release"
    results.touch()
    env = {"TEST_BROKER": redis_url, "TEST_RESULTS": str(results), "TEST_RELEASE": str(release)}
    server = start_server(
        project,
        "app.py",
        "--shutdown-timeout",
        "40",
        "--run",
        "worker=rq worker -c rqsettings",
        env=env,
    )
    script = (
        "import os; from redis import Redis; from rq import Queue\n"
        "queue = Queue(connection=Redis.from_url(os.environ['TEST_BROKER']))\n"
        f"[queue.enqueue('tasks.record', n) for n in {RANGE}]\n"
    )

    def enqueue(first: int, last: int) -> None:
        _client(project, env, script, first, last)

    def done() -> list[str]:
        return results.read_text().splitlines()

    def births() -> int:
        return server.log().count("Worker wsgidev-test-worker: started with PID")

    def standby() -> None:
        wait_for(lambda: _standbys(server), 30, lambda: f"the warmed standby\n{server.log()}")

    wait_for(lambda: births() == 1, 30, lambda: f"the worker\n{server.log()}")
    enqueue(0, 5)
    wait_for(lambda: len(done()) == 5, 20, lambda: f"5 jobs\n{server.log()}")
    (project / "tasks.py").write_text(textwrap.dedent(RQ_TASKS).format(version="t2"))
    enqueue(5, 10)
    wait_for(lambda: len(done()) == 10, 20, lambda: f"10 jobs\n{server.log()}")
    assert [line.split()[1] for line in done()] == ["t1"] * 5 + ["t2"] * 5
    holds_for(lambda: births() == 1 and "changed" not in server.log(), 1.0, "no restart")

    # An edit of its settings while it runs a job: the old process finishes the job, holding
    # the name; the new one, refused it, is started again once the old one has gone.
    standby()
    enqueue(100, 101)
    wait_for(lambda: Path(f"{results}.started").exists(), 20, "the long job to start")
    try:
        (project / "rqsettings.py").write_text(textwrap.dedent(RQ_SETTINGS).format(edit=2))
        wait_for(
            lambda: "while the process it took over from was still stopping" in server.log(),
            30,
            lambda: f"the new process to be refused the name\n{server.log()}",
        )
    finally:
        release.touch()  # the job ends, and with it the old process
    wait_for(lambda: births() == 2, 30, lambda: f"the new worker\n{server.log()}")
    # Idle, its next hand-over is quick: the old worker is told at once (not cut by the
    # shutdown timeout with its name left taken), so the new one gets the name.
    standby()
    (project / "rqsettings.py").write_text(textwrap.dedent(RQ_SETTINGS).format(edit=3))
    wait_for(lambda: births() == 3, 20, lambda: f"the third worker\n{server.log()}")
    enqueue(10, 15)
    wait_for(lambda: len(done()) == 16, 20, lambda: f"16 jobs\n{server.log()}")
    holds_for(lambda: len(done()) == 16, 0.5, "no job run twice")
    assert sorted(int(line.split()[0]) for line in done()) == [*range(15), 100]
    assert "waiting for a fix" not in server.log(), server.log()


# --- a real Dramatiq worker on the same Redis --------------------------------------------------

DRAMATIQ_ACTORS = """
import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["TEST_BROKER"]))
VERSION = "{version}"


@dramatiq.actor
def record(n):
    with open(os.environ["TEST_RESULTS"], "a") as out:
        out.write(f"{{n}} {{VERSION}}\\n")
"""


def test_a_dramatiq_worker_hands_over_on_the_actors_its_worker_processes_imported(
    project, redis_url, start_server, tmp_path
):
    # Dramatiq's main process imports no actor: its worker processes (forked) do. They tell
    # the main process's monitor what they import, so an edit of the actors hands over.
    (project / "actors.py").write_text(textwrap.dedent(DRAMATIQ_ACTORS).format(version="d1"))
    results = tmp_path / "results.txt"
    results.touch()
    env = {"TEST_BROKER": redis_url, "TEST_RESULTS": str(results)}
    server = start_server(
        project, "app.py", "--run", "worker=dramatiq actors --processes 1 --threads 2", env=env
    )

    def enqueue(first: int, last: int) -> None:
        _client(
            project,
            env,
            f"from actors import record\n[record.send(n) for n in {RANGE}]",
            first,
            last,
        )

    def done() -> list[str]:
        return results.read_text().splitlines()

    wait_for(
        lambda: "Worker process is ready for action" in server.log(),
        30,
        lambda: f"Dramatiq's worker process\n{server.log()}",
    )
    wait_for(lambda: _standbys(server), 30, lambda: f"the warmed standby\n{server.log()}")
    enqueue(0, 5)
    wait_for(lambda: len(done()) == 5, 20, lambda: f"5 messages\n{server.log()}")
    (project / "actors.py").write_text(textwrap.dedent(DRAMATIQ_ACTORS).format(version="d2"))
    wait_for(
        lambda: "worker | actors.py changed: handed over" in server.log(),
        20,
        lambda: f"the hand-over\n{server.log()}",
    )
    # Sent at once: the old worker still takes messages until its worker process has handled
    # the SIGTERM (half a second on a loaded machine, seen in a compat run), so these run on
    # either code; none is lost and none runs twice.
    enqueue(5, 10)
    wait_for(lambda: len(done()) == 10, 30, lambda: f"10 messages\n{server.log()}")
    # Once the old one has shut down, every message runs the new code (its one worker process,
    # --processes 1, says so once).
    wait_for(
        lambda: "Worker has been shut down" in server.log(),
        30,
        lambda: f"the old worker's end\n{server.log()}",
    )
    enqueue(10, 15)
    wait_for(lambda: len(done()) == 15, 30, lambda: f"15 messages\n{server.log()}")
    holds_for(lambda: len(done()) == 15, 0.5, "no message run twice")
    assert sorted(int(line.split()[0]) for line in done()) == list(range(15))
    assert [line.split()[1] for line in done()[10:]] == ["d2"] * 5, done()


def test_a_dramatiq_worker_that_fails_in_its_worker_processes_waits_for_a_fix_of_the_actors(
    project, redis_url, start_server, tmp_path
):
    # Only the worker processes import the actors: a typo there fails them, Dramatiq's main
    # process exits, and the fix (of a file only exited processes imported) must still count.
    (project / "actors.py").write_text("def broken(:\n")
    results = tmp_path / "results.txt"
    results.touch()
    env = {"TEST_BROKER": redis_url, "TEST_RESULTS": str(results)}
    server = start_server(
        project, "app.py", "--run", "worker=dramatiq actors --processes 1 --threads 2", env=env
    )
    wait_for(
        lambda: "waiting for a fix" in server.log(), 30, lambda: f"the failure\n{server.log()}"
    )
    (project / "actors.py").write_text(textwrap.dedent(DRAMATIQ_ACTORS).format(version="d2"))
    wait_for(
        lambda: "Worker process is ready for action" in server.log(),
        30,
        lambda: f"the fixed worker\n{server.log()}",
    )
    _client(project, env, "from actors import record; record.send(1)")
    wait_for(lambda: results.read_text() == "1 d2\n", 30, lambda: f"the message\n{server.log()}")


# --- a real Huey consumer on the same Redis ---------------------------------------------------

HUEY_TASKS = """
import os, time

from huey import RedisHuey

huey = RedisHuey("wsgidev-test", url=os.environ["TEST_BROKER"])
VERSION = "{version}"


@huey.task()
def record(n):
    if n >= 100:  # a long task: it ends once the test releases it (or after 30 s)
        with open(os.environ["TEST_RESULTS"] + f".started{{n}}", "w"):
            pass
        deadline = time.monotonic() + 30
        release = os.environ["TEST_RELEASE"] + str(n)
        while time.monotonic() < deadline and not os.path.exists(release):
            time.sleep(0.05)
    with open(os.environ["TEST_RESULTS"], "a") as out:
        out.write(f"{{n}} {{VERSION}}\\n")
"""


def test_a_huey_consumer_restarts_on_its_tasks_with_its_graceful_stop(
    project, redis_url, start_server, tmp_path
):
    # Huey's consumer stops gracefully on SIGINT; its SIGTERM interrupts the running tasks
    # (the task would be lost), at an edit and at wsgidev's stop. It runs one at a time (it
    # may hold a schedule).
    (project / "tasks.py").write_text(textwrap.dedent(HUEY_TASKS).format(version="h1"))
    results, release = tmp_path / "results.txt", tmp_path / "release"
    results.touch()
    env = {"TEST_BROKER": redis_url, "TEST_RESULTS": str(results), "TEST_RELEASE": str(release)}
    server = start_server(
        project,
        "app.py",
        "--shutdown-timeout",
        "40",
        "--run",
        "worker=huey_consumer tasks.huey -w 2 -k thread",
        env=env,
    )

    def enqueue(first: int, last: int) -> None:
        _client(
            project, env, f"from tasks import record\n[record(n) for n in {RANGE}]", first, last
        )

    def done() -> list[str]:
        return results.read_text().splitlines()

    wait_for(lambda: "Huey consumer started" in server.log(), 30, lambda: server.log())
    wait_for(lambda: _standbys(server), 30, lambda: f"the warmed standby\n{server.log()}")
    enqueue(0, 3)
    wait_for(lambda: len(done()) == 3, 20, lambda: f"3 tasks\n{server.log()}")
    enqueue(100, 101)
    wait_for(lambda: Path(f"{results}.started100").exists(), 20, "the long task to start")
    try:
        (project / "tasks.py").write_text(textwrap.dedent(HUEY_TASKS).format(version="h2"))
        wait_for(
            lambda: "worker | tasks.py changed: restarting" in server.log(),
            20,
            lambda: f"the restart\n{server.log()}",
        )
    finally:
        Path(f"{release}100").touch()  # the long task ends on the old code, then the consumer
    wait_for(
        lambda: server.log().count("Huey consumer started") == 2,
        40,
        lambda: f"the new consumer\n{server.log()}",
    )
    enqueue(3, 6)
    wait_for(lambda: len(done()) == 7, 40, lambda: f"7 tasks\n{server.log()}")
    holds_for(lambda: len(done()) == 7, 0.5, "no task run twice")
    assert sorted(int(line.split()[0]) for line in done()) == [0, 1, 2, 3, 4, 5, 100]
    assert "100 h1" in done(), done()  # finished by the old consumer, not interrupted
    assert sorted(line for line in done() if line.split()[0] in "345") == ["3 h2", "4 h2", "5 h2"]

    # wsgidev's stop while a task runs: the consumer's graceful stop, the task finishes.
    enqueue(101, 102)
    wait_for(lambda: Path(f"{results}.started101").exists(), 20, "the second long task")
    stopping = threading.Thread(target=server.stop, kwargs={"timeout_s": 60})
    stopping.start()
    try:
        wait_for(
            lambda: server.log().count("Shutting down gracefully") == 2,  # the edit's, this
            20,
            lambda: f"the consumer's graceful stop\n{server.log()}",
        )
    finally:
        Path(f"{release}101").touch()
        stopping.join(70)
    assert "101 h2" in done(), (done(), server.log())


def test_which_signal_stops_a_service_gracefully():
    assert stop_signal("celery -A proj worker") == signal.SIGTERM
    assert stop_signal("huey_consumer tasks.huey -w 2") == signal.SIGINT
    assert stop_signal("python manage.py run_huey") == signal.SIGINT
    assert stop_signal("huey_consumer tasks.huey --graceful-signal TERM") == signal.SIGTERM
    assert stop_signal("huey_consumer tasks.huey -g TERM") == signal.SIGTERM
    assert stop_signal("python manage.py runserver") == signal.SIGTERM
    assert stop_signal("python -m huey.bin.huey_consumer tasks.huey") == signal.SIGINT
    assert stop_signal("django-admin run_huey --settings=site.settings") == signal.SIGINT
    assert stop_signal("huey_consumer tasks.huey --graceful=TERM") == signal.SIGTERM
    assert stop_signal("huey_consumer tasks.huey -gTERM") == signal.SIGTERM
    assert stop_signal("huey_consumer tasks.huey --graceful-signal=INT") == signal.SIGINT


CELERY_STOPPING_TASKS = """
from celeryapp import app


@app.task
def stop_here(n):
    secret = f"secret-{n}"
    breakpoint()
    print(f"after the breakpoint {secret}", flush=True)
"""


def test_a_breakpoint_in_a_celery_task_opens_on_wsgidevs_terminal(
    project, redis_url, terminal_server
):
    # The task runs in a prefork pool process: the debugger reaches the terminal from there.
    (project / "celeryapp.py").write_text(textwrap.dedent(CELERY_APP))
    (project / "tasks.py").write_text(textwrap.dedent(CELERY_STOPPING_TASKS))
    env = {"TEST_BROKER": redis_url}
    server = terminal_server(
        project, "app.py", "--run", "worker=celery -A celeryapp worker -l info -c 1", env=env
    )
    server.expect(r" ready\.", 60)
    _client(project, env, "from tasks import stop_here; stop_here.delay(7)")
    stopped = server.expect(r"\(Pdb\) ", 60)
    assert "Debugger: service worker (process " in stopped and "tasks.py:8" in stopped, stopped
    server.type("p secret")
    server.expect("'secret-7'")
    server.expect(r"\(Pdb\) ")
    server.type("c")
    server.expect("after the breakpoint secret-7")


def test_which_services_hand_over():
    assert hands_over("celery -A proj worker -l info -c 2")
    assert hands_over("/venv/bin/celery --app proj worker")
    assert hands_over("python -m celery -A proj worker")
    assert not hands_over("celery -A proj worker -B")  # an embedded beat: a schedule held twice
    assert not hands_over("celery -A proj beat")
    assert hands_over("rq worker high default")
    assert hands_over("dramatiq tasks")
    assert hands_over("python manage.py db_worker --interval 0.05")
    assert hands_over("./manage.py rqworker default")
    assert not hands_over("python manage.py run_huey")  # periodic tasks inside
    assert not hands_over("python server.py")  # a port, a lock: unknown, so one at a time
    assert not hands_over("npm run dev")
    assert not hands_over("celery -A worker beat")  # an app named worker: still a beat
    assert not hands_over("rq -u redis://x/0 info worker")
    assert not hands_over("celery -A proj worker --pidfile=/tmp/w.pid")  # the new one refuses


# A service that binds a port: two at once cannot be. Its standby goes once the old one is gone.
LISTENER = """
import os, signal, socket, sys
import tasks

signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
listener = socket.create_server(("127.0.0.1", int(os.environ["TEST_PORT"])))
print(f"listening with {tasks.VERSION}", flush=True)
while True:
    listener.accept()[0].close()
"""


def test_a_service_that_is_no_worker_is_restarted_from_its_standby_once_it_has_stopped(
    project, start_server
):
    _project(project)
    (project / "listener.py").write_text(textwrap.dedent(LISTENER))
    server = start_server(
        project,
        "app.py",
        "--run",
        "listener=python listener.py",
        env={"TEST_PORT": str(free_port())},
    )
    wait_for(lambda: "listener | listening with t1" in server.log(), 20, "the service")
    wait_for(lambda: _standbys(server), 30, lambda: f"its warmed standby\n{server.log()}")
    standby = _standbys(server)
    (project / "tasks.py").write_text('VERSION = "t2"\n')
    wait_for(
        lambda: "listener | listening with t2" in server.log(), 20, lambda: f"t2\n{server.log()}"
    )
    assert "exited with" not in server.log() and "Address already in use" not in server.log()
    assert "listener | tasks.py changed: restarting" in server.log()
    serving = set()
    for pid in descendants(server.process.pid):
        with contextlib.suppress(OSError):  # a process that ended meanwhile
            if b"listener.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                serving.add(pid)
    assert set(standby) & serving, "the standby was not the one that took over"
    # Then a new standby for the next change, warmed from what the new process imported.
    wait_for(lambda: set(_standbys(server)) - set(standby), 30, "a new standby")


# --- the debugger -------------------------------------------------------------------------------

STOPPER = """
import time

n = 0
while True:
    n += 1
    secret = f"secret-{n}"
    if n == 3:
        breakpoint()
        print(f"after the breakpoint {secret}", flush=True)
    time.sleep(0.05)
"""


def test_a_breakpoint_in_a_service_opens_on_wsgidevs_terminal(project, terminal_server):
    (project / "stopper.py").write_text(textwrap.dedent(STOPPER))
    server = terminal_server(project, "app.py", "--run", "task=python stopper.py")
    stopped = server.expect(r"\(Pdb\) ")
    assert "Debugger: service task (process " in stopped and "stopper.py:9" in stopped, stopped
    server.type("p secret")
    server.expect("'secret-3'")
    server.expect(r"\(Pdb\) ")
    server.type("c")
    server.expect("task | after the breakpoint secret-3")


# --- what runs how (no server) ------------------------------------------------------------------


def test_which_commands_run_with_the_monitor_inside(tmp_path):
    from wsgidev.services import command_line, read_procfile

    bin_dir = Path(sys.executable).parent
    path = f"{bin_dir}:/usr/bin:/bin"
    leader = [sys.executable, "-m", "wsgidev.daemon.leader"]
    monitored = [*leader, sys.executable, "-m", "wsgidev.daemon.service"]
    celery = command_line("celery -A proj worker --loglevel=info -Q 'a#b'", path)
    assert celery == (
        [
            *monitored,
            str(bin_dir / "celery"),
            "-A",
            "proj",
            "worker",
            "--loglevel=info",
            "-Q",
            "a#b",
        ],
        True,
    )
    assert command_line("python -u manage.py db_worker", path) == (
        [*monitored, "manage.py", "db_worker"],
        True,
    )
    assert command_line("python -m http.server", path) == ([*monitored, "-m", "http.server"], True)
    for shell_line in ("npm run dev | cat", "FOO=1 python x.py", "echo *.css", "a && b"):
        argv, python = command_line(shell_line, path)
        assert argv == [*leader, "/bin/sh", "-c", shell_line] and not python, argv
    # Another interpreter's script runs as any command, unwatched: wsgidev's Python lacks its packages.
    other = tmp_path / "other-tool"
    other.write_text("#!/usr/bin/python3.99\nprint()\n")
    other.chmod(0o755)
    assert command_line(str(other), path) == ([*leader, str(other)], False)
    procfile = tmp_path / "Procfile"
    procfile.write_text("# comment\n\nweb: gunicorn app\nworker: celery -A proj worker\n")
    specs, web = read_procfile(procfile)
    assert web and [(s.name, s.command) for s in specs] == [("worker", "celery -A proj worker")]


PLAIN = """
import time
import tasks

print(f"plain up with {tasks.VERSION}")  # no flush: a pipe's buffering must not hold it
while True:
    time.sleep(0.05)
"""


def test_a_service_that_leaves_sigterm_to_python_restarts_at_once(project, start_server):
    _project(project)
    (project / "plain.py").write_text(textwrap.dedent(PLAIN))
    server = start_server(project, "app.py", "--run", "plain=python plain.py")
    wait_for(lambda: "plain | plain up with t1" in server.log(), 20, "the service")
    (project / "tasks.py").write_text('VERSION = "t2"\n')
    wait_for(lambda: "plain | plain up with t2" in server.log(), 20, lambda: f"t2\n{server.log()}")
    assert "exited with" not in server.log()  # killed by its SIGTERM: a restart, not a crash


STUBBORN = """
import signal, time
import tasks

signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"stubborn up with {tasks.VERSION}")
while True:
    time.sleep(0.05)
"""


def test_a_service_that_ignores_sigterm_is_ended_after_the_shutdown_timeout(project, start_server):
    _project(project)
    (project / "stubborn.py").write_text(textwrap.dedent(STUBBORN))
    server = start_server(
        project, "app.py", "--shutdown-timeout", "1", "--run", "stubborn=python stubborn.py"
    )
    wait_for(lambda: "stubborn | stubborn up with t1" in server.log(), 20, "the service")
    (project / "tasks.py").write_text('VERSION = "t2"\n')
    wait_for(
        lambda: "stubborn | stubborn up with t2" in server.log(), 20, lambda: f"t2\n{server.log()}"
    )


def test_stopping_while_a_service_waits_for_a_fix_leaves_nothing(project, start_server):
    _project(project)
    (project / "tasks.py").write_text('raise RuntimeError("broken from the start")\n')
    server = start_server(project, "app.py", "--run", "worker=python worker.py")
    wait_for(
        lambda: "waiting for a fix" in server.log(), 20, lambda: f"the failure\n{server.log()}"
    )
    # The teardown stops the server and finds nothing left (the waiting service included).


# --- Django's tasks framework: django-tasks-db's db_worker ---------------------------------------


@pytest.fixture(scope="session")
def tasks_packages() -> Path:
    """django-tasks-db (and the django-tasks backport for Django 5.2) in a folder of their own
    (pip --target, kept in the venv between runs), imported by the test project from there."""
    import django

    if django.VERSION < (5, 2):
        pytest.skip(f"django-tasks-db needs Django 5.2; this is {django.__version__}")
    folder = Path(sys.prefix) / "wsgidev-test-packages" / "django-tasks-db-0.13.0"
    if not (folder / "django_tasks_db").is_dir():
        spare = folder.with_name(f".{folder.name}.{os.getpid()}")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(spare)]
            + ["django-tasks-db==0.13.0", "django-tasks==0.12.0", "django-stubs-ext"],
            check=True,
        )
        try:
            os.replace(spare, folder)
        except OSError:  # another run put it there meanwhile
            shutil.rmtree(spare, ignore_errors=True)
    return folder


def test_a_django_db_worker_reloads_on_its_tasks_module_with_no_task_lost_or_run_twice(
    django_project, start_server, tasks_packages, tmp_path
):
    results = tmp_path / "results.txt"
    env = {"TEST_TASKS": str(tasks_packages), "TEST_RESULTS": str(results)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=django_project,
        env={**os.environ, **env},
        check=True,
    )
    server = start_server(
        django_project, "--run", "tasks=python manage.py db_worker --interval 0.05", env=env
    )
    script = (
        "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'testsite.settings'\n"
        "django.setup(); from testapp.jobs import record\n"
        "[record.enqueue(n) for n in range(int(sys.argv[1]), int(sys.argv[2]))]\n"
    )

    def enqueue(first: int, last: int) -> None:
        subprocess.run(
            [sys.executable, "-c", script, str(first), str(last)],
            cwd=django_project,
            env={**os.environ, **env},
            check=True,
            timeout=60,
        )

    def done() -> list[str]:
        return results.read_text().splitlines() if results.exists() else []

    wait_for(lambda: _standbys(server), 30, lambda: f"the worker's warmed standby\n{server.log()}")
    enqueue(0, 40)
    wait_for(lambda: len(done()) >= 5, 30, lambda: f"the first tasks\n{server.log()}")
    jobs = django_project / "testapp" / "jobs.py"
    jobs.write_text(jobs.read_text().replace('VERSION = "j1"', 'VERSION = "j2"'))
    wait_for(lambda: "tasks | jobs.py changed: " in server.log(), 20, server.log())
    enqueue(40, 50)

    def left_running() -> list[int]:
        """Tasks the old worker had claimed (marked RUNNING) at the instant of its stop, before
        it began them: django-tasks-db 0.13's db_worker exits on SIGTERM at once when it is not
        running a task, and that window lies between the claim and the run (its own race, not
        wsgidev's; a Ctrl-C does the same)."""
        # closing(): a connection's own `with` ends a transaction, not the connection (Python
        # 3.13 warns of each one left open).
        with contextlib.closing(sqlite3.connect(django_project / "db.sqlite3")) as db:
            rows = db.execute(
                "SELECT args_kwargs FROM django_tasks_database_dbtaskresult "
                "WHERE status = 'RUNNING' AND finished_at IS NULL"
            ).fetchall()
        return [json.loads(row[0])["args"][0] for row in rows]

    def tally() -> tuple[list[int], set[int]]:
        """The tasks run (once each, or a number twice) and those left RUNNING. RUNNING is read
        first: a task that ends between the two reads is then in both, never in neither (the
        sum of two counts missed it, and a hold failed once under load)."""
        running = set(left_running())
        return [int(line.split()[0]) for line in done()], running

    def accounted() -> int:
        finished, running = tally()
        return len(set(finished) | running)

    def once_each() -> bool:
        finished, running = tally()
        return len(finished) == len(set(finished)) and len(set(finished) | running) == 50

    wait_for(lambda: accounted() >= 50, 60, lambda: f"50 tasks\n{server.log()}")
    holds_for(once_each, 1.0, "no task run twice")
    finished, running = tally()
    assert len(finished) == len(set(finished)), f"a task run twice: {sorted(finished)}"
    assert sorted(set(finished) | running) == list(range(50)), "a task lost"
    stuck = sorted(running - set(finished))
    assert len(stuck) <= 1, f"more than the one claimed at the stop left RUNNING: {stuck}"
    versions = [line.split()[1] for line in done()]
    assert versions[0] == "j1" and versions[-1] == "j2"
    # Handed over: the old process finishes the one task it runs, maybe after the new one's first.
    assert versions[versions.index("j2") :].count("j1") <= 1, done()
    assert "tasks | jobs.py changed: handed over" in server.log(), server.log()


class _MarkProject:
    """The test project with a module its app's ready() imports (setupmark: a file per process
    that imported it, and a MARK), a setting read from the environment (MARK_SETTING), and a
    task that writes both with its process id; migrated for django-tasks-db."""

    def __init__(self, folder: Path, tasks_packages: Path, results: Path) -> None:
        self.folder, self.results = folder, results
        self.env = {"TEST_TASKS": str(tasks_packages), "TEST_RESULTS": str(results)}
        app = folder / "testapp"
        (app / "setupmark.py").write_text(
            'import os\nopen(f"setupmark-{os.getpid()}", "w").close()\nMARK = "m1"\n'
        )
        apps_py = app / "apps.py"
        apps_py.write_text(
            apps_py.read_text().replace(
                "    def ready(self):\n",
                "    def ready(self):\n        from testapp import setupmark  # noqa: F401\n",
            )
        )
        with open(folder / "testsite" / "settings.py", "a") as settings:
            settings.write('MARK_SETTING = os.environ.get("TEST_MARK_ENV", "none")\n')
        (app / "markjobs.py").write_text(
            textwrap.dedent(
                """
                import os
                from django.conf import settings
                try:
                    from django.tasks import task
                except ImportError:
                    from django_tasks import task
                from testapp import setupmark

                @task
                def mark(n):
                    with open(os.environ["TEST_RESULTS"], "a") as out:
                        out.write(f"{n} {setupmark.MARK} {settings.MARK_SETTING} {os.getpid()}\\n")
                """
            )
        )
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            cwd=folder,
            env={**os.environ, **self.env},
            check=True,
        )

    def enqueue(self, first: int, last: int) -> None:
        script = (
            "import os, sys, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'testsite.settings'\n"
            "django.setup(); from testapp.markjobs import mark\n"
            "[mark.enqueue(n) for n in range(int(sys.argv[1]), int(sys.argv[2]))]\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, str(first), str(last)],
            cwd=self.folder,
            env={**os.environ, **self.env},
            check=True,
            timeout=60,
        )

    def done(self) -> list[list[str]]:
        text = self.results.read_text() if self.results.exists() else ""
        return [line.split() for line in text.splitlines()]

    def set_up_standbys(self, server) -> list[int]:
        """Standbys that ran the app's ready(): they set Django up before any change."""
        return [pid for pid in _standbys(server) if (self.folder / f"setupmark-{pid}").exists()]

    def start(self, start_server, first_tasks: int):
        """A server with a db_worker service, once its standby has set Django up and the
        worker has run the first tasks."""
        server = start_server(
            self.folder, "--run", "tasks=python manage.py db_worker --interval 0.05", env=self.env
        )
        wait_for(
            lambda: self.set_up_standbys(server), 30, lambda: f"a set up standby\n{server.log()}"
        )
        self.enqueue(0, first_tasks)
        wait_for(
            lambda: len(self.done()) >= first_tasks,
            30,
            lambda: f"the first tasks\n{server.log()}",
        )
        return server

    def run_after_change(self, server, changed: str, first: int, last: int) -> list[list[str]]:
        """Once `changed` restarted the worker: tasks first..last run; the rows of the
        processes after the first one."""
        wait_for(lambda: f"tasks | {changed} changed: " in server.log(), 20, server.log())
        first_pid = self.done()[0][3]
        self.enqueue(first, last)
        wait_for(lambda: len(self.done()) >= last, 60, lambda: f"{last} tasks\n{server.log()}")
        return [row for row in self.done() if row[3] != first_pid]


def test_a_django_services_standby_is_set_up_and_a_setup_modules_edit_is_not_run_stale(
    django_project, start_server, tasks_packages, tmp_path
):
    """The standby of a service that set Django up (manage.py db_worker) runs django.setup()
    while it waits, as the serving process had, so a hand-over pays only for the command's own
    code. What setup imports (an app's ready(), settings, models) is then the standby's too: an
    edit of it makes that standby stale, and the new code runs, not the standby's."""
    site = _MarkProject(django_project, tasks_packages, tmp_path / "results.txt")
    server = site.start(start_server, 5)
    assert {row[1] for row in site.done()} == {"m1"}
    mark = django_project / "testapp" / "setupmark.py"
    mark.write_text(mark.read_text().replace('MARK = "m1"', 'MARK = "m2"'))
    new_process = site.run_after_change(server, "setupmark.py", 5, 15)
    assert new_process, site.done()
    assert {row[1] for row in new_process} == {"m2"}, f"stale code ran: {site.done()}"


def test_a_manage_py_that_changes_the_environment_first_gets_a_standby_of_libraries_alone(
    django_project, start_server, tasks_packages, tmp_path
):
    """Settings read the environment: a standby may set Django up early only when the program
    changes nothing before it reads them. A manage.py edited to set a variable first: the
    set up standby does not run the new code (a fresh process does, with the new setting),
    and the standbys after it preload libraries alone."""
    site = _MarkProject(django_project, tasks_packages, tmp_path / "results.txt")
    server = site.start(start_server, 3)
    assert {row[2] for row in site.done()} == {"none"}
    manage = django_project / "manage.py"
    manage.write_text(
        manage.read_text().replace(
            "    from django.core", '    os.environ["TEST_MARK_ENV"] = "e2"\n    from django.core'
        )
    )
    new_process = site.run_after_change(server, "manage.py", 3, 10)
    assert new_process and {row[2] for row in new_process} == {"e2"}, site.done()
    # The next standby: libraries alone (it does not run the app's ready()).
    wait_for(
        lambda: [pid for pid in _standbys(server) if str(pid) not in {r[3] for r in site.done()}],
        30,
        lambda: f"the next standby\n{server.log()}",
    )
    holds_for(lambda: not site.set_up_standbys(server), 3.0, "no standby sets Django up")


def test_a_manage_py_that_names_other_settings_is_not_run_with_the_standbys(
    django_project, start_server, tasks_packages, tmp_path
):
    """The standby set Django up with the settings module the program had read; manage.py
    edited to default to another one: the new code runs with the new settings, not the
    standby's (whose own setdefault would have kept the old module)."""
    site = _MarkProject(django_project, tasks_packages, tmp_path / "results.txt")
    (django_project / "testsite" / "settings_b.py").write_text(
        'from testsite.settings import *  # noqa: F403\nMARK_SETTING = "b"\n'
    )
    server = site.start(start_server, 3)
    assert {row[2] for row in site.done()} == {"none"}
    manage = django_project / "manage.py"
    manage.write_text(manage.read_text().replace('"testsite.settings"', '"testsite.settings_b"'))
    new_process = site.run_after_change(server, "manage.py", 3, 10)
    assert new_process and {row[2] for row in new_process} == {"b"}, site.done()


def test_manage_py_runwsgidev_runs_services_too(django_project, start_server):
    (django_project / "ticker.py").write_text(
        'import time\nfrom testapp import jobs_version\nprint("ticker up with", '
        "jobs_version.VERSION, flush=True)\nwhile True:\n    time.sleep(0.05)\n"
    )
    version = django_project / "testapp" / "jobs_version.py"
    version.write_text('VERSION = "k1"\n')
    server = start_server(
        django_project, "--skip-checks", "--run", "ticker=python ticker.py", manage_py=True
    )
    wait_for(lambda: "ticker | ticker up with k1" in server.log(), 30, server.log())
    version.write_text('VERSION = "k2"\n')
    wait_for(lambda: "ticker | ticker up with k2" in server.log(), 30, server.log())


def test_the_reload_line_names_the_services_the_same_save_restarted(project, start_server):
    _project(project)
    (project / "both.py").write_text(
        "import time, helpers\n"
        'open(f"both-started-{helpers.NAME}", "w").close()\n'
        'print(f"both up with {helpers.NAME}", flush=True)\n'
        "while True:\n    time.sleep(0.05)\n"
    )
    # The web's new code imports only once the service runs the same code: the service's change
    # was heard before its new process started, so before the web's line (a condition, waited
    # for at most 30 s, rather than a race between two pipes).
    app = (project / "app.py").read_text()
    (project / "app.py").write_text(
        "import os, time\nimport helpers as _h\n_t = time.monotonic() + 30\n"
        "while not os.path.exists(f'both-started-{_h.NAME}') and time.monotonic() < _t:\n"
        "    time.sleep(0.02)\n" + app
    )
    server = start_server(project, "app.py", "--run", "both=python both.py")
    wait_for(lambda: "both | both up with h1" in server.log(), 30, server.log())
    (project / "helpers.py").write_text('NAME = "h2"\n')
    wait_for(lambda: reload_lines(server), 40, lambda: f"the web's reload\n{server.log()}")
    (line,) = reload_lines(server)
    assert line.endswith("helpers.py changed (web, both)"), server.log()
    assert "both | both up with h2" in server.log()
    # A save only the web imports names the web alone.
    (project / "app.py").write_text((project / "app.py").read_text() + "\n# edited\n")
    # Bounded past the hand-over's own fallbacks: a standby Apache has not restarted yet since
    # the first reload is waited for (REPLACEMENT_WAIT_S) and given time to warm
    # (REPLACEMENT_WARM_S) before the group restarts in place; a loaded machine can take both.
    bound_s = REPLACEMENT_WAIT_S + REPLACEMENT_WARM_S + 30
    wait_for(
        lambda: len(reload_lines(server)) == 2,
        bound_s,
        lambda: f"the second reload\n{server.log()}",
    )
    assert reload_lines(server)[1].endswith("app.py changed"), server.log()
