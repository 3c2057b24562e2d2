"""The rapid-edits scenario: saves in quick succession under a load that never pauses, then the
server's memory by kind of process, and how long Ctrl-C takes to stop it."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import edits, memory
from bench.coldstart import ColdStarts, run_cold_starts
from bench.load import Load, every_client_on, get, settled_at, shows
from bench.projects import Project
from bench.scenario import (
    ALL_PROCESSES_WAIT_S,
    CLIENTS,
    GIVE_UP_AFTER_MISSES,
    EditResult,
    printed_reload,
    printed_timeline,
    reset_probe,
    wait_quiet,
    warm,
    window_details,
)
from bench.servers import Paths, ServerProcess, ServerSpec

# The next save comes this long after every client got the previous one (from as many server
# processes as it runs).
NEXT_SAVE_AFTER_S = 0.5
POLL_S = 0.05
# Code edits alternate these (the two commonest editor saves); so do models.py edits.
STYLES = ("in-place", "rename")
STOP_DEADLINE_S = 15.0
# Memory is read once the tree is quiet (wsgidev's standby processes warmed), or after this long
# (a server that polls files every second is never quiet).
QUIET_BEFORE_MEMORY_S = 10.0
SERVING_PROBES = 12


@dataclass(frozen=True, kw_only=True)
class RapidSettings:
    """How many edits of each kind, and how long each may take before it counts as missed."""

    code_edits: int
    model_edits: int
    deadline_s: float
    cold_starts: int = 0  # launches timed to the first answer, before the edits
    cold_starts_no_pyc: int = 0  # ...and with PYTHONDONTWRITEBYTECODE=1


@dataclass(kw_only=True)
class RapidResult:
    """Everything the rapid scenario measured for one server."""

    server: str
    project: str
    error: str | None = None
    edits: list[EditResult] = field(default_factory=list)
    skipped_edits: int = 0
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    threads_max: int | None = None  # most threads of a process that answered the probe
    memory: list[memory.KindMemory] = field(default_factory=list)
    stop_s: float | None = None
    survivors: list[int] = field(default_factory=list)
    log_path: str = ""
    cold: ColdStarts = field(default_factory=ColdStarts)

    @property
    def pss_kb(self) -> int | None:
        """PSS of the whole tree."""
        return sum(kind.pss_kb for kind in self.memory) if self.memory else None


def edit_plan(settings: RapidSettings) -> list[tuple[str, str]]:
    """(kind, save style) per edit: code edits, with a models.py edit after each equal share of
    them (12 and 3: after the 4th, 8th and 12th)."""
    every = max(1, settings.code_edits // max(1, settings.model_edits))
    plan: list[tuple[str, str]] = []
    models_done = 0
    for n in range(1, settings.code_edits + 1):
        plan.append(("code", STYLES[(n - 1) % len(STYLES)]))
        if n % every == 0 and models_done < settings.model_edits:
            plan.append(("model", STYLES[models_done % len(STYLES)]))
            models_done += 1
    plan += [("model", STYLES[m % len(STYLES)]) for m in range(models_done, settings.model_edits)]
    return plan


def run_rapid(
    spec: ServerSpec,
    project: Project,
    paths: Paths,
    settings: RapidSettings,
    log_dir: Path,
    progress: Callable[[str], None],
) -> RapidResult:
    """Measure one server; the server is stopped whatever happens."""
    result = RapidResult(server=spec.key, project=project.key)
    log_path = log_dir / f"{project.key}-{spec.key}-rapid.log"
    result.log_path = str(log_path)
    reset_probe(project)
    if settings.cold_starts or settings.cold_starts_no_pyc:  # counts its own failures
        result.cold = run_cold_starts(
            spec,
            project,
            paths,
            settings.cold_starts,
            settings.cold_starts_no_pyc,
            log_dir,
            progress,
        )
    server = ServerProcess(spec, project, paths, log_path, timeline=True)
    try:
        server.start()
        server.wait_ready()
        progress(f"listening on port {server.port}")
        warm(server, spec.processes)
        wait_quiet(server)
        _edit_phase(server, project, settings, result)
        progress("edits done")
        wait_quiet(server, QUIET_BEFORE_MEMORY_S)
        result.memory = memory.by_kind(
            server.tree(), server.pid, _serving_pids(server), spec.root_kind, spec.child_kind
        )
        time.sleep(0.5)  # no request in flight
        result.stop_s = server.stop_timed(STOP_DEADLINE_S)
        stop = "–" if result.stop_s is None else f"{result.stop_s:.2f} s"
        progress(f"PSS {result.pss_kb} kB; stopped by Ctrl-C in {stop}")
    except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.survivors = server.stop()
    return result


def _edit_phase(
    server: ServerProcess, project: Project, settings: RapidSettings, result: RapidResult
) -> None:
    """Save the plan's edits, each NEXT_SAVE_AFTER_S after every client got the previous one."""
    saves: list[tuple[float, str, str, str]] = []  # (time saved, kind, style, value)
    with Load(server.port, CLIENTS, pause_s=0.0) as load:
        time.sleep(0.5)
        misses_in_a_row = 0
        plan = edit_plan(settings)
        for n, (kind, style) in enumerate(plan, 1):
            path, name, field_name = _target(project, kind)
            value = f"{'r' if kind == 'code' else 'm'}-{n:03d}-{style}"
            text = edits.with_assignment(path.read_text(encoding="utf-8"), name, value)
            first_index = len(load.samples)
            edits.save(path, text, style)
            saved = time.monotonic()
            saves.append((saved, kind, style, value))
            if _wait_reached(load, first_index, saved, field_name, value, settings, server):
                misses_in_a_row = 0
            else:
                misses_in_a_row += 1
            if misses_in_a_row >= GIVE_UP_AFTER_MISSES and n < len(plan):
                result.skipped_edits = len(plan) - n
                break
            # A little jitter, so saves do not keep one phase of a server's poll loop.
            time.sleep(NEXT_SAVE_AFTER_S + random.uniform(0.0, 0.05))
        ended = time.monotonic()
    samples = list(load.samples)
    result.requests = len(samples)
    result.failures.update(load.failures())
    result.threads_max = max((s.tasks for s in samples if s.tasks is not None), default=None)
    bounds = [t for t, _, _, _ in saves[1:]] + [ended]
    for n, ((saved, kind, style, value), until) in enumerate(zip(saves, bounds, strict=True)):
        field_name = _target(project, kind)[2]
        # A request sent before the next save may be answered after it, with the next value:
        # that shows this edit too.
        wanted = frozenset([value, *(v for _, k, _, v in saves[n + 1 :] if k == kind)])
        settled = settled_at(samples, CLIENTS, saved, until, field_name, wanted)
        latency = (
            None if settled is None or settled - saved > settings.deadline_s else settled - saved
        )
        # A reload line for the last edit may come after the load stopped: look to now.
        look_until = until if until < ended else time.monotonic()
        printed_s, printed_lines = printed_reload(server.reloaded_lines, saved, look_until)
        result.edits.append(
            EditResult(
                kind=kind,
                style=style,
                latency_s=latency,
                # No /proc watcher runs here (it would take CPU from the server under this load):
                # exits and starts are not tracked.
                detect_s=None,
                respawn_s=None,
                restarted=False,
                value=value,
                window_s=until - saved,
                printed_s=printed_s,
                printed_lines=printed_lines,
                parts=printed_timeline(server.timeline_lines, saved, look_until),
                **window_details(samples, saved, until, field_name, wanted),
            )
        )


