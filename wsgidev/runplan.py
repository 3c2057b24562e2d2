"""The run plan: everything `wsgidev start` and `wsgidev config` check and decide before
Apache starts (the target, Apache, who it runs as, TLS, the env file, Django's settings), in
one frozen RunPlan. Raises WsgidevError, in one line, for what a user can fix."""

from __future__ import annotations

import dataclasses
import errno
import socket
from dataclasses import dataclass
from pathlib import Path

from wsgidev import apachequote, render, requirements
from wsgidev.apache import (
    ApacheInstall,
    find_apache,
    python_library_readable,
    require_own_libpython,
)
from wsgidev.django import datapaths
from wsgidev.envfile import EnvFileError, read_env_file
from wsgidev.errors import WsgidevError
from wsgidev.options import ENV_NAME, Options
from wsgidev.privileges import RunAs, plan_run_as
from wsgidev.target import Target, resolve_target


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Everything checked and decided before Apache starts, once: what the renderer, `config`,
    `doctor` and the runner (server.py) consume."""

    options: Options
    target: Target
    apache: ApacheInstall
    run_as: RunAs
    tls: render.Tls
    ca_certificate: str | None = None  # the local CA's certificate, where it signed ours
    # Django's ALLOWED_HOSTS held "*", which the Host check does not take as any name.
    django_any_host: bool = False
    # What the Django project writes (SQLite, MEDIA_ROOT) that the daemon user cannot.
    read_only: tuple[str, ...] = ()
    # The browsers' event-stream paths Apache proxies to wsgidev (render.live_stream_paths).
    stream_paths: tuple[str, ...] = ()


def prepare(options: Options) -> RunPlan:
    """Resolve the target, find Apache, and decide who it runs as; raise WsgidevError on problems.
    With --static-root the returned options carry the Aliases read from the Django settings."""
    target = resolve_target(options)
    if options.env_file:
        options = with_env_file(options)  # before the settings are read: they may use its values
    settings_later = None
    if target.kind == "django":
        from wsgidev.django.settings_reader import read_later, require_django

        require_django()
        settings_later = read_later(("ALLOWED_HOSTS", *datapaths.SETTINGS), options, target)
    if options.django_static == "root":
        from wsgidev.django.static import with_static_root

        options = with_static_root(options, target)
    for folder in options.python_path:
        if not Path(folder).is_dir():
            raise WsgidevError(
                f"--python-path {folder} is not a folder", "pass a folder that exists"
            )
    for url, folder in options.static:
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
    if "*" not in options.allow_host:
        options = with_django_hosts(options, django_hosts)
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
        stream_paths=tuple(render.live_stream_paths(options, target)),
    )


def with_django_hosts(options: Options, allowed_hosts: list[str]) -> Options:
    """Options whose Host check answers the names in Django's ALLOWED_HOSTS too; not "*" (a
    common dev setting, which would turn the check off), nor what is no host name."""
    names = [
        name
        for name in allowed_hosts
        if apachequote.HOST_NAME.fullmatch(name) and not apachequote.answered_anyway(name)
    ]
    return dataclasses.replace(
        options, allow_host=tuple(dict.fromkeys([*options.allow_host, *names]))
    )


def _tls(options: Options, apache: ApacheInstall) -> tuple[render.Tls, str | None]:
    """HTTPS's certificate (the user's, checked, or one from the local CA) and HTTP/2."""
    if options.https is None:
        return render.tls_layout(options, apache), None
    # Imported here: cryptography is the https extra, and costs other starts time for nothing.
    requirements.require("https")
    from wsgidev.certs import LocalCA, check_pair

    if options.ssl_certificate and options.ssl_key:
        check_pair(options.ssl_certificate, options.ssl_key)
        pair = (options.ssl_certificate, options.ssl_key)
        return render.tls_layout(options, apache, pair), None
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
    return render.tls_layout(options, apache, pair, from_local_ca=True), str(ca.certificate_path)


def with_env_file(options: Options) -> Options:
    """The options with --env-file's variables added under --env's (which win)."""
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
    merged = {**values, **dict(options.env)}
    return dataclasses.replace(options, env=tuple(merged.items()))


def check_address(host: str, port: int, flag: str = "--port") -> None:
    """Fail clearly when host is not an address of this machine or port is taken."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
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
