"""One server on one project: start, idle CPU, code edits under load, template edits, stop."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import edits, proctree
from bench.load import Load, Sample, get, settled_at, shows
from bench.projects import Project
from bench.servers import Paths, ServerProcess, ServerSpec

CLIENTS = 4
POLL_S = 0.02
# An edit has settled once every client gets the new value and every server process has
# answered with it, HOLD_S ago: a second process that restarts late is caught, and a process
# that imported the edited module lazily (on its first request) has had a poll since. The next
# edit then waits GAP_S more, so it lands at a random phase of the servers' one-second polls.
HOLD_S = 1.0
GAP_S = (0.3, 1.0)
# ...unless fewer processes than expected answer at all: then settle on the clients alone.
ALL_PROCESSES_WAIT_S = 5.0
WARM_DEADLINE_S = 10.0
# Idle is measured once the tree has had a second under this much CPU (or after the wait).
QUIET_CPU_S = 0.05
QUIET_WAIT_S = 20.0
# A server that missed this many edits in a row does not reload: the rest are skipped.
GIVE_UP_AFTER_MISSES = 4


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How much to measure (the --quick run measures less)."""

    code_edits: int
    template_edits: int
    idle_s: float
    deadline_s: float
    template_deadline_s: float


@dataclass(frozen=True, kw_only=True)
class EditResult:
    """One save: how long until every client saw it (None if it never did: a missed edit)."""

    kind: str  # "code", "template", or "model" (a models.py edit: rapid scenario)
    style: str
    latency_s: float | None
    detect_s: float | None  # save -> first server process exited
    respawn_s: float | None  # first exit -> first new process
    restarted: bool  # a server process exited or started after the save
    # For reading a run's raw numbers (--json): the value saved, how long until the next save,
    # when a first client saw it, and the last answer that was not it (seconds after the save).
    value: str = ""
    window_s: float = 0.0
    first_seen_s: float | None = None
    last_other_s: float | None = None
    last_other: str = ""
    # wsgidev's own figure: the first "Reloaded in X s" line printed after this save and before
    # the next one, and how many such lines there were.
    printed_s: float | None = None
    printed_lines: int = 0
    # wsgidev's timeline of that reload (--log-level info): each part, seconds after the save.
    parts: tuple[tuple[str, float], ...] = ()

    @property
    def missed(self) -> bool:
        return self.latency_s is None


@dataclass(kw_only=True)
class ServerResult:
    """Everything measured for one server on one project."""

    server: str
    project: str
    error: str | None = None
    modules: int | None = None
    # From /bench/dirs: watched directories (module, template and locale folders) and modules.
    watched: dict[str, int] = field(default_factory=dict)
    idle_cpu_s: float | None = None
    idle_s: float = 0.0
    idle_exits: int = 0
    code: list[EditResult] = field(default_factory=list)
    templates: list[EditResult] = field(default_factory=list)
    skipped_code_edits: int = 0
    skipped_template_edits: int = 0
    requests: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    survivors: list[int] = field(default_factory=list)
    log_path: str = ""


def run_server(
    spec: ServerSpec,
    project: Project,
    paths: Paths,
    settings: Settings,
    log_dir: Path,
    progress: Callable[[str], None],
) -> ServerResult:
    """Measure one server on one project; the server is stopped whatever happens."""
    result = ServerResult(server=spec.key, project=project.key)
    log_path = log_dir / f"{project.key}-{spec.key}.log"
    result.log_path = str(log_path)
    reset_probe(project)
    server = ServerProcess(spec, project, paths, log_path)
    try:
        server.start()
        server.wait_ready()
        progress(f"listening on port {server.port}")
        warm(server, spec.processes)
        result.watched = watched_counts(server)
        result.modules = result.watched.get("modules")
        result.idle_s = settings.idle_s
        result.idle_cpu_s, result.idle_exits = _idle_cpu(server, settings.idle_s)
        progress(f"idle CPU {result.idle_cpu_s:.2f} s")
        _edit_phase(server, project, settings, result, kind="code")
        progress("code edits done")
        _edit_phase(server, project, settings, result, kind="template")
    except Exception as exc:  # noqa: BLE001 - reported in the results, the run goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        stopping = time.monotonic()
        result.survivors = server.stop()
        progress(f"stopped in {time.monotonic() - stopping:.1f} s")
    return result


