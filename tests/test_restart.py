"""Restart strategies and the leader lock: one restart per round of sibling daemons."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from wsgidev.daemon import restart
from wsgidev.shared.serverroot import RESTART_LOCK, LeaderLock, prepare_server_root
from wsgidev.shared.spec import EntrySpec, MonitorSpec, RestartPlan

# The Apache parent the daemons signal: a made-up pid, as the suite's own parent may be init
# (a run started detached) and an orphaned daemon signals no parent.
APACHE_PID = 4242


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(restart.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(restart.os, "getppid", lambda: APACHE_PID)
    return sent


def test_first_daemon_asks_apache_and_siblings_do_not(tmp_path: Path, kills):
    prepare_server_root(tmp_path)
    first = restart.restart_server(str(tmp_path))
    sibling = restart.restart_server(str(tmp_path))  # started in the same round
    first(["a.py"])
    sibling(["a.py"])
    assert kills == [(APACHE_PID, signal.SIGUSR1)]


def test_the_next_round_of_daemons_asks_again(tmp_path: Path, kills):
    prepare_server_root(tmp_path)
    restart.restart_server(str(tmp_path))(["a.py"])
    restart.restart_server(str(tmp_path))(["b.py"])  # started after that restart
    assert kills == [(APACHE_PID, signal.SIGUSR1)] * 2


def test_an_orphaned_daemon_restarts_itself_and_signals_no_init(
    tmp_path: Path, kills, monkeypatch: pytest.MonkeyPatch
):
    prepare_server_root(tmp_path)
    monkeypatch.setattr(restart.os, "getppid", lambda: 1)  # Apache is gone
    restart.restart_server(str(tmp_path))(["a.py"])
    assert kills == [(os.getpid(), signal.SIGINT)]


def test_without_the_lock_it_restarts_its_own_process(tmp_path: Path, kills):
    restart.restart_server(str(tmp_path))(["a.py"])
    assert kills == [(os.getpid(), signal.SIGINT)]
    assert not (tmp_path / RESTART_LOCK).exists()


def test_the_leader_lock_counts_generations(tmp_path: Path):
    lock = LeaderLock(tmp_path / "x.lock")
    lock.create()
    noted = lock.generation()
    with lock.lead(noted) as leads:
        assert leads
    with lock.lead(noted) as leads:  # a sibling that noted the same generation
        assert not leads
    assert lock.generation() == noted + 1
    with lock.lead(lock.generation()) as leads:
        assert leads


def test_each_restart_mode_has_one_strategy(tmp_path: Path):
    assert restart.on_change_for(RestartPlan()) is restart.restart_process
    prepare_server_root(tmp_path)
    root = str(tmp_path)
    assert callable(restart.on_change_for(RestartPlan(mode="server", owned=True, server_root=root)))
    # A standby plan in a process whose hand-over could not start: it restarts itself.
    plan = RestartPlan(mode="standby", owned=True, server_root=root, groups=("g", "g-b"))
    assert restart.on_change_for(plan) is restart.restart_process


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"mode": "server"}, "needs the server root"),
        ({"mode": "server", "server_root": "/srv/root"}, "a server wsgidev owns"),
        ({"mode": "standby", "owned": True, "server_root": "/srv/root"}, "two daemon groups"),
        ({"mode": "sometimes"}, "restart must be one of standby, process, server"),
    ],
)
def test_a_restart_plan_that_cannot_work_is_refused(fields: dict, error: str):
    with pytest.raises(ValueError, match=error):
        RestartPlan(**fields)


def test_the_monitor_spec_of_an_earlier_entry_script_still_loads():
    # A system Apache's entry script stays as `wsgidev config apache` wrote it until it is run
    # again; the spec it holds named the restart mode, the server root and the groups.
    spec = MonitorSpec(
        watch=("/srv/site/settings.ini",), restart="process", state_dir=None, groups=()
    )
    assert spec.plan == RestartPlan()
    assert "restart=" not in repr(spec) and "plan=RestartPlan(" in repr(spec)  # what is written now


def test_the_names_an_earlier_entry_script_imports_are_still_there():
    # Entry scripts written before the shared modules had a folder of their own.
    names: dict[str, object] = {}
    exec("from wsgidev.shared import DebuggerSpec, EntrySpec, MonitorSpec, RestartPlan", names)
    assert names["MonitorSpec"] is MonitorSpec and names["RestartPlan"] is RestartPlan
    # ...and named the server root state_dir.
    spec = EntrySpec(kind="django", label="site", state_dir="/tmp/wsgidev-1-x")
    assert spec.server_root == "/tmp/wsgidev-1-x" and "state_dir" not in repr(spec)
