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

To bring the new code in, every request must reach it: after the first answer with the new
value, waves of 8 concurrent requests go out until each of the server's processes has answered
with it (mod_wsgi-express's daemons import the app at their first request), the same for every
server. Prints a markdown table; writes nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script: make the repository importable so `bench` is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import edits, proctree, projects  # noqa: E402
from bench.load import PROBE_PATH, get, parse_probe  # noqa: E402
from bench.scenario import reset_probe, wait_quiet, warm  # noqa: E402
from bench.servers import SERVERS, Paths, ServerProcess, ServerSpec  # noqa: E402

DEFAULT_SERVERS = "wsgidev,wsgidev-process,express,gunicorn,runserver"
IDLE_S = 5.0
# An edit's window ends at the first second in which the tree used under this much CPU above
# its idle rate (runserver's and mod_wsgi-express's pollers use some all the time).
QUIET_CPU_S = 0.03
QUIET_LIMIT_S = 30.0
NEW_CODE_DEADLINE_S = 30.0
WAVE = 8
POLL_S = 0.02


@dataclass
class EditCost:
    """One edit: seconds from the save until the tree was quiet, and CPU seconds spent."""

    window_s: float
    served_s: float  # until every process answered with the new code
    cpu_s: float
    new_processes_cpu_s: float  # of it, in processes started after the save


@dataclass
class CostResult:
    server: str
    label: str
    idle_rate: float = 0.0  # CPU seconds per second, idle
    edits: list[EditCost] = field(default_factory=list)
    error: str | None = None


def _new_code_everywhere(
    server: ServerProcess, field_name: str, value: str, processes: int
) -> None:
    """Send requests until each of the server's processes has answered with value."""
    deadline = time.monotonic() + NEW_CODE_DEADLINE_S
    answered: set[str] = set()
    with concurrent.futures.ThreadPoolExecutor(WAVE) as pool:
        while time.monotonic() < deadline:
            wave = [pool.submit(get, server.port, PROBE_PATH) for _ in range(WAVE)]
            for future in wave:
                try:
                    status, body = future.result()
                except OSError:
                    continue
                fields = parse_probe(body)
                if status == 200 and fields.get(field_name) == value:
                    answered.add(fields.get("pid", ""))
            if len(answered) >= processes:
                return
            time.sleep(POLL_S)
    raise RuntimeError(f"{value} not served by {processes} process(es) in {NEW_CODE_DEADLINE_S} s")


def _quiet_end(server: ServerProcess, idle_rate: float) -> float:
    """Wait for a second in which the tree used under QUIET_CPU_S more than idle; when that
    second began."""
    deadline = time.monotonic() + QUIET_LIMIT_S
    while time.monotonic() < deadline:
        began = time.monotonic()
        before = proctree.lifetime_cpu_s(server.tree())
        time.sleep(1.0)
        if proctree.lifetime_cpu_s(server.tree()) - before < idle_rate + QUIET_CPU_S:
            return began
    raise RuntimeError(f"the tree was not quiet within {QUIET_LIMIT_S:.0f} s")


def measure(
    spec: ServerSpec, project: projects.Project, paths: Paths, count: int, models: bool
) -> CostResult:
    """One server's edits; the server is stopped whatever happens."""
    result = CostResult(server=spec.key, label=spec.label)
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
        path = project.models_path if models else project.views_path
        name, field_name = ("MODEL_VALUE", "model") if models else ("VALUE", "value")
        for n in range(1, count + 1):
            value = f"c-{n:03d}"
            text = edits.with_assignment(path.read_text("utf-8"), name, value)
            old = server.tree()
            cpu_before = proctree.lifetime_cpu_s(old)
            saved = time.monotonic()
            edits.save(path, text, "in-place")
            _new_code_everywhere(server, field_name, value, spec.processes)
            served = time.monotonic() - saved
            ended = _quiet_end(server, result.idle_rate)
            now = server.tree()
            spent = proctree.lifetime_cpu_s(now) - cpu_before
            window = ended - saved
            fresh = [
                stat
                for pid, stat in now.items()
                if pid not in old or old[pid].start_ticks != stat.start_ticks
            ]
            result.edits.append(
                EditCost(
                    window_s=window,
                    served_s=served,
                    cpu_s=spent - result.idle_rate * window,
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
        "| the rest (processes running before it) | idle CPU | edits |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        if result.error or not result.edits:
            lines.append(f"| {result.label} | – | – | – | – | – | {result.error or 'none'} |")
            continue
        cpu = [edit.cpu_s for edit in result.edits]
        fresh = statistics.median(edit.new_processes_cpu_s for edit in result.edits)
        total = statistics.median(cpu)
        served = statistics.median(edit.served_s for edit in result.edits)
        lines.append(
            f"| {result.label} | {served:.2f} s | {total:.2f} s ({min(cpu):.2f}-{max(cpu):.2f} s) | {fresh:.2f} s "
            f"| {total - fresh:.2f} s | {result.idle_rate * 100:.1f} % | {len(cpu)} |"
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
