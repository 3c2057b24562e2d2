"""The rapid scenario's tables and targets (bench/rapid.py measures them)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.figures import failures, latencies, megabytes, missed, p50, percentile, ratio, seconds
from bench.projects import Floor
from bench.rapid import NEXT_SAVE_AFTER_S, STYLES, RapidResult, RapidSettings
from bench.scenario import CLIENTS, EditResult
from bench.servers import SERVERS, THREADS

PRINTED_TOLERANCE_S = 0.2
THREADS_LIMIT = THREADS + 10
PSS_LIMITS = {
    "wsgidev": 2.5,
    "wsgidev-2standbys": 2.5,
    "wsgidev-process": 1.2,
}  # times mod_wsgi-express's tree
STOP_LIMIT_S = 1.0  # from Ctrl-C until every process of the tree has exited
COLD_START_VS_EXPRESS = 0.8  # issue 22: wsgidev's cold start p50, times mod_wsgi-express's
# Issue 22: wsgidev's rapid-edit p50 and models.py p50, times the best peer's; its tree's PSS,
# times mod_wsgi-express's.
RAPID_VS_BEST_PEER = 0.33
MODELS_VS_BEST_PEER = 0.5
PSS_VS_EXPRESS = 2.0


def _code(result: RapidResult) -> list[EditResult]:
    return [e for e in result.edits if e.kind == "code"]


def _models(result: RapidResult) -> list[EditResult]:
    return [e for e in result.edits if e.kind == "model"]


def _printed(result: RapidResult) -> tuple[float | None, int, int, int]:
    """wsgidev's "Reloaded in" figures against the clients: the largest difference over the
    edits with one line, and how many edits had one line, none, more than one."""
    one = [e for e in result.edits if e.printed_lines == 1]
    differences = [
        abs(e.latency_s - e.printed_s)
        for e in result.edits
        if e.latency_s is not None and e.printed_s is not None
    ]
    none = sum(e.printed_lines == 0 for e in result.edits)
    many = sum(e.printed_lines > 1 for e in result.edits)
    return max(differences, default=None), len(one), none, many


def _by_kind(result: RapidResult) -> str:
    parts = []
    for kind in result.memory:
        count = f" ({kind.processes})" if kind.processes > 1 else ""
        parts.append(f"{kind.kind}{count} {megabytes(kind.pss_kb)}")
    return " · ".join(parts) or "–"


def rapid_tables(
    results: Sequence[RapidResult], settings: RapidSettings, floor: Floor | None = None
) -> str:
    """The rapid scenario's tables: reloads, memory and stop, wsgidev's own figures, and
    where its reload time went against the floor."""
    base = next((r for r in results if r.server == "runserver"), None)
    base_p50 = p50(_code(base)) if base else None
    express = next((r for r in results if r.server == "express"), None)
    express_kb = express.pss_kb if express else None
    lines = [
        f"Rapid edits: {CLIENTS} clients with no pause between requests; {settings.code_edits} "
        f"code edits ({' and '.join(STYLES)} saves alternating) and {settings.model_edits} "
        f"`models.py` edit{'s' if settings.model_edits != 1 else ''} (of a module "
        f"`django.setup()` imports), each saved {NEXT_SAVE_AFTER_S} s after the "
        f"previous one reached every client; an edit not on every client within "
        f"{settings.deadline_s:.0f} s is missed:",
        "",
        "| server | reload p50 | reload p90 | p50 vs runserver | `models.py` p50 | missed edits "
        "| failed requests | threads in a serving process | stop after Ctrl-C |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in results:
        label = SERVERS[r.server].label
        if r.error and not r.edits:
            lines.append(f"| {label} | failed: {r.error} | | | | | | | |")
            continue
        lat = latencies(_code(r))
        lines.append(
            f"| {label} | {seconds(percentile(lat, 50))} | {seconds(percentile(lat, 90))} "
            f"| {ratio(percentile(lat, 50), base_p50)} | {seconds(p50(_models(r)))} "
            f"| {missed(r.edits, r.skipped_edits)} | {failures(r.failures, r.requests)} "
            f"| {r.threads_max if r.threads_max is not None else '–'} | {seconds(r.stop_s)} |"
        )
    lines += [
        "",
        "Memory after the edits, once the tree was quiet: PSS (`/proc/<pid>/smaps_rollup`; "
        "shared pages split among the processes that map them), by kind of process "
        "(count in brackets):",
        "",
        "| server | tree PSS | vs mod_wsgi-express | by kind |",
        "|---|---:|---:|---|",
    ]
    for r in results:
        if r.error and not r.edits:
            continue
        lines.append(
            f"| {SERVERS[r.server].label} | {megabytes(r.pss_kb)} "
            f"| {ratio(r.pss_kb, express_kb)} | {_by_kind(r)} |"
        )
    if any(r.cold.seconds or r.cold.seconds_no_pyc for r in results):
        lines += ["", *_cold_start_table(results, settings)]
    ours = [r for r in results if SERVERS[r.server].prints_reloads and r.edits]
    if ours:
        lines += [
            "",
            "wsgidev's own `Reloaded in X s` line against the clients, per edit (the lines "
            "printed after a save and before the next one):",
            "",
            "| server | largest difference from the clients' latency | edits with one line "
            "| with none | with more than one |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in ours:
            worst, one, none, many = _printed(r)
            lines.append(
                f"| {SERVERS[r.server].label} | {seconds(worst)} | {one} of {len(r.edits)} "
                f"| {none} | {many} |"
            )
        lines += ["", *_timeline_table(ours, floor)]
    notes = [
        f"- {SERVERS[r.server].label}: {r.error} (log: `{r.log_path}`)" for r in results if r.error
    ]
    notes += [
        f"- {SERVERS[r.server].label}: processes left after stop: {r.survivors}"
        for r in results
        if r.survivors
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _part(edits: Sequence[EditResult], name: str) -> float | None:
    """p50 over the edits of one part of their "Reload timeline" line (None: none had it)."""
    return percentile([dict(e.parts)[name] for e in edits if name in dict(e.parts)], 50)


def _timeline_table(results: Sequence[RapidResult], floor: Floor | None) -> list[str]:
    """Where wsgidev's code reloads' time went, part by part, against the floor."""
    standby = seconds(floor.standby_s) if floor else "–"
    in_place = seconds(floor.in_place_s) if floor else "–"
    lines = [
        "Where the code edits' time went, from wsgidev's own `Reload timeline` line (printed "
        "with `--log-level info`; each part p50 over the code edits, seconds after the save, "
        "by the daemons' clocks) and the clients' p50, against the floor: a warm standby "
        "(its libraries and `django.setup()` done) importing the rest of the app and "
        f"answering the first request took {standby}; re-importing the edited module and the "
        f"project modules that import it in a warm process, then answering, {in_place}"
        + (f" ({', '.join(floor.in_place_modules)})" if floor else "")
        + (f" (medians of {floor.runs} fresh interpreters)" if floor else "")
        + ":",
        "",
        "| server | seen | flipped (hand-over) or restart told | import began | imported "
        "| old code's last answer | every client on it | clients − warm-standby floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        code = _code(r)
        flipped = _part(code, "handed over")
        if flipped is None:
            flipped = _part(code, "restarting")
        clients = percentile(latencies(code), 50)
        distance = clients - floor.standby_s if floor and clients is not None else None
        last_old = _part(code, "old code's last answer")
        lines.append(
            f"| {SERVERS[r.server].label} | {seconds(_part(code, 'seen'))} | {seconds(flipped)} "
            f"| {seconds(_part(code, 'import began'))} | {seconds(_part(code, 'imported'))} "
            f"| {seconds(last_old)} | {seconds(clients)} "
            f"| {seconds(distance)} |"
        )
    return lines


def _cold(result: RapidResult) -> list[float]:
    return result.cold.seconds


def _cold_no_pyc(result: RapidResult) -> list[float]:
    return result.cold.seconds_no_pyc


def _spread(values: Sequence[float]) -> str:
    """'1.21-1.46 s' over the values; '–' for none."""
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:.2f}-{high:.2f} s"


def _cold_start_table(results: Sequence[RapidResult], settings: RapidSettings) -> list[str]:
    express = next((r for r in results if r.server == "express"), None)
    gunicorn = next((r for r in results if r.server == "gunicorn"), None)
    express_p50 = percentile(express.cold.seconds, 50) if express else None
    gunicorn_p50 = percentile(gunicorn.cold.seconds, 50) if gunicorn else None
    lines = [
        f"Cold start: from launching the command to the first 200 for `/bench/probe` (polled "
        f"every 20 ms; a connection the server accepted waits for the app), "
        f"{settings.cold_starts} starts as users run it, then {settings.cold_starts_no_pyc} "
        "with `PYTHONDONTWRITEBYTECODE=1` (caches read, none written), each stopped by Ctrl-C "
        "before the next; before the edits, with the caches every earlier server wrote:",
        "",
        "| server | cold start p50 | spread | vs mod_wsgi-express | vs gunicorn "
        "| `PYTHONDONTWRITEBYTECODE=1` p50 | of which: until the banner (Apache listens) "
        "| failed starts |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        cold = r.cold
        mine = percentile(cold.seconds, 50)
        lines.append(
            f"| {SERVERS[r.server].label} | {seconds(mine)} | {_spread(cold.seconds)} "
            f"| {ratio(mine, express_p50)} | {ratio(mine, gunicorn_p50)} "
            f"| {seconds(percentile(cold.seconds_no_pyc, 50))} "
            f"| {seconds(percentile(cold.banner_s, 50))} "
            f"| {len(cold.failed)}{': ' + cold.failed[0].replace('|', '/') if cold.failed else ''} |"
        )
    return lines


def _best_peer_targets(
    ours: RapidResult, by_key: dict[str, RapidResult]
) -> list[tuple[str, str, bool]]:
    """Issue 22's: code and models.py edits against the best peer's p50, memory against
    mod_wsgi-express's."""
    rows = []
    peers = [r for k, r in by_key.items() if not k.startswith("wsgidev")]
    for what, pick, limit in (
        ("reload", _code, RAPID_VS_BEST_PEER),
        ("`models.py`", _models, MODELS_VS_BEST_PEER),
    ):
        mine = p50(pick(ours))
        best = min(
            ((p, SERVERS[r.server].label) for r in peers if (p := p50(pick(r))) is not None),
            default=None,
        )
        ok = mine is not None and best is not None and mine <= limit * best[0]
        value = (
            f"{seconds(mine)} vs {best[1]} {seconds(best[0])} ({ratio(mine, best[0])})"
            if best
            else f"{seconds(mine)}; no peer ran"
        )
        rows.append((f"rapid: {what} p50 ≤ {limit}× the best peer's", value, ok))
    express = by_key.get("express")
    if express is not None:
        mine_kb, express_kb = ours.pss_kb, express.pss_kb
        ok = (
            mine_kb is not None
            and bool(express_kb)
            and mine_kb <= PSS_VS_EXPRESS * (express_kb or 0)
        )
        value = f"{megabytes(mine_kb)} vs {megabytes(express_kb)} ({ratio(mine_kb, express_kb)})"
        rows.append((f"rapid: tree PSS ≤ {PSS_VS_EXPRESS}× mod_wsgi-express's", value, ok))
    return rows


