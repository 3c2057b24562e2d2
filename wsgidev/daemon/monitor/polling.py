"""The stat-polling backend: every interval, compare every watched file with its baseline.

Works on any filesystem (network mounts, some container bind mounts deliver no notifications)
and is the fallback when the notify backend cannot start. Costs one stat per file per interval.
"""

from __future__ import annotations

import threading
from typing import Any

from wsgidev.daemon.monitor.base import Monitor


class PollingMonitor(Monitor):
    """Checks every file each poll_interval_s."""

    name = "poll"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._woken = threading.Event()

    def _idle_timeout(self, next_full_check: float) -> float:
        return self.poll_interval_s

    def _wait(self, timeout_s: float) -> set[str] | None:
        self._woken.wait(timeout_s)
        self._woken.clear()
        return None  # no hints here: check everything

    def _wake(self) -> None:
        self._woken.set()
