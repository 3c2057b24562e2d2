"""The compatibility run's bookkeeping (standard library only: it runs with the system python3).

    python3 compat/report.py record --config NAME --run-id ID --status N --log F --facts F --out F
        --repo DIR [--port-8000-busy yes|no]
    python3 compat/report.py write --results DIR --doc docs/compat.md --all "a b c" --run-id ID
        --repo DIR

`record` turns one run's pytest log and facts into a results file; `write` rewrites the results
block of docs/compat.md from the latest results file of every configuration, saying whether they
all come from one run of every configuration (as bench/run.py rewrites docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path

BEGIN_MARK = "<!-- compat:results:begin -->"
END_MARK = "<!-- compat:results:end -->"
# pytest's last line: "==== 150 passed, 1 skipped, 2 failed in 301.22s (0:05:01) ====".
SUMMARY = re.compile(r"^=+ (.*\bin [\d.]+s.*?) =+$")
COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected)")
FAILED = re.compile(r"^(FAILED|ERROR) (\S+)")


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    return result.stdout.strip()


def record(args: argparse.Namespace) -> int:
    log = Path(args.log).read_text(errors="replace") if Path(args.log).exists() else ""
    summary = ""
    for line in log.splitlines():
        match = SUMMARY.match(line.strip())
        if match:
            summary = match.group(1)
    counts: dict[str, int] = {}
    for number, kind in COUNT.findall(summary):
        counts["error" if kind.startswith("error") else kind] = int(number)
    facts_path = Path(args.facts)
    try:
        facts = json.loads(facts_path.read_text())
    except (OSError, ValueError):
        facts = {}
    repo = Path(args.repo)
    # Tracked files changed since the commit, but for the results document the runs rewrite.
    dirty = git(
        repo, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!docs/compat.md"
    )
    result = {
        "config": args.config,
        "run_id": args.run_id,
        "status": int(args.status),
        "summary": summary or "no pytest summary (see the log)",
        "counts": counts,
        "failures": [m.group(2) for m in map(FAILED.match, log.splitlines()) if m][:30],
        "commit": git(repo, "rev-parse", "--short", "HEAD") + ("+changes" if dirty else ""),
        "facts": facts,
        # Another program listened on 127.0.0.1:8000 when the suite ended (run.sh holds it).
        "port_8000_busy": args.port_8000_busy == "yes",
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    verdict = "passed" if result["status"] == 0 else "FAILED"
    print(f"compat: {args.config} {verdict}: {result['summary']}")
    return 0


def _row(result: dict[str, object], repo: str) -> str:
    facts = result["facts"] if isinstance(result["facts"], dict) else {}
    httpd = str(facts.get("httpd", "?")).removeprefix(repo.rstrip("/") + "/")
    verdict = "green" if result["status"] == 0 else "**failed**"
    apache = f"{facts.get('apache', '?')} `{httpd}`"
    if facts.get("library_path"):
        apache += " (+ LD_LIBRARY_PATH)"
    return (
        f"| {result['config']} | {verdict}: {result['summary']} | {facts.get('python', '?')} | "
        f"{facts.get('django', '?')} | {apache} | {facts.get('os', '?')} | "
        f"{_yes_no(result.get('port_8000_busy'))} | {result['run_id']} | "
        f"{result['commit']} |"
    )


def _yes_no(value: object) -> str:
    """A recorded flag; "?" where the result predates it."""
    return "?" if value is None else "yes" if value else "no"


def _seconds(facts: dict[str, object], key: str) -> str:
    return f"{facts[key]} s" if key in facts else "-"


def _projects(projects: dict[str, dict[str, object]]) -> list[str]:
    """real-projects: one row per project, as its test saw it from the client's side."""
    lines = [
        "| real project | commit | imports unchanged | pip check | pages 200 | first 200 | view edit | template edit | stop |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in projects.items():
        pages = p.get("pages") or []
        assert isinstance(pages, list)
        good = sum(1 for page in pages if page.get("ok"))
        moved = p.get("imports_moved")
        unchanged = (
            f"{p.get('imports_checked')} names" + (f", **moved: {moved}**" if moved else "")
            if "imports_checked" in p
            else "?"
        )
        if p.get("versions_changed"):
            unchanged += f", **versions changed: {p['versions_changed']}**"

        lines.append(
            f"| [{name}]({p.get('repo')}) | {p.get('commit')} | {unchanged} | {p.get('pip_check', '-')} | "
            f"{good}/{len(pages)} | {_seconds(p, 'first_200_s')} | {_seconds(p, 'view_edit_s')} | "
            f"{_seconds(p, 'template_edit_s')} | {p.get('stop', '-')} |"
        )
    return lines


def _history(folder: Path, results: list[dict[str, object]], full: bool) -> list[str]:
    """Every full run on this machine, latest first (kept in the results folder): whether the
    whole matrix passes time after time, not once."""
    path = folder / "history.jsonl"
    runs = []
    if path.exists():
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                run = json.loads(line)
                if isinstance(run, dict) and {"run_id", "commit", "green", "legs"} <= set(run):
                    runs.append(run)
    if full:
        result = results[0]
        this = {
            "run_id": result["run_id"],
            "commit": result["commit"],
            "green": sum(1 for r in results if r["status"] == 0),
            "legs": len(results),
            "port_8000_busy": (
                None
                if any(r.get("port_8000_busy") is None for r in results)
                else all(r["port_8000_busy"] for r in results)
            ),
        }
        runs = [r for r in runs if r.get("run_id") != this["run_id"]] + [this]
        path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    if not runs:
        return ["No full run of every configuration is recorded on this machine yet."]
    lines = [
        "Full runs of every configuration on this machine, latest first:",
        "",
        "| run (UTC) | commit | green | 127.0.0.1:8000 held by another program |",
        "|---|---|---|---|",
    ]
    for r in reversed(runs):
        busy = _yes_no(r.get("port_8000_busy"))
        lines.append(f"| {r['run_id']} | {r['commit']} | {r['green']} of {r['legs']} | {busy} |")
    return lines


def write(args: argparse.Namespace) -> int:
    names = args.all.split()
    results = []
    for name in names:
        path = Path(args.results) / f"{name}.json"
        if path.exists():
            results.append(json.loads(path.read_text()))
    runs = {r["run_id"] for r in results}
    commits = {r["commit"] for r in results}
    full = len(results) == len(names) and runs == {args.run_id} and len(commits) == 1
    if full:
        origin = (
            f"From one full run (`bash dev.sh compat`, run {args.run_id}) of commit "
            f"{next(iter(commits))}."
        )
    else:
        missing = [n for n in names if n not in {r["config"] for r in results}]
        origin = (
            "**Not from one full run**: the rows come from separate runs (see each row's run and "
            "commit)" + (f"; never run: {', '.join(missing)}" if missing else "") + "."
        )
    lines = [
        origin,
        "",
        "| configuration | result | Python | Django | Apache (httpd) | system | 8000 busy | run (UTC) | commit |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(r, args.repo) for r in results),
        "",
        *_history(Path(args.results), results, full),
    ]
    for r in results:
        facts = r["facts"] if isinstance(r["facts"], dict) else {}
        if "libapr_with_library_path" in facts:
            with_path = str(facts["libapr_with_library_path"]).removeprefix(args.repo + "/")
            lines += [
                "",
                f"{r['config']}: libapr-1 resolves to `{with_path}` with "
                f"the library path wsgidev sets; without it (system Apache and its libapr hidden): "
                f"`{facts['libapr_without_library_path']}`.",
            ]
        if facts.get("dependencies") and r["config"] == "lowest":
            pins = ", ".join(f"{k} {v}" for k, v in facts["dependencies"].items())
            lines += [
                "",
                f"lowest: wsgidev's own dependencies at {pins} (mod_wsgi {facts.get('mod_wsgi', '?')}).",
            ]
        if facts.get("projects"):
            lines += ["", *_projects(facts["projects"])]
        if r["failures"]:
            lines += ["", f"{r['config']} failures: " + ", ".join(f"`{f}`" for f in r["failures"])]
    doc = Path(args.doc)
    block = f"{BEGIN_MARK}\n" + "\n".join(lines) + f"\n{END_MARK}"
    text = doc.read_text() if doc.exists() else f"# Compatibility\n\n{BEGIN_MARK}\n{END_MARK}\n"
    pattern = re.compile(re.escape(BEGIN_MARK) + ".*?" + re.escape(END_MARK), re.S)
    doc.write_text(pattern.sub(lambda _: block, text))
    print(f"compat: wrote {doc}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    for name in ("config", "run-id", "status", "log", "facts", "out", "repo"):
        rec.add_argument(f"--{name}", required=True)
    rec.add_argument("--port-8000-busy", choices=("yes", "no"), default="no")
    wr = sub.add_parser("write")
    for name in ("results", "doc", "all", "run-id", "repo"):
        wr.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    return record(args) if args.command == "record" else write(args)


if __name__ == "__main__":
    sys.exit(main())
