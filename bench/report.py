"""Turn results into markdown: one set of tables per project, the targets, and the run's context."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import report_browser, report_rapid
from bench.browser import BrowserResult
from bench.edits import SAVE_STYLES
from bench.figures import failures, latencies, missed, p50, percentile, ratio, seconds
from bench.projects import Floor, ImportTiming, Project
from bench.rapid import RapidResult, RapidSettings
from bench.scenario import CLIENTS, EditResult, ServerResult, Settings
from bench.servers import SERVERS


@dataclass(frozen=True, kw_only=True)
class ProjectResults:
    """One project's results: the standard scenario per server, and the rapid one if it ran."""

    project: Project
    timing: ImportTiming
    standard: list[ServerResult] = field(default_factory=list)
    rapid: list[RapidResult] = field(default_factory=list)
    browser: list[BrowserResult] = field(default_factory=list)
    floor: Floor | None = None  # how fast a code edit could show at best (with the rapid one)


def _missed_by_style(edits: Sequence[EditResult]) -> str:
    parts = []
    for style in SAVE_STYLES:
        mine = [e for e in edits if e.style == style]
        parts.append(f"{sum(e.missed for e in mine)}/{len(mine)}")
    return " · ".join(parts)


def _cpu(result: ServerResult) -> str:
    if result.idle_cpu_s is None:
        return "–"
    percent = 100 * result.idle_cpu_s / result.idle_s
    return f"{result.idle_cpu_s:.2f} s ({percent:.1f} %)"


def _template_restart(result: ServerResult) -> str:
    if not result.templates:
        return "–"
    restarted = sum(e.restarted for e in result.templates)
    return "no" if restarted == 0 else f"yes ({restarted} of {len(result.templates)})"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def project_section(
    outcome: ProjectResults, settings: Settings, rapid_settings: RapidSettings
) -> str:
    """The tables for one project: the standard scenario's, then the rapid one's."""
    project, timing = outcome.project, outcome.timing
    lines = [
        f"### {project.key}: {project.title}",
        "",
        f"App import + first request in a fresh interpreter: **{seconds(timing.seconds)}**, "
        f"**{timing.modules:,} modules** in `sys.modules` (median of 3).",
        "",
    ]
    if outcome.standard:
        lines.append(_standard_tables(outcome.standard, settings))
    if outcome.rapid:
        lines.append(report_rapid.rapid_tables(outcome.rapid, rapid_settings, outcome.floor))
    if outcome.browser:
        lines.append(report_browser.browser_tables(outcome.browser, project.key))
    return "\n".join(lines)