def _wait_reached(
    load: Load,
    first_index: int,
    saved: float,
    field_name: str,
    value: str,
    settings: RapidSettings,
    server: ServerProcess,
) -> bool:
    """Wait until the edit reached every client: each client's latest answer has it, and so
    has an answer from as many processes as the server runs (a second process that restarts
    later would answer old code), or, if fewer processes answer, the clients have had it for
    ALL_PROCESSES_WAIT_S. False at the deadline."""
    new_pids: set[int | None] = set()
    scanned = first_index
    on_all_since: float | None = None
    while True:
        now = time.monotonic()
        samples = load.samples
        end = len(samples)
        new_pids.update(s.pid for s in samples[scanned:end] if shows(s, field_name, value))
        scanned = end
        if every_client_on(samples, first_index, CLIENTS, field_name, value):
            on_all_since = now if on_all_since is None else on_all_since
            if len(new_pids) >= server.spec.processes or now - on_all_since >= ALL_PROCESSES_WAIT_S:
                return True
        else:
            on_all_since = None
        if now > saved + settings.deadline_s:
            return False
        time.sleep(POLL_S)


def _target(project: Project, kind: str) -> tuple[Path, str, str]:
    """The file an edit of this kind changes, the name it assigns, the probe field showing it."""
    if kind == "code":
        return project.views_path, "VALUE", "value"
    return project.models_path, "MODEL_VALUE", "model"


def _serving_pids(server: ServerProcess) -> set[int]:
    """The processes that answer requests now (for wsgidev: the serving daemon group)."""
    pids = set()
    for _ in range(SERVING_PROBES):
        status, body = get(server.port, "/bench/probe")
        if status == 200 and (pid := body.split()[0].removeprefix("pid=")).isdigit():
            pids.add(int(pid))
    return pids
