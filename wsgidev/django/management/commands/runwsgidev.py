"""`manage.py runwsgidev [addrport]`: runserver's replacement, served by Apache + mod_wsgi.

The same arguments as `wsgidev start` (cli.add_server_arguments), the same Options (through
load_options, with the WSGIDEV settings dict as a layer), the same wsgidev.server.run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.core.management.commands.runserver import naiveip_re
from django.db import connections

from wsgidev.cli import add_server_arguments
from wsgidev.errors import WsgidevError
from wsgidev.options import Options, load_options, read_table


def parse_addrport(addrport: str) -> tuple[str | None, str]:
    """(host or None, port) from runserver's forms: 8080, 127.0.0.1:8080, [::1]:8080, name:8080."""
    match = naiveip_re.match(addrport)
    if match is None:
        raise WsgidevError(
            f"{addrport!r} is not a port or address:port",
            "pass e.g. 8000, 127.0.0.1:8000, 0.0.0.0:8000 or [::1]:8000",
        )
    addr, _ipv4, ipv6, _fqdn, port = match.groups()
    if ipv6:
        addr = addr[1:-1]
    elif addr == "0":
        # runserver's shorthand for every interface.
        addr = "0.0.0.0"
    return addr, port


def settings_layer(wsgidev_settings: Any, base: Path) -> dict[str, Any]:
    """The WSGIDEV dict of the Django settings as option values."""
    if not isinstance(wsgidev_settings, dict):
        raise WsgidevError(
            f"settings.WSGIDEV must be a dict, got {type(wsgidev_settings).__name__}",
            'write e.g. WSGIDEV = {"port": 8001, "threads": 10}',
        )
    return read_table(wsgidev_settings, "settings.WSGIDEV", base)


def build_options(values: dict[str, Any], environ: dict[str, str], cwd: Path) -> Options:
    """Options from the command's parsed arguments, layered over env, WSGIDEV and pyproject."""
    cli = dict(values)
    addrport = cli.pop("addrport", None)
    if addrport:
        if cli.get("host") or cli.get("port"):
            raise WsgidevError(
                "give the address once: as ADDRPORT or as --host/--port",
                f"drop --host/--port, or drop {addrport}",
            )
        cli["host"], cli["port"] = parse_addrport(addrport)
    # The project folder is where manage.py is, as Django put it first on sys.path.
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if not cli.get("working_dir") and script and script.name == "manage.py":
        cli["working_dir"] = str(script.parent)
    project = (cwd / cli["working_dir"]) if cli.get("working_dir") else cwd
    # Django's own --settings and --pythonpath have been applied to this process already.
    cli["django_settings"] = settings.SETTINGS_MODULE
    if cli.get("pythonpath"):
        cli["python_path"] = [cli["pythonpath"], *(cli.get("python_path") or [])]
    layer = settings_layer(getattr(settings, "WSGIDEV", {}), project)
    return load_options(cli, environ, cwd, settings_layer=layer)


class Command(BaseCommand):  # type: ignore[misc]
    help = (
        "Serve the project with Apache + mod_wsgi daemon mode, reloading on changes: "
        "runserver's replacement. Takes every `wsgidev start` option."
    )
    # The checks run in handle(), as runserver runs them, with its output.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "addrport", nargs="?", help="port, or address:port (as runserver: 8000, 0.0.0.0:8000)"
        )
        add_server_arguments(parser, settings_option=False)
        parser.add_argument(
            "--noreload", dest="reload", action="store_false", help="runserver's --no-reload"
        )
        parser.set_defaults(reload=None)
        parser.add_argument("--skip-checks", action="store_true", help="skip system checks")

    def handle(self, *args: Any, **values: Any) -> None:
        try:
            options = build_options(values, dict(os.environ), Path.cwd())
            if not settings.DEBUG and not settings.ALLOWED_HOSTS:
                raise WsgidevError(
                    "settings.ALLOWED_HOSTS is empty while DEBUG is False",
                    "set ALLOWED_HOSTS = ['127.0.0.1', 'localhost'] or DEBUG = True",
                )
            if not values["skip_checks"]:
                self.stdout.write("Performing system checks...\n\n")
                self.check(display_num_errors=True)
            self.check_migrations()
            # The daemons open their own connections; this process needs none while serving.
            for connection in connections.all(initialized_only=True):
                connection.close()
            from wsgidev.server import run

            status = run(options)
        except WsgidevError as exc:
            raise CommandError(f"wsgidev: {exc}") from None
        if status:
            sys.exit(status)
