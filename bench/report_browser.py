"""The browser scenario's table and targets (see bench/browser.py)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.browser import EDITS_PER_KIND, KINDS, BrowserResult
from bench.figures import percentile, ratio, seconds

BASE = "runserver-dbr"
OURS = "wsgidev-live"
# Issue 10's targets on the small project: save -> refreshed page loaded, p50.
SMALL_TARGETS_S = {"view": 0.300, "template": 0.200, "css": 0.150}


def _times(result: BrowserResult, kind: str) -> list[float]:
    return [e.latency_s for e in result.edits if e.kind == kind and e.latency_s is not None]


def _p50(result: BrowserResult | None, kind: str) -> float | None:
    return None if result is None else percentile(_times(result, kind), 50)


def browser_tables(results: Sequence[BrowserResult], project_key: str) -> str:
    """Save -> refreshed page per contender and kind of edit, with the ratio to runserver's."""
    base = next((r for r in results if r.key == BASE), None)
    lines = [
        f"#### Browser: save → refreshed page loaded (headless chromium, {EDITS_PER_KIND[project_key]} "
        "edits of each kind)",
        "",
        "| contender | edit | p50 | p90 | vs runserver + django-browser-reload | seen | "
        "refreshes showing old code | full reloads |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        if result.error and not result.edits:
            lines.append(f"| {result.label} | – | error: {result.error} | | | | | |")
            continue
        for kind in KINDS:
            mine = [e for e in result.edits if e.kind == kind]
            times = _times(result, kind)
            full = sum(e.full_reloads for e in mine)
            lines.append(
                f"| {result.label} | {kind} | {seconds(percentile(times, 50))} | "
                f"{seconds(percentile(times, 90))} | {ratio(percentile(times, 50), _p50(base, kind))} | "
                f"{len(times)}/{len(mine)} | {sum(e.stale_loads for e in mine)} | {full} |"
            )
    lines += [
        "",
        "Time from the save (`time.time()`) to the refreshed page's `load` event showing the new "
        "text (`Date.now()` in the page, same clock), or for `css` to the heading's new colour; "
        "`full reloads` counts page loads after the save (a stylesheet swapped in place needs "
        "none). django-browser-reload reloads the page for any static file.",
        "",
    ]
    return "\n".join(lines)


def browser_targets(
    results: Sequence[BrowserResult], project_key: str
) -> list[tuple[str, str, bool]]:
    """Issue 10's targets for this project."""
    ours = next((r for r in results if r.key == OURS), None)
    base = next((r for r in results if r.key == BASE), None)
    if ours is None:
        return []
    rows = []
    if project_key == "small":
        for kind, limit in SMALL_TARGETS_S.items():
            value = _p50(ours, kind)
            ok = value is not None and value <= limit
            rows.append(
                (f"browser: {kind} edit → loaded p50 ≤ {seconds(limit)}", seconds(value), ok)
            )
        css_reloads = sum(e.full_reloads for e in ours.edits if e.kind == "css")
        rows.append(
            ("browser: css edit with no full reload", f"{css_reloads} reloads", css_reloads == 0)
        )
    stale = sum(e.stale_loads for e in ours.edits)
    missed = sum(e.latency_s is None for e in ours.edits)
    rows.append(
        (
            "browser: 0 refreshes showing old code, 0 missed",
            f"{stale} stale, {missed} missed",
            stale == 0 and missed == 0 and bool(ours.edits),
        )
    )
    if base is not None:
        faster = [
            kind
            for kind in KINDS
            if (mine := _p50(ours, kind)) is not None
            and ((theirs := _p50(base, kind)) is None or mine < theirs)
        ]
        value = ", ".join(
            f"{kind} {seconds(_p50(ours, kind))} vs {seconds(_p50(base, kind))}" for kind in KINDS
        )
        rows.append(
            (
                "browser: faster than runserver + django-browser-reload",
                value,
                len(faster) == len(KINDS),
            )
        )
    return rows
