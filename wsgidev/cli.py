"""Parse arguments into Options and call one function; no logic of its own."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from wsgidev import __version__
from wsgidev.errors import WsgidevError
from wsgidev.options import LOG_LEVELS, RELOAD_BACKENDS, Options, load_options
from wsgidev.shared.spec import RESTART_MODES


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line, not usage plus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"wsgidev: {message} (see {self.prog} --help)\n")


def add_server_arguments(parser: argparse.ArgumentParser, *, settings_option: bool = True) -> None:
    """The options shared by start, config and the Django command. Values stay strings (or None
    when not given) so that load_options can layer them over env and pyproject and say clearly
    what is wrong with a bad one. The Django command passes settings_option=False: Django has
    its own --settings."""
    add = parser.add_argument
    add("--processes", metavar="N", help="daemon processes (default 2)")
    add(
        "--threads",
        metavar="N",
        help="threads per daemon process (default 5); --threads 1 --processes N is fork mode, "
        "for code that is not thread-safe: one request per process at a time",
    )
    add("--host", help="address to listen on (default 127.0.0.1)")
    add(
        "--allow-host",
        metavar="NAME",
        action="append",
        help="also answer requests for this Host name (repeatable; .example.test: it and the names "
        "below it; '*': any). Answered already: localhost, IP addresses, --host, Django's "
        "ALLOWED_HOSTS; other names get a 400 (DNS rebinding)",
    )
    add("--port", metavar="PORT", help="port to listen on (default 8000)")
    add("--working-dir", metavar="DIR", help="project folder (default: the current one)")
    add("--python-path", metavar="DIR", action="append", help="add to sys.path (repeatable)")
    add("--env", metavar="NAME=VALUE", action="append", help="set in the app's os.environ")
    add(
        "--env-file",
        metavar="FILE",
        help="NAME=VALUE lines (dotenv) for the app's os.environ: secrets stay off the "
        "command line, which every local user can read",
    )
    if settings_option:
        add("--settings", dest="django_settings", metavar="MODULE", help="DJANGO_SETTINGS_MODULE")
    add("--log-level", choices=LOG_LEVELS, help="Apache LogLevel (default warn)")
    add("--server-root", metavar="DIR", help="keep the generated server files here")
    add("--user", help="as root: the user the daemons run as (default: a user namespace)")
    add("--group", help="as root: the group the daemons run as")
    add("--shutdown-timeout", dest="shutdown_timeout_s", metavar="S", help="default 5")
    add("--queue-timeout", dest="queue_timeout_s", metavar="S", help="default 45; 0 = off")
    add("--request-timeout", dest="request_timeout_s", metavar="S", help="default 60; 0 = off")
    add("--reload", action=argparse.BooleanOptionalAction, help="reload on changes (default on)")
    add("--watch", metavar="PATH", action="append", help="also watch this file or glob")
    add(
        "--exclude",
        metavar="GLOB",
        action="append",
        help="files that never reload and are not watched: '*.log', 'media', 'app/generated/**' "
        "(relative to the project folder; repeatable)",
    )
    add("--reload-backend", choices=RELOAD_BACKENDS, help="file-change backend (default auto)")
    add(
        "--restart-mode",
        choices=RESTART_MODES,
        help="standby (default): a warmed standby daemon group imports the new code, then "
        "takes the requests (see --standbys); process: each daemon restarts itself "
        "(one group, ~1 s slower); "
        "server: graceful restart of Apache (a request in the switch-over may get 503)",
    )
    add(
        "--standbys",
        metavar="N",
        help="standby daemon groups of the hand-over: 1 (default) or 2 (a second warm group, "
        "for a group's memory more)",
    )
    add("--poll-interval", dest="poll_interval_s", metavar="S", help="poll backend interval")
    add(
        "--reload-settle",
        dest="reload_settle_s",
        metavar="S",
        help="reload once the code has not changed for S seconds, so a burst of saves (a git "
        "pull, a deploy) gives one reload (default 0.05 under start and config standalone, 1 for a system Apache)",
    )
    add("--static", metavar="URL=DIR", action="append", help="serve DIR at URL from Apache")
    add(
        "--proxy",
        metavar="PATH=URL",
        action="append",
        help="mount another local server under PATH, WebSockets included "
        "(e.g. --proxy /vite=http://127.0.0.1:5173/vite; repeatable)",
    )
    add(
        "--https",
        metavar="PORT",
        nargs="?",
        const="0",
        help="serve HTTPS on PORT as well (default: the port + 443, e.g. 8443), with a "
        "certificate from your local CA (made once; `wsgidev trust` installs it)",
    )
    add("--ssl-certificate", metavar="FILE", help="with --https: your own certificate (PEM)")
    add("--ssl-key", metavar="FILE", help="with --https: the certificate's key (PEM)")
    add(
        "--http2",
        action=argparse.BooleanOptionalAction,
        help="HTTP/2 (mod_http2): on by default with --https where the module is there; "
        "--http2 also serves it over plain HTTP (h2c), --no-http2 turns it off",
    )
    add(
        "--include",
        metavar="FILE",
        action="append",
        help="Apache directives of your own, included at the end of the config (repeatable)",
    )
    add("--httpd", metavar="PATH", help="the Apache binary (default: as mod_wsgi finds it)")
    add(
        "--static-root",
        dest="django_static",
        action="store_const",
        const="root",
        help="Django: Apache serves STATIC_ROOT at STATIC_URL and MEDIA_ROOT at MEDIA_URL, "
        "as in production (run collectstatic first); default: with DEBUG on, the app serves "
        "STATIC_URL from the staticfiles finders, as runserver does",
    )
    add(
        "--nostatic",
        dest="django_static",
        action="store_const",
        const="off",
        help="Django: serve no static files",
    )
    add(
        "--random-delay",
        dest="random_delay_ms",
        metavar="MAX_MS",
        help="sleep a random 0..MAX_MS ms before each request, to shake out race conditions",
    )
    add(
        "--live-reload",
        action=argparse.BooleanOptionalAction,
        help="HTML pages refresh by themselves once new code serves (stylesheets are swapped in "
        "place); the event stream is served by Apache and wsgidev, not by a daemon thread",
    )
    add(
        "--print-sql",
        action=argparse.BooleanOptionalAction,
        help="print each SQL query a Django request runs, with its time (every access line "
        "counts them with or without this)",
    )
    add(
        "--run",
        metavar="NAME=COMMAND",
        action="append",
        help="a service beside the server (a worker, a watcher), stopped with it; a Python "
        "command restarts when code it imported changes, any other when it exits (repeatable)",
    )
    add(
        "--procfile",
        metavar="FILE",
        help="services from a Procfile (name: command lines; its web entry is wsgidev itself); "
        "default ./Procfile.dev where there is one, 'off' for none",
    )
    add(
        "--werkzeug",
        action=argparse.BooleanOptionalAction,
        help="Werkzeug's debugger on a view's exception, its console working in every frame "
        "whichever process raised (needs the werkzeug package; answers loopback clients only)",
    )
    add(
        "--pdb",
        action=argparse.BooleanOptionalAction,
        help="post-mortem: an exception a request raises opens pdb on this terminal at the "
        "frame that raised it, then the 500 goes out (breakpoint() works with or without this)",
    )
    add(
        "--debug",
        action="store_const",
        const=True,
        help="one process, one thread, the app inside Apache's own process with this terminal "
        "as its stdin, for debuggers that need that; no reloading. breakpoint() works without it",
    )


def build_parser() -> argparse.ArgumentParser:
    """The wsgidev command line."""
    parser = _Parser(prog="wsgidev", description="Apache + mod_wsgi daemon mode, reloading.")
    parser.add_argument("--version", action="version", version=f"wsgidev {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    start = commands.add_parser("start", help="run Apache in the foreground")
    start.add_argument("target", nargs="?", help="mysite/wsgi.py, mysite.wsgi:application")
    add_server_arguments(start)

    config = commands.add_parser("config", help="print a config for another way to run")
    config.add_argument("kind", choices=("standalone", "apache", "express"))
    config.add_argument("target", nargs="?", help="mysite/wsgi.py, mysite.wsgi:application")
    config.add_argument("--output", dest="output_dir", metavar="DIR", help="support files")
    config.add_argument(
        "--load-module",
        action=argparse.BooleanOptionalAction,
        help="apache: include LoadModule for the venv's mod_wsgi (default on)",
    )
    add_server_arguments(config)

    trust = commands.add_parser(
        "trust", help="install your local CA (for --https) where this system trusts it"
    )
    trust.add_argument("--uninstall", action="store_true", help="take it out again")
    trust.add_argument(
        "--system-store",
        metavar="DIR",
        help="put the CA file in DIR and run nothing else (packaging, tests)",
    )

    doctor = commands.add_parser("doctor", help="check this machine can run wsgidev")
    doctor.add_argument(
        "kind",
        nargs="?",
        choices=("apache",),
        help="apache: check for the `config apache` snippet under the system Apache (who its "
        "daemons run as and what they can read) instead of for `wsgidev start`",
    )
    doctor.add_argument("--port", metavar="PORT", help="port to check (default 8000)")
    doctor.add_argument("--user", help="the user the daemons run as (default: as planned)")
    doctor.add_argument("--group", help="their group")
    doctor.add_argument("--host", help="address to check (default 127.0.0.1)")
    doctor.add_argument("--httpd", metavar="PATH", help="the Apache binary to check")
    return parser


def options_from_args(args: argparse.Namespace, environ: dict[str, str]) -> Options:
    """Options from parsed arguments layered over env and pyproject."""
    values: dict[str, Any] = dict(vars(args))
    return load_options(values, environ, Path.cwd())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `wsgidev` console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "trust":
            from wsgidev.requirements import require

            require("https")
            from wsgidev.trust import run_trust

            return run_trust(args.uninstall, args.system_store)
        options = options_from_args(args, dict(os.environ))
        if args.command == "start":
            from wsgidev.server import run

            return run(options)
        if args.command == "config":
            from wsgidev.configure import print_config

            return print_config(args.kind, options)
        if args.kind == "apache" and (args.port or args.host):
            raise WsgidevError(
                "doctor apache checks no port: the system Apache listens where its config says",
                "drop --port and --host (they are for wsgidev start's check)",
            )
        from wsgidev.doctor import run_doctor

        return run_doctor(options, system_apache=args.kind == "apache")
    except WsgidevError as exc:
        print(f"wsgidev: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
