"""The reload monitor's public name, for a hand-written WSGI script under daemon mode:

    import wsgidev.monitor
    wsgidev.monitor.start()            # watch=[...], backend="auto"|"inotify"|"poll"

It runs inside the mod_wsgi daemon; the code is in wsgidev/daemon/monitor/.
"""

from __future__ import annotations

from wsgidev.daemon.monitor import BACKENDS, Monitor, PollingMonitor, create, resume, start

__all__ = ["BACKENDS", "Monitor", "PollingMonitor", "create", "resume", "start"]
