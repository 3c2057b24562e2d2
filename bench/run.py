"""Reload benchmark: wsgidev, runserver, mod_wsgi-express and gunicorn side by side.

    .venv/bin/python bench/run.py [--quick] [--scenarios standard,rapid]

Needs `pip install -e '.[bench]'`; installs nothing itself. Builds a small and a large Django
project in a temporary folder, serves each with every server on a free loopback port (the
standard scenario), then the large one again under rapid edits (the rapid scenario), and
prints markdown tables (a full run also writes them into docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

# Run as a script: make the repository importable so `bench` is a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import figures, projects, report  # noqa: E402
from bench.browser import CONTENDERS, BrowserResult, run_browser  # noqa: E402
from bench.rapid import RapidResult, RapidSettings, run_rapid  # noqa: E402
from bench.scenario import ServerResult, Settings, run_server  # noqa: E402
from bench.servers import SERVERS, Paths  # noqa: E402
from bench.tls import run_tls, tls_table  # noqa: E402

DOC = projects.REPO / "docs" / "benchmarks.md"
# A template edit shows within the servers' one-second poll or not at all (a cached template
# loader with no reset): 5 s is plenty, and every miss costs its whole deadline.
FULL = Settings(
    code_edits=12, template_edits=3, idle_s=30.0, deadline_s=15.0, template_deadline_s=5.0
)
# --quick: one edit per save style, shorter deadlines (a miss costs its whole deadline).
QUICK = Settings(
    code_edits=4, template_edits=1, idle_s=10.0, deadline_s=6.0, template_deadline_s=3.0
)
# Rapid edits: 12 code edits and 3 models.py edits; a large project's restart under a load
# that never pauses can take several seconds, so 15 s before an edit counts as missed.
RAPID_FULL = RapidSettings(
    code_edits=12, model_edits=3, deadline_s=15.0, cold_starts=5, cold_starts_no_pyc=3
)
RAPID_QUICK = RapidSettings(
    code_edits=4, model_edits=1, deadline_s=10.0, cold_starts=2, cold_starts_no_pyc=1
)
PROJECT_MAKERS = {"small": projects.make_small, "large": projects.make_large}
SCENARIOS = ("standard", "rapid", "browser", "tls")
# The HTTPS throughput scenario runs on the small project: it measures the protocols, not the app.
TLS_PROJECTS = ("small",)
# The rapid scenario runs on the large project only: that is where reloads are slow.
RAPID_PROJECTS = ("large",)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer edits, 10 s idle (~12 min)")
    parser.add_argument("--projects", default="small,large", help="comma list: small,large")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma list of servers")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma list: standard (every project), rapid (the large project)",
    )
    parser.add_argument("--edits", type=int, help="code edits per server (default 12, quick 4)")
    parser.add_argument(
        "--write",
        action=argparse.BooleanOptionalAction,
        help="write docs/benchmarks.md (default: on for a full run of everything)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the projects, logs and raw results.json"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every edit's raw numbers here")
    return parser.parse_args()


def machine_lines(command: str) -> list[str]:
    """The context every result needs: command, date, machine, versions."""
    cpu = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for dist in ("wsgidev", "Django", "wagtail", "gunicorn", "mod_wsgi"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} (not installed)")
    from wsgidev.apache import apache_version, find_apache

    httpd = find_apache()  # the Apache wsgidev runs, with its library path (a pip-built one)
    apache = f"Apache {apache_version(httpd.httpd, httpd.environ())} ({httpd.httpd})"
    revision = _first_line(["git", "-C", str(projects.REPO), "describe", "--always", "--dirty"])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- Command: `{command}`",
        f"- Date: {now}; repository at `{revision}`",
        f"- Machine: {os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"{'root' if os.geteuid() == 0 else 'non-root'}",
        f"- Python {platform.python_version()}; {', '.join(versions)}; {apache}",
    ]


def _wsgidev_fingerprint() -> str:
    """A hash of wsgidev's code and templates, to tell whether they changed during the run."""
    digest = hashlib.sha256()
    for folder in ("wsgidev", "templates"):
        for path in sorted((projects.REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".j2"):
                digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _first_line(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    lines = out.stdout.strip().splitlines()
    return lines[0] if lines else "?"


def main() -> int:
    args = parse_args()
    # Started in the background by a shell, this process ignores SIGINT and every server would
    # inherit that: runserver would then ignore the SIGINT that stops it. Children get the
    # default action from a Python handler at exec.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = QUICK if args.quick else FULL
    rapid_settings = RAPID_QUICK if args.quick else RAPID_FULL
    if args.edits:
        settings = dataclasses.replace(settings, code_edits=args.edits)
        rapid_settings = dataclasses.replace(rapid_settings, code_edits=args.edits)
    project_keys = [k for k in args.projects.split(",") if k]
    server_keys = [k for k in args.servers.split(",") if k]
    scenario_keys = [k for k in args.scenarios.split(",") if k]
    unknown = (
        [k for k in project_keys if k not in PROJECT_MAKERS]
        + [k for k in server_keys if k not in SERVERS]
        + [k for k in scenario_keys if k not in SCENARIOS]
    )
    if unknown:
        sys.exit(f"unknown project, server or scenario: {', '.join(unknown)}")
    if scenario_keys == ["rapid"] and not set(project_keys) & set(RAPID_PROJECTS):
        sys.exit(f"the rapid scenario runs on {', '.join(RAPID_PROJECTS)} only")
    complete = (
        set(project_keys) == set(PROJECT_MAKERS)
        and set(server_keys) == set(SERVERS)
        and set(scenario_keys) == set(SCENARIOS)
    )
    write = args.write if args.write is not None else complete and not args.quick

    python = Path(sys.executable)
    missing = [
        n
        for n in ("wsgidev", "gunicorn", "mod_wsgi-express", "wagtail")
        if not (python.parent / n).exists()
    ]
    if missing:
        sys.exit(f"missing in {python.parent}: {', '.join(missing)}; run pip install -e '.[bench]'")
    command = " ".join(["python bench/run.py", *sys.argv[1:]])
    code_at_start = _wsgidev_fingerprint()
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix="wsgidev-bench-"))
    print(f"scratch folder: {scratch}", file=sys.stderr)
    sections = []
    by_project: dict[str, report.ProjectResults] = {}
    try:
        paths = Paths(venv_bin=python.parent, scratch=scratch)
        for key in project_keys:
            rapid = "rapid" in scenario_keys and key in RAPID_PROJECTS
            browser = "browser" in scenario_keys
            tls = "tls" in scenario_keys and key in TLS_PROJECTS
            if "standard" not in scenario_keys and not rapid and not browser and not tls:
                continue
            _progress(started, f"making the {key} project")
            project = PROJECT_MAKERS[key](scratch, python)
            timing = projects.time_import(project, python)
            _progress(started, f"{key}: import {timing.seconds:.2f} s, {timing.modules} modules")
            results: list[ServerResult] = []
            rapid_results: list[RapidResult] = []
            floor = None
            if rapid and any(SERVERS[k].prints_reloads for k in server_keys):
                views = project.views_path.relative_to(project.path).with_suffix("")
                try:
                    floor = projects.time_floor(project, python, ".".join(views.parts))
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    _progress(started, f"{key}: no floor: {exc}")  # the servers run all the same
                else:
                    _progress(
                        started,
                        f"{key}: floor {floor.standby_s:.3f} s (warm standby), "
                        f"{floor.in_place_s:.3f} s (in place: {', '.join(floor.in_place_modules)})",
                    )
            for server_key in server_keys if "standard" in scenario_keys else ():
                _progress(started, f"{key}: {server_key}")
                result = run_server(
                    SERVERS[server_key],
                    project,
                    paths,
                    settings,
                    scratch,
                    _progress_for(started, f"{key}: {server_key}"),
                )
                results.append(result)
                _progress(started, f"{key}: {server_key} done: {_summary(result)}")
            for server_key in server_keys if rapid else ():
                _progress(started, f"{key} rapid: {server_key}")
                rapid_result = run_rapid(
                    SERVERS[server_key],
                    project,
                    paths,
                    rapid_settings,
                    scratch,
                    _progress_for(started, f"{key} rapid: {server_key}"),
                )
                rapid_results.append(rapid_result)
                _progress(
                    started, f"{key} rapid: {server_key} done: {_rapid_summary(rapid_result)}"
                )
            browser_results: list[BrowserResult] = []
            for label, spec in CONTENDERS.items() if browser else ():
                _progress(started, f"{key} browser: {label}")
                browser_results.append(
                    run_browser(
                        spec, label, project, paths, scratch,
                        _progress_for(started, f"{key} browser: {label}"),
                    )
                )  # fmt: skip
            outcome = report.ProjectResults(
                project=project,
                timing=timing,
                standard=results,
                rapid=rapid_results,
                browser=browser_results,
                floor=floor,
            )
            by_project[key] = outcome
            sections.append(report.project_section(outcome, settings, rapid_settings))
            if tls:
                _progress(started, f"{key} tls")
                tls_result = run_tls(project, paths, scratch, _progress_for(started, f"{key} tls"))
                sections.append(tls_table(tls_result))
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.monotonic() - started
    changed = _wsgidev_fingerprint() != code_at_start
    if changed:
        _progress(started, "warning: wsgidev's code changed during the run")
    markdown = "\n".join(
        [
            "## Results",
            "",
            *machine_lines(command),
            f"- Run took {elapsed / 60:.1f} min."
            + (
                " **wsgidev's code changed during the run: its rows mix versions.**"
                if changed
                else ""
            ),
            "",
            *sections,
            "### Targets",
            "",
            report.targets_section(by_project),
        ]
    )
    print(markdown)
    raw = {
        key: {
            "standard": [_raw(r) for r in outcome.standard],
            "rapid": [_raw(r) for r in outcome.rapid],
            "browser": [dataclasses.asdict(r) for r in outcome.browser],
        }
        for key, outcome in by_project.items()
    }
    if args.json:
        Path(args.json).write_text(json.dumps(raw, indent=1), encoding="utf-8")
    if args.keep:
        (scratch / "results.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")
        print(f"kept {scratch} (server logs, projects, results.json)", file=sys.stderr)
    if write:
        report.write_docs(DOC, markdown)
        print(f"written into {DOC}", file=sys.stderr)
    return 0


