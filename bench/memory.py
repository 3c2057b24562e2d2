"""A server's memory by kind of process: PSS from /proc/<pid>/smaps_rollup, and thread counts.

PSS (proportional set size) shares each page among the processes that map it, so the kinds add
up to the tree's real footprint: forked Apache children and daemons share much of their memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import proctree

APACHE_NAMES = ("apache2", "httpd")
# The order kinds are listed in.
KIND_ORDER = (
    "wsgidev command",
    "Apache parent",
    "Apache workers",
    "daemons, serving",
    "daemons, standby",
    "autoreloader parent",
    "serving child",
    "arbiter",
    "workers",
    "mod_wsgi-express command",
    "other",
)


@dataclass(frozen=True, kw_only=True)
class KindMemory:
    """The processes of one kind in a server's tree."""

    kind: str
    processes: int
    pss_kb: int
    threads_max: int


def read_pss_kb(pid: int) -> int | None:
    """The process's PSS in kB, or None if it is gone (or its memory is not readable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def thread_count(pid: int) -> int:
    """Threads of the process, as the kernel counts them (0 if it is gone)."""
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _read(path: str) -> str:
    try:
        with open(path, "rb") as source:
            return source.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _daemon_group(pid: int) -> str | None:
    """'(wsgidev.b' for a mod_wsgi daemon named '(wsgidev.b:site:8000)'; None if not a daemon.
    mod_wsgi's display-name overwrites argv[0], so the name is the cmdline's start."""
    cmdline = _read(f"/proc/{pid}/cmdline")
    return cmdline.split(":", 1)[0] if cmdline.startswith("(") else None


def process_kind(
    pid: int,
    stats: dict[int, proctree.ProcStat],
    root_pid: int,
    serving_groups: set[str],
    root_kind: str,
    child_kind: str,
) -> str:
    """What a process of a server's tree is: one of KIND_ORDER."""
    group = _daemon_group(pid)
    if group is not None:
        return "daemons, serving" if group in serving_groups else "daemons, standby"
    if _read(f"/proc/{pid}/comm").strip() in APACHE_NAMES:
        parent = stats.get(stats[pid].ppid)
        parent_is_apache = (
            parent is not None and _read(f"/proc/{parent.pid}/comm").strip() in APACHE_NAMES
        )
        return "Apache workers" if parent_is_apache else "Apache parent"
    return root_kind if pid == root_pid else child_kind


def by_kind(
    stats: dict[int, proctree.ProcStat],
    root_pid: int,
    serving_pids: set[int],
    root_kind: str,
    child_kind: str,
) -> list[KindMemory]:
    """PSS and threads of a server's live processes, summed (threads: most) by kind.
    serving_pids: processes that just answered requests; their daemon groups serve."""
    groups = {g for pid in serving_pids if (g := _daemon_group(pid)) is not None}
    totals: dict[str, list[int]] = {}
    for pid, stat in stats.items():
        if not stat.alive:
            continue
        pss = read_pss_kb(pid)
        if pss is None:
            continue
        kind = process_kind(pid, stats, root_pid, groups, root_kind, child_kind)
        count, kb, threads = totals.get(kind, [0, 0, 0])
        totals[kind] = [count + 1, kb + pss, max(threads, thread_count(pid))]
    order = {kind: n for n, kind in enumerate(KIND_ORDER)}
    return [
        KindMemory(kind=kind, processes=count, pss_kb=kb, threads_max=threads)
        for kind, (count, kb, threads) in sorted(
            totals.items(), key=lambda item: order.get(item[0], len(order))
        )
    ]
