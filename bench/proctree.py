"""A server's process tree read from /proc: who is in it, how much CPU it used, when it changed."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/<pid>/stat the benchmark uses."""

    pid: int
    ppid: int
    state: str
    cpu_ticks: int  # utime + stime
    start_ticks: int  # with pid, names one process even if the pid is reused
    # cutime + cstime: the CPU of the children this process has reaped (waited for), where the
    # time of a process that exited goes (Apache's parent reaps its daemons).
    reaped_ticks: int = 0

    @property
    def alive(self) -> bool:
        """False for a zombie: it has exited, only its parent has not reaped it yet."""
        return self.state not in ("Z", "X")


def read_stat(pid: int) -> ProcStat | None:
    """/proc/<pid>/stat parsed, or None if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat_file:
            raw = stat_file.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ")".
    fields = raw[raw.rindex(")") + 2 :].split()
    return ProcStat(
        pid=pid,
        ppid=int(fields[1]),
        state=fields[0],
        cpu_ticks=int(fields[11]) + int(fields[12]),
        start_ticks=int(fields[19]),
        reaped_ticks=int(fields[13]) + int(fields[14]),
    )


def all_stats() -> dict[int, ProcStat]:
    """Every process on the machine."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := read_stat(int(name))) is not None:
            stats[stat.pid] = stat
    return stats


def tree(root_pid: int) -> dict[int, ProcStat]:
    """root_pid and all its descendants (a daemon started in another session is still one)."""
    stats = all_stats()
    if root_pid not in stats:
        return {}
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found: dict[int, ProcStat] = {}
    pending = [root_pid]
    while pending:
        pid = pending.pop()
        found[pid] = stats[pid]
        pending.extend(children.get(pid, ()))
    return found


def cpu_used_s(before: dict[int, ProcStat], after: dict[int, ProcStat]) -> tuple[float, int]:
    """CPU seconds the tree used between two snapshots, and how many processes left in between
    (their last slice of CPU time cannot be seen)."""
    ticks = 0
    for pid, stat in after.items():
        old = before.get(pid)
        if old is not None and old.start_ticks == stat.start_ticks:
            ticks += stat.cpu_ticks - old.cpu_ticks
        else:
            ticks += stat.cpu_ticks
    gone = sum(
        1
        for pid, stat in before.items()
        if pid not in after or after[pid].start_ticks != stat.start_ticks
    )
    return ticks / CLOCK_TICKS_PER_S, gone


def lifetime_cpu_s(stats: dict[int, ProcStat]) -> float:
    """CPU seconds a tree has used since its root started: its live processes' own time and the
    time of the descendants they reaped. Unlike cpu_used_s, exact across processes that exit
    between two snapshots (their whole time is in their parent's by the next one), as long as
    a process of the tree reaps them."""
    return sum(stat.cpu_ticks + stat.reaped_ticks for stat in stats.values()) / CLOCK_TICKS_PER_S


class TreeWatcher(threading.Thread):
    """Samples the tree's live processes every interval and keeps each change with its time."""

    def __init__(self, root_pid: int, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True, name="tree-watcher")
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.changes: list[tuple[float, frozenset[int]]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        last: frozenset[int] | None = None
        while not self._stop_event.is_set():
            now = time.monotonic()
            live = frozenset(pid for pid, stat in tree(self.root_pid).items() if stat.alive)
            if live != last:
                self.changes.append((now, live))
                last = live
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join(5)

    def live_at(self, when: float) -> frozenset[int]:
        """The live processes as last seen at or before `when`."""
        live: frozenset[int] = frozenset()
        for changed_at, pids in self.changes:
            if changed_at > when:
                break
            live = pids
        return live

    def restart_times(self, since: float, until: float) -> tuple[float | None, float | None]:
        """After `since`: when the first process that was live then had exited, and when the
        first new process appeared (both None if nothing changed before `until`)."""
        base = self.live_at(since)
        first_exit = first_spawn = None
        for changed_at, pids in self.changes:
            if changed_at <= since or changed_at >= until:
                continue
            if first_exit is None and base - pids:
                first_exit = changed_at
            if first_spawn is None and pids - base:
                first_spawn = changed_at
        return first_exit, first_spawn
