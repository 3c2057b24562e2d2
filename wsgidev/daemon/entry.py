"""What the generated WSGI entry script calls inside each mod_wsgi daemon process: load(spec),
and reload_required(), which mod_wsgi asks before each request."""

from __future__ import annotations

import json
import os

from wsgidev.daemon import appimport, debugger
from wsgidev.daemon.importguard import ImportGuard
from wsgidev.daemon.livereload import with_live_reload
from wsgidev.daemon.roles import ServingProcess, StandbyProcess, start_handover
from wsgidev.shared import events
from wsgidev.shared.spec import EntrySpec, WSGIApp


def load(spec: EntrySpec) -> WSGIApp:
    """Start the monitor (first, so a broken app is still watched), then import the app; in a
    standby process (see wsgidev.daemon.handover), import it only when told to or asked to serve.
    Breakpoints and --pdb's post-mortems go to wsgidev's terminal (wsgidev.daemon.debugger)."""
    events.read_by_command(spec.events_read)
    if spec.environ_var is not None:
        # Taken out: the app's os.environ (and its children's) holds the values, not the blob.
        os.environ.update(json.loads(os.environ.pop(spec.environ_var, "{}")))
    os.environ.update(spec.environ)
    if spec.debugger is not None:
        debugger.install(spec.debugger)
    application = _load(spec)
    if spec.debugger is not None:
        application = debugger.wrap(application, django=spec.django)
    if spec.live_reload:
        application = with_live_reload(application)
    return application


def _load(spec: EntrySpec) -> WSGIApp:
    handover = start_handover(spec)
    # Under wsgidev start: marks in the server root tell a process that dies or hangs importing.
    guard = ImportGuard(spec.server_root) if spec.server_root else None
    if handover is None or handover.serving():
        return ServingProcess(spec, handover, guard).start()
    return StandbyProcess(spec, handover, guard).start()


def reload_required(resource: str) -> bool:
    """mod_wsgi's per-request question of the WSGI script (WSGIScriptReloading): whether this
    process must restart before serving; the request is then sent again by Apache, not failed."""
    return appimport.imported_stale()