def _standard_tables(results: Sequence[ServerResult], settings: Settings) -> str:
    base = next((r for r in results if r.server == "runserver"), None)
    base_p50 = p50(base.code) if base else None
    base_cpu = base.idle_cpu_s if base else None
    lines = [
        f"Reload of a `.py` edit, {settings.code_edits} edits under a {CLIENTS}-client loop "
        f"(styles rotate: {', '.join(SAVE_STYLES)}):",
        "",
        "| server | reload p50 | reload p90 | p50 vs runserver | missed edits | missed by style "
        "(in-place · rename · delete-create · old-mtime) | failed requests |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for r in results:
        label = SERVERS[r.server].label
        if r.error and not r.code:
            lines.append(f"| {label} | failed: {r.error} | | | | | |")
            continue
        lat = latencies(r.code)
        lines.append(
            f"| {label} | {seconds(percentile(lat, 50))} | {seconds(percentile(lat, 90))} "
            f"| {ratio(percentile(lat, 50), base_p50)} "
            f"| {missed(r.code, r.skipped_code_edits)} | {_missed_by_style(r.code)} "
            f"| {failures(r.failures, r.requests)} |"
        )
    lines += [
        "",
        f"Idle CPU of the whole process tree over {settings.idle_s:.0f} s; template edits "
        f"({settings.template_edits}, each must show within {settings.template_deadline_s:.0f} s); "
        "size of a served process (watched directories: the folders of its modules plus the "
        "template and locale folders Django's autoreloader registers, from `/bench/dirs`):",
        "",
        "| server | idle CPU | idle CPU vs runserver | template visible p50 | template missed "
        "| restarted on template edit | modules in a server process | watched directories |",
        "|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in results:
        if r.error and not r.code:
            continue
        lines.append(
            f"| {SERVERS[r.server].label} | {_cpu(r)} | {ratio(r.idle_cpu_s, base_cpu)} "
            f"| {seconds(p50(r.templates))} | {missed(r.templates, r.skipped_template_edits)} "
            f"| {_template_restart(r)} | {_count(r.modules)} | {_count(r.watched.get('dirs'))} |"
        )
    lines += [
        "",
        "Where a code reload's time goes, p50 of each part over the edits that restarted a "
        "process (exits and starts seen by polling `/proc` every 20 ms; a process counts as "
        "exited once it is a zombie):",
        "",
        "| server | save → first process exits | exit → new process | new process → every "
        "client on new code | reload p50 |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        if r.error and not r.code:
            continue
        if SERVERS[r.server].hands_over:
            lines.append(f"| {SERVERS[r.server].label} | – | – | – | {seconds(p50(r.code))} |")
            continue
        parts = [e for e in r.code if e.detect_s is not None and e.respawn_s is not None]
        detect = percentile([e.detect_s for e in parts if e.detect_s is not None], 50)
        respawn = percentile([e.respawn_s for e in parts if e.respawn_s is not None], 50)
        rest = percentile(
            [
                e.latency_s - e.detect_s - e.respawn_s
                for e in parts
                if e.latency_s is not None and e.detect_s is not None and e.respawn_s is not None
            ],
            50,
        )
        lines.append(
            f"| {SERVERS[r.server].label} | {seconds(detect)} | {seconds(respawn)} "
            f"| {seconds(rest)} | {seconds(p50(r.code))} |"
        )
    notes = [
        f"- {SERVERS[r.server].label}: a hand-over; the processes that serve the new code were "
        "running before the save, and the old ones exit after it, so these parts do not apply."
        for r in results
        if SERVERS[r.server].hands_over and r.code
    ]
    notes += [
        f"- {SERVERS[r.server].label}: {r.error} (log: `{r.log_path}`)" for r in results if r.error
    ]
    notes += [
        f"- {SERVERS[r.server].label}: processes left after stop: {r.survivors}"
        for r in results
        if r.survivors
    ]
    notes += [
        f"- {SERVERS[r.server].label}: {r.idle_exits} process(es) exited during the idle window"
        for r in results
        if r.idle_exits
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def targets_section(by_project: dict[str, ProjectResults]) -> str:
    """wsgidev's targets, each checked against this run's numbers."""
    rows: list[tuple[str, str, str, bool]] = []
    for key, outcome in by_project.items():
        rows += [(key, *row) for row in _standard_targets(key, outcome)]
        rows += [(key, *row) for row in report_rapid.rapid_targets(outcome.rapid)]
        rows += [(key, *row) for row in report_browser.browser_targets(outcome.browser, key)]
    lines = ["| project | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {p} | {t} | {m} | {'yes' if ok else '**no**'} |" for p, t, m, ok in rows]
    return "\n".join(lines) + "\n"


def _standard_targets(key: str, outcome: ProjectResults) -> list[tuple[str, str, bool]]:
    ours = next((r for r in outcome.standard if r.server == "wsgidev"), None)
    base = next((r for r in outcome.standard if r.server == "runserver"), None)
    if ours is None:
        return []
    rows = []
    ours_p50 = p50(ours.code)
    if base is not None:
        base_p50 = p50(base.code)
        ok = ours_p50 is not None and base_p50 is not None and ours_p50 <= base_p50 / 2
        rows.append(
            ("reload p50 ≤ ½ runserver's", f"{seconds(ours_p50)} vs {seconds(base_p50)}", ok)
        )
    if key == "large":
        limit = outcome.timing.seconds + 0.6
        ok = ours_p50 is not None and ours_p50 <= limit
        value = f"{seconds(ours_p50)} vs {seconds(limit)}"
        rows.append(("reload p50 ≤ app import + 0.6 s", value, ok))
    missed_edits = sum(e.missed for e in ours.code) + ours.skipped_code_edits
    failed = sum(ours.failures.values())
    ok = missed_edits == 0 and failed == 0 and bool(ours.code)
    rows.append(
        ("0 missed edits, 0 failed requests", f"{missed_edits} missed, {failed} failed", ok)
    )
    if key == "large" and base is not None:
        ok = (
            ours.idle_cpu_s is not None
            and base.idle_cpu_s is not None
            and ours.idle_cpu_s <= base.idle_cpu_s / 20
        )
        rows.append(("idle CPU ≤ 1/20 of runserver's", f"{_cpu(ours)} vs {_cpu(base)}", ok))
    worst = max(latencies(ours.templates), default=None)
    restarted = any(e.restarted for e in ours.templates)
    ok = (
        bool(ours.templates)
        and not any(e.missed for e in ours.templates)
        and worst is not None
        and worst <= 0.1
        and not restarted
    )
    value = f"worst {seconds(worst)}, restart: {_template_restart(ours)}"
    rows.append(("template edit visible ≤ 100 ms, no restart", value, ok))
    return rows


def write_docs(doc: Path, results_markdown: str, section: str = "results") -> None:
    """Replace a section between its markers in docs/benchmarks.md (append if absent):
    `results` (bench/run.py), `devtools`, `services` (the scripts of those names)."""
    begin, end = f"<!-- bench:{section}:begin -->", f"<!-- bench:{section}:end -->"
    block = f"{begin}\n{results_markdown.rstrip()}\n{end}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(begin) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")