def reset_probe(project: Project) -> None:
    """Put the probe's values and template back to their initial text before each server."""
    for path, name, value in (
        (project.views_path, "VALUE", "v-000-initial"),
        (project.models_path, "MODEL_VALUE", "m-000-initial"),
    ):
        text = path.read_text(encoding="utf-8")
        path.write_text(edits.with_assignment(text, name, value), encoding="utf-8")
    project.template_path.write_text("tpl=t-000-initial\n", encoding="utf-8")


def warm(server: ServerProcess, processes: int) -> None:
    """Load until every server process has answered once (each imports the URLconf lazily)."""
    deadline = time.monotonic() + WARM_DEADLINE_S
    with Load(server.port, CLIENTS) as load:
        while time.monotonic() < deadline:
            pids = {s.pid for s in list(load.samples) if s.status == 200}
            if len(pids) >= processes:
                break
            time.sleep(0.1)
    time.sleep(0.5)


def watched_counts(server: ServerProcess) -> dict[str, int]:
    """/bench/dirs of a server process after it served the probe: its watched directories and
    modules (the answer with the most directories of a few, as processes may differ)."""
    answers = []
    for _ in range(6):
        status, body = get(server.port, "/bench/dirs")
        if status == 200:
            answers.append(json.loads(body))
    return max(answers, key=lambda counts: counts["dirs"], default={})


def printed_reload(
    lines: list[tuple[float, str]], saved: float, until: float
) -> tuple[float | None, int]:
    """The figure of the first "Reloaded in X s" line that arrived in [saved, until), and how
    many such lines arrived then."""
    mine = [text for arrived, text in lines if saved <= arrived < until]
    figures = [
        float(m.group(1)) for text in mine if (m := re.search(r"Reloaded in ([\d.]+) s", text))
    ]
    return (figures[0] if figures else None), len(mine)


def printed_timeline(
    lines: list[tuple[float, str]], saved: float, until: float
) -> tuple[tuple[str, float], ...]:
    """The parts of the first "Reload timeline:" line that arrived in [saved, until)."""
    for arrived, text in lines:
        if saved <= arrived < until:
            said = text.split("Reload timeline: ", 1)[-1]
            # Parts are "NAME +S s", joined by " · " (or " - " where the terminal lacks "·").
            found = re.findall(r"(.+?) \+([\d.]+) s(?: [·-] |$)", said)
            return tuple((name, float(value)) for name, value in found)
    return ()


def _idle_cpu(server: ServerProcess, idle_s: float) -> tuple[float, int]:
    """CPU seconds the whole process tree used over idle_s with no requests."""
    time.sleep(1.0)  # let the warm-up's last requests and log writes finish
    wait_quiet(server)
    before = server.tree()
    time.sleep(idle_s)
    after = server.tree()
    return proctree.cpu_used_s(before, after)