def _progress(started: float, message: str) -> None:
    print(f"[{time.monotonic() - started:6.1f} s] {message}", file=sys.stderr, flush=True)


def _raw(result: ServerResult | RapidResult) -> dict[str, object]:
    # asdict() would rebuild the Counter from (key, count) pairs, counting the pairs.
    raw = dataclasses.asdict(dataclasses.replace(result, failures=Counter()))
    raw["failures"] = dict(result.failures)
    return raw


def _progress_for(started: float, prefix: str) -> Callable[[str], None]:
    return lambda message: _progress(started, f"{prefix}: {message}")


def _rapid_summary(result: RapidResult) -> str:
    if result.error and not result.edits:
        return f"error: {result.error}"
    code = [e.latency_s for e in result.edits if e.kind == "code" and e.latency_s is not None]
    model = [e.latency_s for e in result.edits if e.kind == "model" and e.latency_s is not None]
    p50, model_p50 = figures.percentile(code, 50), figures.percentile(model, 50)
    missed = sum(e.missed for e in result.edits)
    return (
        f"p50 {p50 if p50 is None else round(p50, 3)} s, models.py p50 "
        f"{model_p50 if model_p50 is None else round(model_p50, 3)} s, missed {missed}/"
        f"{len(result.edits)}, failed {sum(result.failures.values())}/{result.requests}, "
        f"threads {result.threads_max}, PSS {result.pss_kb} kB, stop {result.stop_s}"
        + (f", error {result.error}" if result.error else "")
    )


def _summary(result: ServerResult) -> str:
    if result.error and not result.code:
        return f"error: {result.error}"
    latencies = [e.latency_s for e in result.code if e.latency_s is not None]
    p50 = figures.percentile(latencies, 50)
    missed = sum(e.missed for e in result.code)
    return (
        f"p50 {p50 if p50 is None else round(p50, 3)} s, missed {missed}/{len(result.code)}, "
        f"failed {sum(result.failures.values())}/{result.requests}, idle cpu {result.idle_cpu_s}"
        + (f", error {result.error}" if result.error else "")
    )


if __name__ == "__main__":
    sys.exit(main())
