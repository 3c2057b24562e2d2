"""--werkzeug: Werkzeug's in-browser debugger around the app, as django-extensions'
runserver_plus puts it, with any number of processes and threads and across reloads.

- The app is wrapped in werkzeug.debug.DebuggedApplication with its console (evalex). Django's
  exceptions reach it as under runserver_plus: with DEBUG on, Django's technical_500_response
  lets the exception out (with the view's traceback) instead of rendering Django's own page.
- The console's commands name a secret each process makes and frames only that process holds:
  the secret is claimed in the server root (wsgidev.daemon.handoff), so a command that reaches
  another process is answered by the one that rendered the traceback; a retired one's get a page
  that says so.
- The PIN is Werkzeug's own: derived from the machine, the user and the app, so the same in
  every process and across restarts (or WERKZEUG_DEBUG_PIN's). Each process sends it; wsgidev's
  terminal prints it once.
- The console answers loopback clients only (REMOTE_ADDR), whatever --host says, and Host headers
  wsgidev's own host check lets in (Werkzeug's trusted_hosts: DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from wsgidev.daemon.handoff import Owners, with_hand_off
from wsgidev.shared import events, protocol
from wsgidev.shared.spec import EntrySpec, WSGIApp

REFUSED_PAGE = (
    b"wsgidev: Werkzeug's console answers this machine only (a loopback address); "
    b"reach the server through ssh -L to use it from elsewhere\n"
)


def wrap(application: WSGIApp, spec: EntrySpec) -> WSGIApp:
    """The app inside Werkzeug's debugger, its console reachable from every process."""
    from werkzeug.debug import DebuggedApplication

    if spec.django:
        _let_django_exceptions_out()
    debugged = DebuggedApplication(application, evalex=True, pin_logging=False)
    if "*" in spec.trusted_hosts:  # --allow-host '*': the user turned the host check off
        debugged.check_host_trust = lambda environ: True  # type: ignore[method-assign]
    else:
        debugged.trusted_hosts = list(spec.trusted_hosts) or debugged.trusted_hosts
    events.emit(protocol.DebuggerPin(pin=debugged.pin or ""))
    guarded = _loopback_console(debugged)
    if spec.server_root is None:  # --debug: one process
        return guarded
    owners = Owners(spec.server_root)
    owners.claim(debugged.secret, guarded)  # a handed-off command passes the same checks
    return with_hand_off(guarded, owners, console_key, "debugger console")


def console_key(environ: dict[str, Any]) -> str | None:
    """The secret a request to Werkzeug's debugger names (its own requests carry __debugger__)."""
    query = environ.get("QUERY_STRING", "")
    if "__debugger__" not in query:
        return None
    values: dict[str, list[str]] = parse_qs(query)
    if values.get("__debugger__") != ["yes"]:
        return None
    secrets = values.get("s")
    return secrets[0] if secrets else None


def _loopback_console(application: WSGIApp) -> WSGIApp:
    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if console_key(environ) is not None and not _is_loopback(environ.get("REMOTE_ADDR", "")):
            start_response(
                "403 Forbidden",
                [("Content-Type", "text/plain"), ("Content-Length", str(len(REFUSED_PAGE)))],
            )
            return [REFUSED_PAGE]
        return application(environ, start_response)

    return guarded


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_innermost = threading.local()


def _let_django_exceptions_out() -> None:
    """Django's technical 500 page gives way to Werkzeug's: the exception goes on up, with the
    traceback of the layer that called the view (as runserver_plus's null_technical_500_response
    does; each middleware layer catches and asks for the page again, and would otherwise add its
    own frames). Only with DEBUG on, as Django calls this only then."""
    from django.core.handlers.base import BaseHandler
    from django.views import debug

    if getattr(debug.technical_500_response, "wsgidev", False):
        return

    def technical_500_response(
        request: Any, exc_type: Any, exc_value: Any, tb: Any, status_code: int = 500
    ) -> Any:
        __traceback_hide__ = True  # noqa: F841 - Werkzeug leaves this frame out of its page
        if exc_value is None:
            exc_value = exc_type()
        caller = tb.tb_next.tb_frame.f_locals.get("self") if tb and tb.tb_next else None
        if isinstance(caller, BaseHandler):  # the layer around the view: its traceback
            _innermost.seen = (exc_value, tb)
        else:
            seen = getattr(_innermost, "seen", None)
            if seen is not None and seen[0] is exc_value:
                tb = seen[1]
        try:
            raise exc_value.with_traceback(tb)
        finally:
            exc_value = tb = None

    technical_500_response.wsgidev = True  # type: ignore[attr-defined]
    debug.technical_500_response = technical_500_response