def wait_quiet(server: ServerProcess, limit_s: float = QUIET_WAIT_S) -> None:
    """Wait, up to limit_s, for a second in which the tree used under QUIET_CPU_S: start-up
    work that outlasts the first answer (wsgidev's standby processes warming) is not idling."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = server.tree()
        time.sleep(1.0)
        if proctree.cpu_used_s(before, server.tree())[0] < QUIET_CPU_S:
            return


def _edit_phase(
    server: ServerProcess, project: Project, settings: Settings, result: ServerResult, kind: str
) -> None:
    """Save edits one after another under load; record each one's latency and restarts."""
    if kind == "code":
        count, deadline_s, field_name = settings.code_edits, settings.deadline_s, "value"
        path = project.views_path
    else:
        count, deadline_s, field_name = settings.template_edits, settings.template_deadline_s, "tpl"
        path = project.template_path
    watcher = proctree.TreeWatcher(server.pid)
    watcher.start()
    saves: list[tuple[float, str, str]] = []  # (time saved, style, value)
    try:
        with Load(server.port, CLIENTS) as load:
            time.sleep(0.5)
            misses_in_a_row = 0
            for n in range(1, count + 1):
                if kind == "code":
                    style = edits.SAVE_STYLES[(n - 1) % len(edits.SAVE_STYLES)]
                    value = f"v-{n:03d}-{style}"
                    text = edits.with_assignment(path.read_text(encoding="utf-8"), "VALUE", value)
                else:
                    style, value = "in-place", f"t-{n:03d}"
                    text = f"tpl={value}\n"
                first_index = len(load.samples)
                edits.save(path, text, style)
                saved = time.monotonic()
                saves.append((saved, style, value))
                seen = _wait_settled(
                    load, first_index, saved, field_name, value, deadline_s, server.spec.processes
                )
                misses_in_a_row = 0 if seen else misses_in_a_row + 1
                if misses_in_a_row >= GIVE_UP_AFTER_MISSES and n < count:
                    skipped = count - n
                    if kind == "code":
                        result.skipped_code_edits = skipped
                    else:
                        result.skipped_template_edits = skipped
                    break
                time.sleep(random.uniform(*GAP_S))
            ended = time.monotonic()
        samples = list(load.samples)
        result.requests += len(samples)
        result.failures.update(load.failures())
    finally:
        watcher.stop()
    bounds = [t for t, _, _ in saves[1:]] + [ended]
    for (saved, style, value), until in zip(saves, bounds, strict=True):
        settled = settled_at(samples, CLIENTS, saved, until, field_name, value)
        printed_s, printed_lines = printed_reload(server.reloaded_lines, saved, until)
        latency = None if settled is None or settled - saved > deadline_s else settled - saved
        first_exit, first_spawn = watcher.restart_times(saved, until)
        edit = EditResult(
            kind=kind,
            style=style,
            latency_s=latency,
            detect_s=None if first_exit is None else first_exit - saved,
            respawn_s=None
            if first_exit is None or first_spawn is None
            else first_spawn - first_exit,
            restarted=first_exit is not None or first_spawn is not None,
            value=value,
            window_s=until - saved,
            printed_s=printed_s,
            printed_lines=printed_lines,
            **window_details(samples, saved, until, field_name, value),
        )
        (result.code if kind == "code" else result.templates).append(edit)


def window_details(
    samples: list[Sample], saved: float, until: float, field_name: str, value: str | frozenset[str]
) -> dict[str, Any]:
    """When the value was first seen, and what the last answer without it was."""
    window = sorted((s for s in samples if saved <= s.start < until), key=lambda s: s.end)
    seen = [s for s in window if shows(s, field_name, value)]
    other = [s for s in window if not shows(s, field_name, value)]
    last = other[-1] if other else None
    return {
        "first_seen_s": seen[0].end - saved if seen else None,
        "last_other_s": last.end - saved if last else None,
        "last_other": ""
        if last is None
        else f"{last.error or last.status} {getattr(last, field_name)} pid {last.pid} "
        f"client {last.client}",
    }


def _wait_settled(
    load: Load,
    first_index: int,
    saved: float,
    field_name: str,
    value: str,
    deadline_s: float,
    processes: int,
) -> bool:
    """Wait until the edit has settled (see HOLD_S); False at the deadline. Samples are
    appended as answers arrive, so those sent after the save start at first_index."""
    deadline = saved + deadline_s
    while True:
        now = time.monotonic()
        recent = load.samples[first_index:]
        settled = settled_at(recent, load.clients, saved, now + 1, field_name, value)
        if settled is not None:
            first_by_pid: dict[int | None, float] = {}
            for sample in recent:
                if sample.status == 200 and getattr(sample, field_name) == value:
                    first_by_pid.setdefault(sample.pid, sample.end)
            if len(first_by_pid) >= processes:
                settled = max(settled, *first_by_pid.values())
            elif now - settled < ALL_PROCESSES_WAIT_S:
                settled = now
            if now - settled >= HOLD_S:
                return True
        if now > deadline + HOLD_S:
            return False
        time.sleep(POLL_S)
