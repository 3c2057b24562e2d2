"""--werkzeug: Werkzeug's in-browser debugger around the app, as django-extensions'
runserver_plus puts it, with any number of processes and threads and across reloads.

- The app is wrapped in werkzeug.debug.DebuggedApplication with its console (evalex). Django's
  exceptions reach it as under runserver_plus: with DEBUG on, Django's technical_500_response
  lets the exception out (with the view's traceback) instead of rendering Django's own page.
- The console's commands name a secret each process makes and frames only that process holds:
  the secret is claimed in the server root (wsgidev.daemon.handoff), so a command that reaches
  another process is answered by the one that rendered the traceback; a retired one's get a page
  that says so.
- The PIN is WERKZEUG_DEBUG_PIN, which wsgidev start sets to a new one per run unless the user
  did (runplan.debugger_pin); each process sends it, and the terminal prints it once.
- Only clients on this machine (a loopback REMOTE_ADDR) get the console: the others get a
  second DebuggedApplication without one (the traceback page; no console, no /console), so no
  parsing of the query string here decides who may run code. The console's Host header must be
  a name wsgidev's host check lets in, loopback names always (DNS rebinding), whatever
  --allow-host '*' says.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections.abc import Callable, Iterable
from typing import Any

from wsgidev.daemon.handoff import Owners, with_hand_off
from wsgidev.shared import events, protocol
from wsgidev.shared.spec import EntrySpec, WSGIApp


def wrap(application: WSGIApp, spec: EntrySpec) -> WSGIApp:
    """The app inside Werkzeug's debugger, its console reachable from every process."""
    from werkzeug.debug import DebuggedApplication

    if spec.django:
        _let_django_exceptions_out()
    debugged = DebuggedApplication(application, evalex=True, pin_logging=False)
    hosts = [name for name in spec.trusted_hosts if name != "*"]
    debugged.check_host_trust = lambda environ: host_allowed(environ, hosts)  # type: ignore[method-assign]
    # Off this machine: the traceback page without its console (evalex off: no /console).
    elsewhere = DebuggedApplication(application, evalex=False, pin_logging=False)
    pin = debugged.pin  # WERKZEUG_DEBUG_PIN's, new each run (runplan.debugger_pin)
    if pin:
        # Werkzeug names the PIN's cookie after the machine and the app, the same from run to
        # run: a browser's cookie of an earlier run would make the first PIN entered fail.
        run = hashlib.sha256(f"{debugged.pin_cookie_name}:{pin}".encode()).hexdigest()[:20]
        debugged._pin_cookie = f"__wzd{run}"
    events.emit(protocol.DebuggerPin(pin=pin or ""))
    console: WSGIApp = debugged
    if spec.server_root is not None:  # wsgidev start: more than one process (--debug: one)
        try:
            owners = Owners(spec.server_root)
            owners.claim(debugged.secret, debugged)
            console = with_hand_off(debugged, owners, console_key, "debugger console")
        except Exception as exc:  # the debugger still works, in the process that raised
            events.emit(
                protocol.Refused(
                    part="debugger",
                    reason=f"the debugger console's hand-off between processes did not start "
                    f"({exc}): a command reaching another process than the one that raised "
                    "is not answered",
                )
            )

    def by_client(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if is_loopback(environ.get("REMOTE_ADDR", "")):
            return console(environ, start_response)
        return elsewhere(environ, start_response)

    return by_client


def console_key(environ: dict[str, Any]) -> str | None:
    """The secret a command to Werkzeug's debugger names, read as Werkzeug reads it; None for
    what any process answers (its resources) and for what is no command."""
    from werkzeug.wrappers import Request

    args = Request(environ).args  # the query string only: the body is left to the app
    if args.get("__debugger__") != "yes" or args.get("cmd") in (None, "resource"):
        return None
    return args.get("s") or None


def is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def host_allowed(environ: dict[str, Any], names: list[str]) -> bool:
    """Whether the request's Host (without its port) is one of names (".x" also: below x).
    Werkzeug's own check cannot match an IPv6 literal ("[::1]")."""
    host = environ.get("HTTP_HOST", "").lower()
    if host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.rpartition(":")[0] if ":" in host else host
    for name in names:
        if name.startswith("."):
            if host == name[1:] or host.endswith(name):
                return True
        elif host == name.lower():
            return True
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
