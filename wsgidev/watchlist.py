"""The terminal's block listing what a daemon process watches (`--log-level info`).

The daemon sums it up (wsgidev/daemon/monitor/listing.py) in a "watch-list" event; this module
only lays it out: one line per folder group, per reason a file is watched, and for --exclude.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from wsgidev.shared.processes import short_path


def listing_key(event: dict[str, Any]) -> str:
    """What makes two processes' listings worth printing twice: not their counts."""
    return repr((event.get("extra"), event.get("globs"), event.get("excluded")))


def format_watch_list(event: dict[str, Any]) -> str:
    """The block for one "watch-list" event, without a final newline."""
    lines = [f"What process {event.get('pid')} watches, by folder and why:"]
    for label, count, subs in event.get("folders") or []:
        # A project whose watched files all sit at its top level needs no breakdown.
        inner = ", ".join(f"{_name(str(sub))} {n}" for sub, n in subs if len(subs) > 1)
        lines.append(f"  {_name(str(label))}: {count}" + (f" ({inner})" if inner else ""))
    by_reason: dict[str, list[str]] = {}
    for path, reason in event.get("extra") or []:
        by_reason.setdefault(str(reason), []).append(short_path(str(path)))
    for spec, reason, count in event.get("globs") or []:
        by_reason.setdefault(str(reason) or "--watch", []).append(
            f"{short_path(str(spec))} ({_files(int(count))})"
        )
    for reason, names in by_reason.items():
        lines.append(f"  {reason}: {', '.join(names)}")
    if event.get("extra_more"):
        lines.append(f"  and {event['extra_more']} more files watched for these reasons")
    django_dirs, django_files = event.get("django") or (0, 0)
    if django_dirs or django_files:
        lines.append(f"  Django autoreload: {_files(int(django_files))} in {django_dirs} folders")
    excluded = [
        f"{pattern} ({_files(int(count))}{_samples(samples)})"
        for pattern, count, samples in event.get("excluded") or []
    ]
    if excluded:
        lines.append(f"  excluded: {'; '.join(excluded)}")
    return "\n".join(lines)


def _name(text: str) -> str:
    """A group label or folder as the terminal shows it (a project path made short)."""
    if text == ".":
        return "top level"
    return short_path(text) if text.startswith("/") else text


def _files(count: int) -> str:
    return f"{count} file" if count == 1 else f"{count} files"


def _samples(samples: Iterable[str]) -> str:
    names = [short_path(str(s)) for s in samples]
    return f": {', '.join(names)}" if names else ""
