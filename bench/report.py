"""Turn results into markdown: one set of tables per project, the targets, and the run's context."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from bench.edits import SAVE_STYLES
from bench.projects import ImportTiming, Project
from bench.scenario import EditResult, ServerResult, Settings
from bench.servers import SERVERS

BEGIN_MARK = "<!-- bench:results:begin -->"
END_MARK = "<!-- bench:results:end -->"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _s(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def _latencies(edits: Sequence[EditResult]) -> list[float]:
    return [e.latency_s for e in edits if e.latency_s is not None]


def _p50(edits: Sequence[EditResult]) -> float | None:
    return percentile(_latencies(edits), 50)


def _missed(edits: Sequence[EditResult], skipped: int = 0) -> str:
    missed = sum(e.missed for e in edits)
    text = f"{missed} of {len(edits)}"
    return text + f" ({skipped} more skipped)" if skipped else text


def _missed_by_style(edits: Sequence[EditResult]) -> str:
    parts = []
    for style in SAVE_STYLES:
        mine = [e for e in edits if e.style == style]
        parts.append(f"{sum(e.missed for e in mine)}/{len(mine)}")
    return " · ".join(parts)


def _failures(result: ServerResult) -> str:
    total = sum(result.failures.values())
    text = f"{total} of {result.requests:,}"
    if total:
        kinds = ", ".join(f"{kind} {n}" for kind, n in result.failures.most_common())
        text += f" ({kinds})"
    return text


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


def project_section(
    project: Project, timing: ImportTiming, results: Sequence[ServerResult], settings: Settings
) -> str:
    """The tables for one project."""
    base = next((r for r in results if r.server == "runserver"), None)
    base_p50 = _p50(base.code) if base else None
    base_cpu = base.idle_cpu_s if base else None
    lines = [
        f"### {project.key}: {project.title}",
        "",
        f"App import + first request in a fresh interpreter: **{_s(timing.seconds)}**, "
        f"**{timing.modules:,} modules** in `sys.modules` (median of 3).",
        "",
        f"Reload of a `.py` edit, {settings.code_edits} edits under a {4}-client loop "
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
        lat = _latencies(r.code)
        lines.append(
            f"| {label} | {_s(percentile(lat, 50))} | {_s(percentile(lat, 90))} "
            f"| {_ratio(percentile(lat, 50), base_p50)} | {_missed(r.code, r.skipped_code_edits)} "
            f"| {_missed_by_style(r.code)} | {_failures(r)} |"
        )
    lines += [
        "",
        f"Idle CPU of the whole process tree over {settings.idle_s:.0f} s; template edits "
        f"({settings.template_edits}, each must show within {settings.template_deadline_s:.0f} s); "
        "size of a served process:",
        "",
        "| server | idle CPU | idle CPU vs runserver | template visible p50 | template missed "
        "| restarted on template edit | modules in a server process |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for r in results:
        if r.error and not r.code:
            continue
        lines.append(
            f"| {SERVERS[r.server].label} | {_cpu(r)} | {_ratio(r.idle_cpu_s, base_cpu)} "
            f"| {_s(_p50(r.templates))} | {_missed(r.templates, r.skipped_template_edits)} "
            f"| {_template_restart(r)} | {r.modules if r.modules is not None else '–'} |"
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
            lines.append(f"| {SERVERS[r.server].label} | – | – | – | {_s(_p50(r.code))} |")
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
            f"| {SERVERS[r.server].label} | {_s(detect)} | {_s(respawn)} | {_s(rest)} "
            f"| {_s(_p50(r.code))} |"
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


def targets_section(
    by_project: dict[str, tuple[Project, ImportTiming, list[ServerResult]]],
) -> str:
    """wsgidev's targets, each checked against this run's numbers."""
    rows = []
    for key, (_, timing, results) in by_project.items():
        ours = next((r for r in results if r.server == "wsgidev"), None)
        base = next((r for r in results if r.server == "runserver"), None)
        if ours is None:
            continue
        p50 = _p50(ours.code)
        if base is not None:
            base_p50 = _p50(base.code)
            ok = p50 is not None and base_p50 is not None and p50 <= base_p50 / 2
            rows.append((key, "reload p50 ≤ ½ runserver's", f"{_s(p50)} vs {_s(base_p50)}", ok))
        if key == "large":
            limit = timing.seconds + 0.6
            ok = p50 is not None and p50 <= limit
            rows.append((key, "reload p50 ≤ app import + 0.6 s", f"{_s(p50)} vs {_s(limit)}", ok))
        missed = sum(e.missed for e in ours.code) + ours.skipped_code_edits
        failed = sum(ours.failures.values())
        rows.append((key, "0 missed edits, 0 failed requests", f"{missed} missed, {failed} failed",
                     missed == 0 and failed == 0 and bool(ours.code)))  # fmt: skip
        if key == "large" and base is not None:
            ok = (
                ours.idle_cpu_s is not None
                and base.idle_cpu_s is not None
                and ours.idle_cpu_s <= base.idle_cpu_s / 20
            )
            value = f"{_cpu(ours)} vs {_cpu(base)}"
            rows.append((key, "idle CPU ≤ 1/20 of runserver's", value, ok))
        worst = max(_latencies(ours.templates), default=None)
        restarted = any(e.restarted for e in ours.templates)
        ok = (
            bool(ours.templates)
            and not any(e.missed for e in ours.templates)
            and worst is not None
            and worst <= 0.1
            and not restarted
        )
        value = f"worst {_s(worst)}, restart: {_template_restart(ours)}"
        rows.append((key, "template edit visible ≤ 100 ms, no restart", value, ok))
    lines = ["| project | target | measured | met |", "|---|---|---|---|"]
    lines += [f"| {p} | {t} | {m} | {'yes' if ok else '**no**'} |" for p, t, m, ok in rows]
    return "\n".join(lines) + "\n"


def write_docs(doc: Path, results_markdown: str) -> None:
    """Replace the results between the markers in docs/benchmarks.md (append if absent)."""
    block = f"{BEGIN_MARK}\n{results_markdown.rstrip()}\n{END_MARK}"
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(BEGIN_MARK) + ".*?" + re.escape(END_MARK), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.write_text(text, encoding="utf-8")