def rapid_targets(results: Sequence[RapidResult]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the rapid scenario, where wsgidev ran in it."""
    by_key = {r.server: r for r in results}
    ours = by_key.get("wsgidev")
    if ours is None:
        return []
    rows = []
    ours_p50 = p50(_code(ours))
    peers = {k: p50(_code(r)) for k, r in by_key.items() if not k.startswith("wsgidev")}
    base_p50 = peers.get("runserver")
    ok = (
        ours_p50 is not None
        and all(p is not None and ours_p50 < p for p in peers.values())
        and base_p50 is not None
        and ours_p50 <= 0.4 * base_p50
    )
    value = f"{seconds(ours_p50)}; " + (
        ", ".join(f"{k} {seconds(p)}" for k, p in peers.items()) or "no peer ran"
    )
    rows.append(("rapid: reload p50 below every peer's, ≤ 0.4× runserver's", value, ok))
    rows += _best_peer_targets(ours, by_key)
    missed_edits = sum(e.missed for e in ours.edits) + ours.skipped_edits
    failed = sum(ours.failures.values())
    ok = missed_edits == 0 and failed == 0 and bool(ours.edits)
    value = f"{missed_edits} missed, {failed} failed"
    rows.append(("rapid: 0 missed edits, 0 failed requests", value, ok))
    worst, one, none, many = _printed(ours)
    ok = (
        bool(ours.edits)
        and one == len(ours.edits)
        and worst is not None
        and worst <= PRINTED_TOLERANCE_S
    )
    value = f"worst {seconds(worst)}; {none} edit(s) with no line, {many} with more than one"
    target = f"rapid: `Reloaded in` within {PRINTED_TOLERANCE_S} s of the clients, every edit"
    rows.append((target, value, ok))
    modes = [r for k, r in by_key.items() if k.startswith("wsgidev")]
    ok = all(r.threads_max is not None and r.threads_max <= THREADS_LIMIT for r in modes)
    value = ", ".join(f"{r.server} {r.threads_max}" for r in modes)
    rows.append((f"rapid: threads in a serving daemon ≤ {THREADS_LIMIT}", value, ok))
    express = by_key.get("express")
    for key, limit in PSS_LIMITS.items():
        mine = by_key.get(key)
        if mine is None or express is None:
            continue
        mine_kb, express_kb = mine.pss_kb, express.pss_kb
        ok = mine_kb is not None and bool(express_kb) and mine_kb <= limit * (express_kb or 0)
        value = f"{megabytes(mine_kb)} vs {megabytes(express_kb)} ({ratio(mine_kb, express_kb)})"
        rows.append((f"rapid: {key} tree PSS ≤ {limit}× mod_wsgi-express's", value, ok))
    ok = all(r.stop_s is not None and r.stop_s <= STOP_LIMIT_S for r in modes)
    value = ", ".join(f"{r.server} {seconds(r.stop_s)}" for r in modes)
    rows.append((f"rapid: stopped ≤ {STOP_LIMIT_S:.0f} s after Ctrl-C", value, ok))
    ours_models = p50(_models(ours))
    process = by_key.get("wsgidev-process")
    runserver = by_key.get("runserver")
    process_models = p50(_models(process)) if process else None
    runserver_models = p50(_models(runserver)) if runserver else None
    ok = (
        ours_models is not None
        and process_models is not None
        and runserver_models is not None
        and ours_models <= process_models
        and ours_models < runserver_models
    )
    value = (
        f"{seconds(ours_models)} vs process mode {seconds(process_models)}, "
        f"runserver {seconds(runserver_models)}"
    )
    rows.append(("rapid: `models.py` p50 ≤ process mode's, < runserver's", value, ok))
    express_run, gunicorn_run = by_key.get("express"), by_key.get("gunicorn")
    if ours.cold.seconds and express_run and gunicorn_run:
        for kind, pick in (("", _cold), (" with `PYTHONDONTWRITEBYTECODE=1`", _cold_no_pyc)):
            ours_cold = percentile(pick(ours), 50)
            by_express = percentile(pick(express_run), 50)
            by_gunicorn = percentile(pick(gunicorn_run), 50)
            ok = (
                ours_cold is not None
                and by_express is not None
                and by_gunicorn is not None
                and ours_cold <= COLD_START_VS_EXPRESS * by_express
                and ours_cold <= by_gunicorn
            )
            value = (
                f"{seconds(ours_cold)}; mod_wsgi-express {seconds(by_express)}, "
                f"gunicorn {seconds(by_gunicorn)}"
            )
            target = (
                f"cold start{kind} p50 ≤ {COLD_START_VS_EXPRESS}× mod_wsgi-express's, ≤ gunicorn's"
            )
            rows.append((target, value, ok))
    return rows
