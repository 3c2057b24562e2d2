"""The run plan: everything `wsgidev start` and `wsgidev config` check and decide before
Apache starts (the target, Apache, who it runs as, TLS, the env file, Django's settings), in
one frozen RunPlan. Raises WsgidevError, in one line, for what a user can fix.

The Options stay as they were built from what the user typed; what the run adds to them (the
env file's variables, STATIC_ROOT's Aliases, ALLOWED_HOSTS' names) is a field of the plan."""

from __future__ import annotations

import errno
import importlib.util
import os
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from wsgidev import apachequote, requirements
from wsgidev.apache import (
    ApacheInstall,
    find_apache,
    python_library_readable,
    require_own_libpython,
)
from wsgidev.apachequote import bare_host
from wsgidev.django import datapaths
from wsgidev.envfile import EnvFileError, read_env_file
from wsgidev.errors import WsgidevError
from wsgidev.options import ENV_NAME, Options
from wsgidev.privileges import RunAs, plan_run_as
from wsgidev.services import ServiceSpec, check_unique, command_line, read_procfile
from wsgidev.shared.serverroot import BROWSER_RELOAD_EVENTS_PATH, LIVE_EVENTS_PATH
from wsgidev.target import Target, resolve_target


@dataclass(frozen=True, kw_only=True)
class Tls:
    """HTTPS and HTTP/2, decided from the options and what this Apache has."""

    port: int | None = None
    listen: str = ""
    url: str = ""
    certificate: str = ""
    key: str = ""
    from_local_ca: bool = False
    h2: bool = False  # HTTP/2 over HTTPS
    h2c: bool = False  # HTTP/2 over plain HTTP
    load_http2: bool = False


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Everything checked and decided before Apache starts, once: what the renderer, `config`
    and the runner (server.py) consume."""

    options: Options  # as built from the command line, WSGIDEV_*, pyproject: never rebuilt
    target: Target
    apache: ApacheInstall
    run_as: RunAs
    tls: Tls = Tls()
    ca_certificate: str | None = None  # the local CA's certificate, where it signed ours
    # The app's variables: --env's over --env-file's.
    env: tuple[tuple[str, str], ...]
    # What Apache serves itself, (URL, folder): --static's, then --static-root's Aliases.
    static: tuple[tuple[str, str], ...]
    # The services beside the server (--run, the Procfile), with their command lines.
    services: tuple[ServiceSpec, ...] = ()
    procfile_web: bool = False  # the Procfile's web entry was skipped (it is wsgidev)
    procfile: str | None = None  # the Procfile the services came from, where one did
    # The Host names answered beyond localhost and addresses: --allow-host's, then the names
    # in Django's ALLOWED_HOSTS.
    allow_host: tuple[str, ...]
    # Django's ALLOWED_HOSTS held "*", which the Host check does not take as any name.
    django_any_host: bool = False
    # What the Django project writes (SQLite, MEDIA_ROOT) that the daemon user cannot.
    read_only: tuple[str, ...] = ()
    # The browsers' event-stream paths Apache proxies to wsgidev (live_stream_paths).
    stream_paths: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """Where the app answers over HTTP."""
        return f"http://{self.options.bracketed_host}:{self.options.port}/"


def prepare(options: Options) -> RunPlan:
    """Resolve the target, find Apache, and decide who it runs as; raise WsgidevError on problems."""
    target = resolve_target(options)
    # Before the settings are read: they may use the env file's values.
    env = env_with_file(options) if options.env_file else options.env
    settings_later = None
    if target.kind == "django":
        from wsgidev.django.settings_reader import read_later, require_django

        require_django()
        settings_later = read_later(("ALLOWED_HOSTS", *datapaths.SETTINGS), options, target, env)
    static = options.static
    if options.django_static == "root":
        from wsgidev.django.static import static_root

        static = (*static, *static_root(options, target, env))
    services, procfile_web, procfile = plan_services(options)
    if options.werkzeug:
        requirements.require("werkzeug")
        env = (*env, ("WERKZEUG_DEBUG_PIN", debugger_pin(env)))
    for folder in options.python_path:
        if not Path(folder).is_dir():
            raise WsgidevError(
                f"--python-path {folder} is not a folder", "pass a folder that exists"
            )
    for url, folder in static:
        if not Path(folder).is_dir():
            raise WsgidevError(
                f"--static {url}={folder}: {folder} is not a folder", "pass a folder that exists"
            )
    for include in options.include:
        if not Path(include).is_file():
            raise WsgidevError(
                f"--include {include} is not a file", "pass the path of a file of Apache directives"
            )
    if (
        options.server_root
        and Path(options.server_root).exists()
        and not Path(options.server_root).is_dir()
    ):
        raise WsgidevError(
            f"--server-root {options.server_root} is a file, not a folder",
            "name a folder (or drop it)",
        )
    apache = find_apache(options.httpd)
    require_own_libpython(apache)
    must_read = [*python_library_readable(apache), Path(target.project_dir)]
    run_as = plan_run_as(options.user, options.group, must_read)
    tls, ca_certificate = _tls(options, apache)
    settings = (settings_later() if settings_later is not None else None) or {}
    django_hosts = settings.get("ALLOWED_HOSTS")
    django_hosts = [str(h) for h in django_hosts] if isinstance(django_hosts, list) else []
    read_only: list[str] = []
    if settings:
        paths = datapaths.data_paths(settings, str(options.working_dir))
        read_only = datapaths.unwritable(paths, run_as)
    return RunPlan(
        read_only=tuple(read_only),
        django_any_host="*" in django_hosts and "*" not in options.allow_host,
        options=options,
        target=target,
        apache=apache,
        run_as=run_as,
        tls=tls,
        ca_certificate=ca_certificate,
        env=env,
        services=services,
        procfile_web=procfile_web,
        procfile=procfile,
        static=static,
        allow_host=allow_hosts(options, django_hosts),
        stream_paths=live_stream_paths(options, target),
    )


def allow_hosts(options: Options, django_hosts: list[str]) -> tuple[str, ...]:
    """--allow-host's names and those in Django's ALLOWED_HOSTS; not "*" (a common dev
    setting, which would turn the check off), nor what is no host name."""
    if "*" in options.allow_host:
        return options.allow_host
    names = [
        name
        for name in django_hosts
        if apachequote.HOST_NAME.fullmatch(name) and not apachequote.answered_anyway(name)
    ]
    return tuple(dict.fromkeys([*options.allow_host, *names]))


def live_stream_paths(options: Options, target: Target) -> tuple[str, ...]:
    """The event-stream paths Apache hands to wsgidev (not to a daemon) under wsgidev start:
    --live-reload's, and django-browser-reload's where that package is installed."""
    if options.debug or not options.reload:
        return ()
    paths = [LIVE_EVENTS_PATH] if options.live_reload else []
    if target.kind == "django" and importlib.util.find_spec("django_browser_reload") is not None:
        paths.append(BROWSER_RELOAD_EVENTS_PATH)
    return tuple(paths)


def tls_layout(
    options: Options,
    apache: ApacheInstall,
    certificate: tuple[str, str] | None = None,
    from_local_ca: bool = False,
) -> Tls:
    """HTTPS on options.https_port with certificate (file, key); HTTP/2 where asked or, with
    HTTPS, where mod_http2 is there."""
    have_http2 = Path(apache.modules_dir, "mod_http2.so").is_file()
    h2c = options.http2 is True
    port = options.https_port
    h2 = port is not None and (options.http2 is True or (options.http2 is None and have_http2))
    if port is None or certificate is None:
        return Tls(h2c=h2c, load_http2=h2c)
    host = options.bare_host
    bracketed = options.bracketed_host
    return Tls(
        port=port,
        listen=f"{bracketed}:{port}",
        url=f"https://{'localhost' if host in ('127.0.0.1', '::1') else bracketed}:{port}/",
        certificate=certificate[0],
        key=certificate[1],
        from_local_ca=from_local_ca,
        h2=h2,
        h2c=h2c,
        load_http2=h2 or h2c,
    )


def _tls(options: Options, apache: ApacheInstall) -> tuple[Tls, str | None]:
    """HTTPS's certificate (the user's, checked, or one from the local CA) and HTTP/2."""
    if options.https is None:
        return tls_layout(options, apache), None
    # Imported here: cryptography is the https extra, and costs other starts time for nothing.
    requirements.require("https")
    from wsgidev.certs import LocalCA, check_pair

    if options.ssl_certificate and options.ssl_key:
        check_pair(options.ssl_certificate, options.ssl_key)
        pair = (options.ssl_certificate, options.ssl_key)
        return tls_layout(options, apache, pair), None
    ca = LocalCA()
    host = options.bare_host
    names = [] if host in ("0.0.0.0", "::") else [host]
    try:
        issued = ca.issue(names, ca.folder / "server")
    except OSError as exc:
        raise WsgidevError(
            f"--https: the local certificate authority cannot be kept in {ca.folder}: "
            f"{exc.strerror}",
            "set XDG_DATA_HOME (or HOME) to a folder you can write, or pass "
            "--ssl-certificate and --ssl-key",
        ) from None
    pair = (str(issued.certificate), str(issued.key))
    return tls_layout(options, apache, pair, from_local_ca=True), str(ca.certificate_path)


def plan_services(options: Options) -> tuple[tuple[ServiceSpec, ...], bool, str | None]:
    """--run's services, then the Procfile's (and whether it had a web entry, and which file it
    was); each command found (one line if not)."""
    specs = [ServiceSpec(name, command.strip()) for name, command in options.run]
    web = False
    procfile = options.procfile
    if procfile is None and (Path(options.working_dir) / "Procfile.dev").is_file():
        procfile = "Procfile.dev"
    if procfile == "off":
        procfile = None
    if procfile:
        listed, web = read_procfile(Path(options.working_dir, procfile))
        specs += listed
    check_unique(specs)
    for spec in specs:
        command_line(spec.command, search_path())
    return tuple(specs), web, procfile


def search_path() -> str:
    """PATH with this Python's own bin folder first (a venv's console scripts)."""
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", os.defpath)])


def debugger_pin(env: tuple[tuple[str, str], ...]) -> str:
    """The PIN of Werkzeug's console: WERKZEUG_DEBUG_PIN's (--env, or wsgidev's environment),
    else a new one for this run. Not Werkzeug's own: that one is derived from what every local
    user can read (the user name, the app's module, the MAC address, /etc/machine-id), so another
    user could compute it. It reaches the daemons in Apache's environment with the --env values
    (server.app_environ), which no other user reads, and the terminal prints it."""
    given = dict(env).get("WERKZEUG_DEBUG_PIN") or os.environ.get("WERKZEUG_DEBUG_PIN")
    if given:
        if given != "off" and not given.replace("-", "").isdecimal():
            # Werkzeug would quietly use its own PIN instead, which other users can compute.
            raise WsgidevError(
                f"WERKZEUG_DEBUG_PIN={given!r} is no PIN: Werkzeug takes digits (and dashes) only",
                "set it to digits such as 123-456-789, or 'off', or unset it for a new one each run",
            )
        return given
    digits = f"{secrets.randbelow(10**9):09d}"
    return f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"


def env_with_file(options: Options) -> tuple[tuple[str, str], ...]:
    """--env-file's variables with --env's (which win)."""
    path = Path(options.env_file or "")
    if not path.is_file():
        raise WsgidevError(f"--env-file {path} is not a file", "pass a file of NAME=VALUE lines")
    try:
        values = read_env_file(path)
    except (OSError, UnicodeDecodeError, EnvFileError) as exc:
        raise WsgidevError(
            f"--env-file {path} cannot be read: {exc}", "write NAME=VALUE lines in UTF-8"
        ) from None
    bad = [k for k in values if not ENV_NAME.match(k)]
    if bad:
        raise WsgidevError(f"--env-file {path}: {bad[0]!r} is not a variable name", "fix that line")
    return tuple({**values, **dict(options.env)}.items())


def check_address(host: str, port: int, flag: str = "--port") -> None:
    """Fail clearly when host is not an address of this machine or port is taken."""
    try:
        infos = socket.getaddrinfo(bare_host(host), port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise WsgidevError(
            f"--host {host} does not resolve", "pass e.g. --host 127.0.0.1"
        ) from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise WsgidevError(
                    f"port {port} on {host} is already in use",
                    f"stop whatever serves it, or pass another port: {flag} {port + 1}",
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise WsgidevError(
                    f"--host {host} is not an address of this machine",
                    "pass 127.0.0.1 (or 0.0.0.0 to listen on every interface)",
                ) from None
            if exc.errno == errno.EACCES:
                raise WsgidevError(
                    f"port {port} needs privileges to bind", "pass a port above 1023"
                ) from None
            raise
