"""Restart strategies: the whole-server graceful restart asks Apache once per round of daemons."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from wsgidev.monitor import restart


@pytest.fixture
def kills(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(restart.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    return sent


def test_first_daemon_asks_apache_and_siblings_do_not(tmp_path: Path, kills):
    restart.create_lock(tmp_path)
    started = time.time_ns()
    restart.restart_server(str(tmp_path), started)(["a.py"])
    restart.restart_server(str(tmp_path), started)(["a.py"])  # the sibling daemon
    assert kills == [(os.getppid(), signal.SIGUSR1)]


def test_the_next_round_of_daemons_asks_again(tmp_path: Path, kills):
    restart.create_lock(tmp_path)
    restart.restart_server(str(tmp_path), time.time_ns())(["a.py"])
    time.sleep(0.05)
    restart.restart_server(str(tmp_path), time.time_ns())(["b.py"])
    assert kills == [(os.getppid(), signal.SIGUSR1)] * 2


def test_without_the_lock_it_restarts_its_own_process(tmp_path: Path, kills):
    restart.restart_server(str(tmp_path), time.time_ns())(["a.py"])
    assert kills == [(os.getpid(), signal.SIGINT)]
    assert not (tmp_path / restart.LOCK_NAME).exists()
