"""Django's autoreload signals, driven by the monitor, so Django's own receivers take part.

Receivers of `autoreload_started` (template loaders, translations, third-party apps) ask the
sender to watch directories; receivers of `file_changed` that return True have dealt with a
change themselves (the template loaders reset their cache), so the process need not restart.
Imported only once Django's app registry is ready.
"""

from __future__ import annotations

from pathlib import Path

from django.utils import autoreload

from wsgidev.daemon.monitor.base import log
from wsgidev.daemon.monitor.globs import WatchGlob
from wsgidev.shared.globpattern import GlobError


class MonitorReloader(autoreload.BaseReloader):  # type: ignore[misc]
    """The sender receivers see: a BaseReloader whose watch_dir() and extra_files the monitor reads."""

    def notify_file_changed(self, path: object) -> None:
        # BaseReloader would sys.exit(3) here; restarts are the monitor's decision.
        pass


class DjangoSignals:
    """Sends autoreload_started and file_changed for the monitor; reports what receivers want watched."""

    def __init__(self) -> None:
        self.reloader = MonitorReloader()
        self._receivers_seen = -1
        self._globs_seen: set[tuple[str, str]] = set()
        self._files_seen: set[str] = set()

    def refresh(self) -> tuple[list[WatchGlob], list[str]]:
        """Globs and extra files receivers added since the last call."""
        receivers = len(autoreload.autoreload_started.receivers)
        if receivers != self._receivers_seen:
            # Some receivers connect late (translations, on first use); watch_dir() is idempotent,
            # so sending again when one has joined gives it the start runserver would have given.
            self._receivers_seen = receivers
            results = autoreload.autoreload_started.send_robust(sender=self.reloader)
            _log_failures("autoreload_started", results)
        globs: list[WatchGlob] = []
        for directory, patterns in list(self.reloader.directory_globs.items()):
            for pattern in sorted(patterns):
                if (key := (str(directory), pattern)) not in self._globs_seen:
                    self._globs_seen.add(key)
                    try:
                        globs.append(WatchGlob(*key, reason="Django autoreload"))
                    except GlobError as exc:  # a receiver's own pattern: say so, watch the rest
                        log(f"autoreload_started receiver's pattern {key[1]!r} {exc}")
        files = [str(p) for p in list(self.reloader.extra_files) if str(p) not in self._files_seen]
        self._files_seen.update(files)
        return globs, files

    def offer(self, path: str) -> bool:
        """Send file_changed for one file; True when a receiver handled it (no restart needed)."""
        results = autoreload.file_changed.send_robust(sender=self.reloader, file_path=Path(path))
        _log_failures("file_changed", results)
        # A receiver that raised has not handled the change: restart, as Django would (loudly).
        return any(result and not isinstance(result, Exception) for _, result in results)


def _log_failures(signal_name: str, results: list[tuple[object, object]]) -> None:
    for receiver, result in results:
        if isinstance(result, Exception):
            name = getattr(receiver, "__qualname__", receiver)
            log(f"{signal_name} receiver {name} failed: {result!r}")
