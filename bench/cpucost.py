"""CPU per reload: how much processor time each server spends bringing one code edit in.

    .venv/bin/python bench/cpucost.py [--edits 5] [--servers wsgidev,express,gunicorn] [--file models]

A probe beside the benchmark (bench/run.py), for issue 22's question of what bounds reloads under
rapid edits on a two-core machine. On the bench's large site, with no load, each server saves
code edits one at a time (in place, as most editors do), to the probe's views.py or, with
--file models, to its models.py (a module Django's setup imports); for each edit, how long until
every one of the server's processes answered with the new code, and the server's whole process
tree's CPU time from the save until the tree is quiet again, less its idle rate over that
time. Processes that exit meanwhile (retired daemons, old workers) are counted through
their parent's reaped-children time (proctree.lifetime_cpu_s). The time is split between
processes started after the save (a fresh interpreter importing the app: Apache's respawned
daemons, gunicorn's new workers) and those running before it (wsgidev's standby that took over,
the command, Apache).

To bring the new code in, every request must reach it: after the save, waves of 8 concurrent
requests go out until each of the server's processes has answered with the new value
(mod_wsgi-express's daemons import the app at their first request), the same for every server.
What those requests cost is taken out: each server's CPU per request is measured while idle,
before the edits. A process started after the save that also exits before the edit's end
counts under the processes running before it (its time is in its parent's by then). Prints a
markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script: make the repository importable so `bench` is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import edits, proctree, projects  # noqa: E402
from bench.load import PROBE_PATH, get, parse_probe  # noqa: E402
from bench.scenario import reset_probe, wait_quiet, warm  # noqa: E402
from bench.servers import SERVERS, Paths, ServerProcess, ServerSpec  # noqa: E402

DEFAULT_SERVERS = "wsgidev,wsgidev-2standbys,wsgidev-process,express,gunicorn,runserver"
IDLE_S = 5.0
# An edit's window ends at the first second in which the tree used under this much CPU above
# its idle rate (runserver's and mod_wsgi-express's pollers use some all the time).
QUIET_CPU_S = 0.03
QUIET_LIMIT_S = 30.0
NEW_CODE_DEADLINE_S = 30.0
WAVE = 8
POLL_S = 0.02
CALIBRATION_WAVES = 10


@dataclass
class EditCost:
    """One edit: how long until every process served it, and the CPU seconds it cost."""

    served_s: float  # until every process answered with the new code
    requests: int  # the probe's requests answered meanwhile; their CPU is not in cpu_s
    cpu_s: float
    new_processes_cpu_s: float  # of it, in processes started after the save


@dataclass
class CostResult:
    label: str
    idle_rate: float = 0.0  # CPU seconds per second, idle
    request_cpu_s: float = 0.0  # CPU seconds per probe request, measured while idle
    edits: list[EditCost] = field(default_factory=list)
    error: str | None = None


def _waves(server: ServerProcess, until: Callable[[list[dict[str, str]]], bool]) -> int:
    """Send waves of WAVE concurrent probe requests until `until` holds for the 200 answers so
    far (parsed), or NEW_CODE_DEADLINE_S passes (RuntimeError); how many requests the server
    answered (a refused connection, runserver's while it restarts, costs it nothing)."""
    deadline = time.monotonic() + NEW_CODE_DEADLINE_S
    answers: list[dict[str, str]] = []
    answered = 0
    with concurrent.futures.ThreadPoolExecutor(WAVE) as pool:
        while time.monotonic() < deadline:
            wave = [pool.submit(get, server.port, PROBE_PATH) for _ in range(WAVE)]
            for future in wave:
                try:
                    status, body = future.result()
                except (OSError, http.client.HTTPException):
                    continue
                answered += 1
                if status == 200:
                    answers.append(parse_probe(body))
            if until(answers):
                return answered
            time.sleep(POLL_S)
    raise RuntimeError(f"no answer wanted in {NEW_CODE_DEADLINE_S:.0f} s")


def _new_code_everywhere(server: ServerProcess, field_name: str, value: str, processes: int) -> int:
    """Send requests until each of the server's processes has answered with value; how many."""

    def everywhere(answers: list[dict[str, str]]) -> bool:
        return len({a.get("pid") for a in answers if a.get(field_name) == value}) >= processes

    try:
        return _waves(server, everywhere)
    except RuntimeError:
        raise RuntimeError(f"{value} not served by {processes} process(es)") from None


def _request_cpu_s(server: ServerProcess, idle_rate: float) -> float:
    """The tree's CPU seconds per probe request while idle (CALIBRATION_WAVES waves)."""
    waves = 0

    def enough(answers: list[dict[str, str]]) -> bool:
        nonlocal waves
        waves += 1
        return waves >= CALIBRATION_WAVES

    began = time.monotonic()
    before = proctree.lifetime_cpu_s(server.tree())
    answered = _waves(server, enough)
    time.sleep(0.5)  # the last answers' log lines
    spent = proctree.lifetime_cpu_s(server.tree()) - before
    return max(0.0, spent - idle_rate * (time.monotonic() - began)) / max(1, answered)


def _quiet_end(server: ServerProcess, idle_rate: float) -> None:
    """Wait for a second in which the tree used under QUIET_CPU_S more than idle."""
    deadline = time.monotonic() + QUIET_LIMIT_S
    while time.monotonic() < deadline:
        before = proctree.lifetime_cpu_s(server.tree())
        time.sleep(1.0)
        if proctree.lifetime_cpu_s(server.tree()) - before < idle_rate + QUIET_CPU_S:
            return
    raise RuntimeError(f"the tree was not quiet within {QUIET_LIMIT_S:.0f} s")


def measure(
    spec: ServerSpec, project: projects.Project, paths: Paths, count: int, models: bool
) -> CostResult:
    """One server's edits; the server is stopped whatever happens."""
    result = CostResult(label=spec.label)
    reset_probe(project)
    server = ServerProcess(spec, project, paths, paths.scratch / f"cpucost-{spec.key}.log")
    try:
        server.start()
        server.wait_ready()
        warm(server, spec.processes)
        wait_quiet(server)
        before = proctree.lifetime_cpu_s(server.tree())
        time.sleep(IDLE_S)
        result.idle_rate = (proctree.lifetime_cpu_s(server.tree()) - before) / IDLE_S
        result.request_cpu_s = _request_cpu_s(server, result.idle_rate)
        wait_quiet(server)
        path = project.models_path if models else project.views_path
        name, field_name = ("MODEL_VALUE", "model") if models else ("VALUE", "value")
        for n in range(1, count + 1):
            value = f"c-{n:03d}"
            text = edits.with_assignment(path.read_text("utf-8"), name, value)
            old = server.tree()
            cpu_before = proctree.lifetime_cpu_s(old)
            saved = time.monotonic()
            edits.save(path, text, "in-place")
            requests = _new_code_everywhere(server, field_name, value, spec.processes)
            served = time.monotonic() - saved
            _quiet_end(server, result.idle_rate)
            now = server.tree()
            window = time.monotonic() - saved
            spent = proctree.lifetime_cpu_s(now) - cpu_before
            fresh = [
                stat
                for pid, stat in now.items()
                if pid not in old or old[pid].start_ticks != stat.start_ticks
            ]
            result.edits.append(
                EditCost(
                    served_s=served,
                    requests=requests,
                    cpu_s=spent - result.idle_rate * window - requests * result.request_cpu_s,
                    new_processes_cpu_s=proctree.lifetime_cpu_s({stat.pid: stat for stat in fresh}),
                )
            )
    except Exception as exc:  # noqa: BLE001 - reported in the table, the next server goes on
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
    return result


def table(results: list[CostResult]) -> list[str]:
    lines = [
        "| server | new code on every process, p50 | CPU per edit, p50 (spread) "
        "| of it in processes started after the save "
        "| the rest (processes running before it) | idle CPU "
        "| probe requests answered per edit, p50 (CPU each, taken out) | edits |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        edits_done = f"{len(result.edits)}" + (f"; then {result.error}" if result.error else "")
        if not result.edits:
            lines.append(f"| {result.label} | – | – | – | – | – | – | {edits_done} |")
            continue
        cpu = [edit.cpu_s for edit in result.edits]
        fresh = statistics.median(edit.new_processes_cpu_s for edit in result.edits)
        rest = statistics.median(edit.cpu_s - edit.new_processes_cpu_s for edit in result.edits)
        served = statistics.median(edit.served_s for edit in result.edits)
        requests = statistics.median(edit.requests for edit in result.edits)
        lines.append(
            f"| {result.label} | {served:.2f} s "
            f"| {statistics.median(cpu):.2f} s ({min(cpu):.2f}-{max(cpu):.2f} s) "
            f"| {fresh:.2f} s | {rest:.2f} s | {result.idle_rate * 100:.1f} % "
            f"| {requests:.0f} ({result.request_cpu_s * 1000:.1f} ms) | {edits_done} |"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=5, help="code edits per server (5)")
    parser.add_argument("--servers", default=DEFAULT_SERVERS, help="comma list of servers")
    parser.add_argument(
        "--file", choices=("views", "models"), default="views", help="the file edited (views)"
    )
    args = parser.parse_args(argv)
    keys = [key for key in args.servers.split(",") if key]
    unknown = [key for key in keys if key not in SERVERS]
    if unknown or args.edits < 1:
        parser.error(f"unknown servers {unknown}" if unknown else "--edits must be at least 1")
    python = Path(sys.executable)
    scratch = Path(tempfile.mkdtemp(prefix="wsgidev-cpucost-"))
    try:
        project = projects.make_large(scratch, python)
        imported = projects.time_import(project, python)
        paths = Paths(venv_bin=python.parent, scratch=scratch)
        results = []
        for key in keys:
            print(f"{key}...", file=sys.stderr, flush=True)
            results.append(measure(SERVERS[key], project, paths, args.edits, args.file == "models"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"Edits of the probe's {args.file}.py, {args.edits} per server.")
    print(
        f"The large site's import and first request in a fresh interpreter: "
        f"{imported.seconds:.2f} s ({imported.modules:,} modules).\n"
    )
    print("\n".join(table(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
