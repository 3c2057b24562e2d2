"""Cold start: from launching a server to its first 200 for /bench/probe, as a client sees it.

Each start is a fresh launch on a free port, polled every 20 ms from the moment the command is
started (a refused connection answers at once; one the server accepted waits for the app's
import), then stopped by Ctrl-C until its whole tree has gone, before the next. A developer pays
this at every `wsgidev start`, many times a day: a branch switch, a new dependency, a crash.
Some starts run with PYTHONDONTWRITEBYTECODE=1 (common in Docker images): bytecode caches are
read, none is written, so a cache a server refuses is compiled again at every start.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import PROBE_PATH, get
from bench.projects import Project
from bench.servers import Paths, ServerProcess, ServerSpec

POLL_S = 0.02
FIRST_ANSWER_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


@dataclass(kw_only=True)
class ColdStarts:
    """Seconds from launch to the first 200, per start."""

    seconds: list[float] = field(default_factory=list)
    seconds_no_pyc: list[float] = field(default_factory=list)
    # wsgidev only: launch to its banner (its own start, Apache listening), per usual start
    banner_s: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # what went wrong, per failed start


def run_cold_starts(
    spec: ServerSpec,
    project: Project,
    paths: Paths,
    starts: int,
    starts_no_pyc: int,
    log_dir: Path,
    progress: Callable[[str], None],
) -> ColdStarts:
    """Start and stop the server starts times as users run it, then starts_no_pyc times with
    PYTHONDONTWRITEBYTECODE=1."""
    result = ColdStarts()
    no_pyc = dataclasses.replace(spec, env=(*spec.env, ("PYTHONDONTWRITEBYTECODE", "1")))
    plan = [(spec, result.seconds)] * starts + [(no_pyc, result.seconds_no_pyc)] * starts_no_pyc
    for n, (started_spec, into) in enumerate(plan, 1):
        log_path = log_dir / f"{project.key}-{spec.key}-cold-{n}.log"
        try:
            server = ServerProcess(started_spec, project, paths, log_path)
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            result.failed.append(f"{type(exc).__name__}: {exc}")
            continue
        try:
            launched = time.monotonic()
            seconds = _first_answer_s(server, launched)
            into.append(seconds)
            if server.banner_at is not None and into is result.seconds:
                result.banner_s.append(server.banner_at - launched)
            server.stop_timed(STOP_DEADLINE_S)
        except Exception as exc:  # noqa: BLE001 - counted, the run goes on
            result.failed.append(f"{type(exc).__name__}: {exc}")
        finally:
            left = server.stop()
            if left:
                result.failed.append(f"processes left after the stop: {left}")
    done = ", ".join(f"{s:.2f}" for s in result.seconds + result.seconds_no_pyc)
    progress(f"cold starts: {done} s")
    return result


def _first_answer_s(server: ServerProcess, launched: float) -> float:
    """Launch the server now (launched: time.monotonic()); the seconds until /bench/probe
    answered 200."""
    server.start()
    last = "no answer"
    while time.monotonic() - launched < FIRST_ANSWER_DEADLINE_S:
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"exited while starting; see {server.log_path}")
        try:
            status, _ = get(server.port, PROBE_PATH, timeout_s=FIRST_ANSWER_DEADLINE_S)
        except OSError as exc:
            last = type(exc).__name__
        else:
            if status == 200:
                answered = time.monotonic() - launched
                server.tree()  # remembered, so its stop finds every process
                return answered
            last = f"HTTP {status}"
        time.sleep(POLL_S)
    raise RuntimeError(f"no 200 in {FIRST_ANSWER_DEADLINE_S:.0f} s ({last})")
