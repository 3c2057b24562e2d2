"""The one options object, and how it is built from CLI > WSGIDEV_* env > [tool.wsgidev] > defaults."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsgidev.apachequote import HOST_NAME, bare_host
from wsgidev.errors import WsgidevError
from wsgidev.shared.globpattern import GlobError, escape, exclude_text, has_magic
from wsgidev.shared.globpattern import check as check_glob
from wsgidev.shared.spec import MAX_SETTLE_S, RESTART_MODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # the back-port, the same parser
    import tomli as tomllib

LOG_LEVELS = ("emerg", "alert", "crit", "error", "warn", "notice", "info", "debug")
RELOAD_BACKENDS = ("auto", "inotify", "poll")
# Django static files: "finders" serves STATIC_URL from the finders in the app (runserver's way,
# with DEBUG on); "root" lets Apache serve STATIC_ROOT and MEDIA_ROOT (production's way); "off".
DJANGO_STATIC_MODES = ("finders", "root", "off")
ENV_PREFIX = "WSGIDEV_"
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9-]{1,63})*$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Ceilings: values past these are typing mistakes, not development servers (--processes 500 made
# 1,010 daemons, ~12 GB, and ran out of file descriptors; --threads 5000, 20,000 threads).
MAX_PROCESSES = 64
MAX_THREADS = 500
MAX_PROCESS_THREADS = 2000
MAX_POLL_INTERVAL_S = 3600.0
MAX_TIMEOUT_S = 86400
MAX_RANDOM_DELAY_MS = 600_000
_PROXY_URL = re.compile(r"^https?://[^/\s\"]+(/[^\s\"]*)?$")


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything wsgidev needs to render a config or run a server; validated once, never mutated."""

    target: str | None = None
    # Two processes surface per-process state bugs (module-level caches, in-memory sessions) that
    # one process hides; five threads (mod_wsgi-express's default) surface thread-safety bugs.
    processes: int = 2
    threads: int = 5
    host: str = "127.0.0.1"
    port: int = 8000
    working_dir: str = "."
    python_path: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # A dotenv file of NAME=VALUE lines for the app's os.environ: secrets stay out of the
    # command line (/proc/PID/cmdline is world-readable); read at start, --env wins over it.
    env_file: str | None = None
    django_settings: str | None = None
    log_level: str = "warn"
    server_root: str | None = None
    output_dir: str | None = None
    user: str | None = None
    group: str | None = None
    shutdown_timeout_s: int = 5
    queue_timeout_s: int = 45
    request_timeout_s: int = 60
    reload: bool = True
    watch: tuple[str, ...] = ()
    # Glob patterns of files that never reload (generated code, uploads, a log the app writes):
    # a name ("*.log") as given, a path made absolute like watch's (daemon/monitor/exclude.py).
    exclude: tuple[str, ...] = ()
    reload_backend: str = "auto"
    # process: each daemon restarts itself (no request ever fails; Apache respawns it within its
    # once-a-second maintenance tick). server: graceful restart of the whole Apache (about 0.1 s,
    # but a request arriving in the switch-over can get a 503). See wsgidev/daemon/restart.py.
    restart_mode: str = "standby"
    # Standby groups of the hand-over. One: under a busy load it was as quick as two, and
    # quicker for models.py edits, for a group's memory less; two keep a second group warm
    # (README: Reloading, the trade-off measured).
    standbys: int = 1
    poll_interval_s: float = 1.0
    # A reload starts once no watched file (nor a .py file beside one) changed for this long, so
    # a save, a git checkout or a deploy's burst ends in one. None: DEV_SETTLE_S where wsgidev
    # owns the server (start, config standalone), STAGING_SETTLE_S elsewhere (shared/spec.py).
    reload_settle_s: float | None = None
    load_module: bool = True
    static: tuple[tuple[str, str], ...] = ()
    # Other local servers mounted under a path of the site (a Vite dev server): (path, URL).
    proxy: tuple[tuple[str, str], ...] = ()
    # The user's own Apache directives, included at the end of the generated config.
    include: tuple[str, ...] = ()
    # HTTPS on this port as well (0: the HTTP port + 443, so 8000 -> 8443), with a certificate
    # from the user's local CA (wsgidev/certs.py) unless ssl_certificate/ssl_key are given.
    https: int | None = None
    ssl_certificate: str | None = None
    ssl_key: str | None = None
    # HTTP/2 (mod_http2). None: with HTTPS where mod_http2 is there; True: also h2c over HTTP.
    http2: bool | None = None
    httpd: str | None = None
    django_static: str = "finders"
    # Sleep a random 0..random_delay_ms before each request, to shake out race conditions.
    random_delay_ms: int = 0
    # One process, one thread, the app embedded in Apache with the terminal as stdin (for pdb).
    debug: bool = False
    # Post-mortem: an exception escaping a view opens pdb on wsgidev's terminal at its frame.
    pdb: bool = False
    # HTML pages get a script that refreshes them once new code serves (wsgidev/livereload.py).
    live_reload: bool = False
    # Each SQL query a Django request runs printed on the terminal (wsgidev/daemon/queries.py).
    print_sql: bool = False
    # Werkzeug's in-browser debugger around the app, its console working whichever process
    # raised (wsgidev/daemon/werkzeugdebug.py).
    werkzeug: bool = False
    # Services beside the server (wsgidev/services.py): NAME=COMMAND, and a Procfile's ("off":
    # none; unset: ./Procfile.dev where there is one).
    run: tuple[tuple[str, str], ...] = ()
    procfile: str | None = None
    # Host names answered besides localhost, IP addresses and --host (DNS rebinding: the rest
    # get a 400); ".example.test" also allows the names below it, "*" any. The run plan adds
    # the Django project's ALLOWED_HOSTS (RunPlan.allow_host).
    allow_host: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, most in (("processes", MAX_PROCESSES), ("threads", MAX_THREADS)):
            if not 1 <= getattr(self, name) <= most:
                raise WsgidevError(
                    f"--{name} must be at least 1 and at most {most}, got {getattr(self, name)}",
                    f"pass a whole number such as --{name} 2",
                )
        if self.processes * self.threads > MAX_PROCESS_THREADS:
            raise WsgidevError(
                f"--processes {self.processes} x --threads {self.threads} is "
                f"{self.processes * self.threads} daemon threads, more than {MAX_PROCESS_THREADS}",
                "a development server needs far fewer: pass e.g. --processes 2 --threads 15",
            )
        if not 1 <= self.port <= 65535:
            raise WsgidevError(
                f"--port must be between 1 and 65535, got {self.port}", "pass e.g. --port 8000"
            )
        if not _is_host(self.host):
            raise WsgidevError(
                f"--host {self.host!r} is not an IP address or host name",
                "pass e.g. --host 127.0.0.1",
            )
        for name, command in self.run:
            from wsgidev.services import NAME

            if not NAME.fullmatch(name) or not command.strip():
                raise WsgidevError(
                    f"--run {name}={command!r} is not NAME=COMMAND",
                    "pass e.g. --run 'worker=celery -A proj worker -l info' (a name of letters, "
                    "digits, - and _)",
                )
        if self.werkzeug and self.pdb:
            raise WsgidevError(
                "--werkzeug and --pdb both take the exception a view lets out",
                "choose one: --werkzeug for the browser's console, --pdb for the terminal's",
            )
        for name in self.allow_host:
            if name != "*" and not HOST_NAME.fullmatch(name):
                raise WsgidevError(
                    f"--allow-host {name!r} is not a host name",
                    "pass a name such as myapp.test, .myapp.test for it and the names below it, "
                    "or '*' for any",
                )
        if self.log_level not in LOG_LEVELS:
            raise WsgidevError(
                f"--log-level {self.log_level!r} is not an Apache log level",
                f"use one of {', '.join(LOG_LEVELS)}",
            )
        if self.reload_backend not in RELOAD_BACKENDS:
            raise WsgidevError(
                f"--reload-backend {self.reload_backend!r} is unknown",
                f"use one of {', '.join(RELOAD_BACKENDS)}",
            )
        if self.restart_mode not in RESTART_MODES:
            raise WsgidevError(
                f"--restart-mode {self.restart_mode!r} is unknown",
                f"use one of {', '.join(RESTART_MODES)}",
            )
        if self.standbys not in (1, 2):
            raise WsgidevError(
                f"--standbys must be 1 or 2, got {self.standbys}",
                "pass --standbys 1 to save memory, or --restart-mode process for no standby",
            )
        for name in ("shutdown_timeout_s", "queue_timeout_s", "request_timeout_s"):
            if not 0 <= getattr(self, name) <= MAX_TIMEOUT_S:
                raise WsgidevError(
                    f"--{_flag(name)} must be 0 to {MAX_TIMEOUT_S} seconds, got {getattr(self, name)}",
                    f"pass e.g. --{_flag(name)} 5",
                )
        if not 0 < self.poll_interval_s <= MAX_POLL_INTERVAL_S:  # also refuses nan (and inf)
            raise WsgidevError(
                f"--poll-interval must be above 0 and at most {MAX_POLL_INTERVAL_S:g} seconds, "
                f"got {self.poll_interval_s:g}",
                "pass e.g. --poll-interval 0.5",
            )
        if self.reload_settle_s is not None and not 0 <= self.reload_settle_s <= MAX_SETTLE_S:
            raise WsgidevError(
                f"--reload-settle must be 0 to {MAX_SETTLE_S:g} seconds, "
                f"got {self.reload_settle_s:g}",
                "pass e.g. --reload-settle 1 (how long a deploy may pause between files)",
            )
        for key, _ in self.env:
            if not ENV_NAME.match(key):
                raise WsgidevError(f"--env {key!r} is not a variable name", "use --env NAME=VALUE")
        for url, _ in self.static:
            if not url.startswith("/"):
                raise WsgidevError(
                    f"--static URL {url!r} must start with /", "use --static /url=DIR"
                )
            if url.rstrip("/") == "":
                raise WsgidevError(
                    "--static cannot serve a folder at / (the app is served there)",
                    "pass a path below it, e.g. --static /static=DIR",
                )
        if self.https is not None and not (
            self.https == 0 or (1 <= self.https <= 65535 and self.https != self.port)
        ):
            raise WsgidevError(
                f"--https port must be between 1 and 65535 and not --port, got {self.https}",
                "pass e.g. --https 8443, or --https alone for the port + 443",
            )
        if bool(self.ssl_certificate) != bool(self.ssl_key):
            raise WsgidevError(
                "--ssl-certificate and --ssl-key go together",
                "pass both (a certificate and its key), or neither for wsgidev's local CA",
            )
        if self.ssl_certificate and self.https is None:
            raise WsgidevError("--ssl-certificate needs --https", "pass --https as well")
        for path, url in self.proxy:
            if not path.startswith("/") or path.rstrip("/") == "":
                raise WsgidevError(
                    f"--proxy path {path!r} must be a path below / (the app is at /)",
                    "use --proxy /path=http://127.0.0.1:5173",
                )
            if not _PROXY_URL.match(url) or not _has_valid_port(url):
                raise WsgidevError(
                    f"--proxy URL {url!r} is not an http:// URL of a server",
                    f"use --proxy {path}=http://127.0.0.1:5173",
                )
        for name, patterns in (("watch", self.watch), ("exclude", self.exclude)):
            for pattern in patterns:
                _check_pattern(name, pattern)
        if self.group and not self.user:
            raise WsgidevError("--group needs --user", "pass --user NAME as well")
        if self.django_static not in DJANGO_STATIC_MODES:
            raise WsgidevError(
                f"django-static {self.django_static!r} is unknown",
                f"use one of {', '.join(DJANGO_STATIC_MODES)}",
            )
        if not 0 <= self.random_delay_ms <= MAX_RANDOM_DELAY_MS:
            raise WsgidevError(
                f"--random-delay must be 0 to {MAX_RANDOM_DELAY_MS} milliseconds, "
                f"got {self.random_delay_ms}",
                "pass e.g. --random-delay 300",
            )
        if self.debug and (self.processes, self.threads, self.reload) != (1, 1, False):
            raise WsgidevError(
                "--debug runs one process with one thread and no reloading",
                "drop --processes, --threads and --reload when passing --debug",
            )

    @property
    def bare_host(self) -> str:
        """The host as sockets take it (see bare_host)."""
        return bare_host(self.host)

    @property
    def bracketed_host(self) -> str:
        """The host as a URL or Apache's Listen takes it: an IPv6 literal in brackets."""
        host = self.bare_host
        return f"[{host}]" if ":" in host else host

    @property
    def https_port(self) -> int | None:
        """The HTTPS port, or None without HTTPS."""
        if self.https is None:
            return None
        return self.https or min(self.port + 443, 65535)

    @property
    def working_path(self) -> Path:
        """The project directory, absolute."""
        return Path(self.working_dir)


def _check_pattern(name: str, pattern: str) -> None:
    """A watch path with glob characters, and every exclude pattern, must be a valid glob."""
    if name == "watch" and not has_magic(pattern):
        return
    try:
        check_glob(exclude_text(pattern) if name == "exclude" else pattern)
    except GlobError as exc:
        raise WsgidevError(f"--{name} {pattern!r} {exc}", exc.fix) from None


def _flag(name: str) -> str:
    return name.removesuffix("_s").replace("_", "-")


def _has_valid_port(url: str) -> bool:
    """Whether the URL's port, if it names one, is 1 to 65535 (urllib raises past that)."""
    try:
        port = urllib.parse.urlsplit(url).port
    except ValueError:
        return False
    return port is None or port >= 1


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(bare_host(host))
    except ValueError:
        return bool(_HOSTNAME.match(host))
    # An IPv6 scope (fe80::1%eth0) is an interface name: nothing Apache would read otherwise.
    return bool(re.fullmatch(r"[^%]*(%[A-Za-z0-9_.-]+)?", bare_host(host)))


FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Options))
_PATH_FIELDS = (
    "working_dir",
    "server_root",
    "output_dir",
    "httpd",
    "ssl_certificate",
    "ssl_key",
    "env_file",
)
_PATH_LIST_FIELDS = ("python_path", "watch", "include")


def _field_type(name: str) -> str:
    return str(next(f.type for f in dataclasses.fields(Options) if f.name == name))


def coerce(name: str, value: Any, source: str) -> Any:
    """Convert one raw value (CLI string, env string, or TOML value) into the field's type."""
    kind = _field_type(name)
    where = f"{name.replace('_', '-')} (from {source})"
    if kind.endswith(" | None") and kind != "str | None":
        if value is None:
            return None
        kind = kind.removesuffix(" | None")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise WsgidevError(f"{where} must be a whole number, got {value!r}", "e.g. 2")
        try:
            return int(value)
        except ValueError:
            raise WsgidevError(
                f"{where} must be a whole number, got {value!r}", "pass e.g. 2"
            ) from None
    if kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise WsgidevError(
                f"{where} must be a number, got {value!r}", "pass e.g. 0.5"
            ) from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise WsgidevError(f"{where} must be true or false, got {value!r}", "use 1/0 or true/false")
    if kind == "tuple[str, ...]":
        if isinstance(value, str):
            value = [v for v in value.split(os.pathsep) if v]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise WsgidevError(f"{where} must be a list of strings, got {value!r}", "e.g. ['src']")
        if name in ("watch", "exclude"):
            for pattern in value:  # as written, before a folder is put in front
                _check_pattern(name, pattern)
        return tuple(value)
    if kind == "tuple[tuple[str, str], ...]":
        return _pairs(name, value, where)
    if value is not None and not isinstance(value, str):
        raise WsgidevError(f"{where} must be a string, got {value!r}", "quote it")
    return value


def _pairs(name: str, value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if isinstance(value, Mapping):
        return tuple((str(k), str(v)) for k, v in value.items())
    if isinstance(value, str):  # WSGIDEV_ENV=A=1,B=2; WSGIDEV_RUN: one NAME=COMMAND a line
        value = [v for v in value.split("\n" if name == "run" else ",") if v.strip()]
    pairs = []
    for item in value:
        key, sep, val = str(item).partition("=")
        if not sep:
            raise WsgidevError(f"{where}: {item!r} is not KEY=VALUE", f"write it as {item}=VALUE")
        pairs.append((key, val))
    return tuple(pairs)


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above start."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def read_pyproject(path: Path) -> dict[str, Any]:
    """The [tool.wsgidev] table of a pyproject.toml, keys normalised to field names."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WsgidevError(f"cannot read {path}: {exc}", "fix the TOML syntax") from None
    table = data.get("tool", {}).get("wsgidev", {})
    return read_table(table, f"[tool.wsgidev] in {path}", path.parent)


def read_table(table: Mapping[str, Any], source: str, base: Path) -> dict[str, Any]:
    """A table of settings ([tool.wsgidev], Django's WSGIDEV) as field values; keys may use -
    or _ and any case; relative paths are taken from base."""
    out = {}
    for key, value in table.items():
        name = str(key).replace("-", "_").lower()
        if name not in FIELD_NAMES:
            raise WsgidevError(
                f"unknown key {key!r} in {source}",
                f"use one of {', '.join(n.replace('_', '-') for n in FIELD_NAMES)}",
            )
        out[name] = _absolute(name, coerce(name, value, source), base)
    return out


def read_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    """The WSGIDEV_* variables as field values, plus DJANGO_SETTINGS_MODULE."""
    out: dict[str, Any] = {}
    for key, value in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name in FIELD_NAMES:
            out[name] = coerce(name, value, key)
    if "django_settings" not in out and environ.get("DJANGO_SETTINGS_MODULE"):
        out["django_settings"] = environ["DJANGO_SETTINGS_MODULE"]
    return out


def _absolute(name: str, value: Any, base: Path) -> Any:
    if value is None:
        return value
    if name in _PATH_FIELDS and name != "httpd":
        return str((base / os.path.expanduser(value)).resolve())
    if name in _PATH_LIST_FIELDS:
        return tuple(str(base / os.path.expanduser(v)) for v in value)
    if name == "exclude":
        # A name matches anywhere; a path is anchored where it was written, as watch's are.
        return tuple(
            p if "/" not in exclude_text(p) or p.startswith("/") else f"{escape(str(base))}/{p}"
            for p in value
        )
    if name == "static":
        return tuple((url, str((base / d).resolve())) for url, d in value)
    return value


def load_options(
    cli: Mapping[str, Any],
    environ: Mapping[str, str],
    cwd: Path,
    settings_layer: Mapping[str, Any] | None = None,
) -> Options:
    """Merge the layers (CLI > env > Django WSGIDEV settings > pyproject > defaults) into Options."""
    cli_values = {k: v for k, v in cli.items() if v is not None and k in FIELD_NAMES}
    cli_values = {
        k: _absolute(k, coerce(k, v, "the command line"), cwd) for k, v in cli_values.items()
    }
    env_values = {k: _absolute(k, v, cwd) for k, v in read_environ(environ).items()}
    start = Path(cli_values.get("working_dir") or env_values.get("working_dir") or cwd)
    pyproject = find_pyproject(start)
    file_values = read_pyproject(pyproject) if pyproject else {}
    merged: dict[str, Any] = {}
    merged.update(file_values)
    merged.update(settings_layer or {})
    merged.update(env_values)
    merged.update(cli_values)
    merged.setdefault("working_dir", str(cwd.resolve()))
    if merged.get("debug"):
        # --debug decides these; only a value given on the command line may contradict it,
        # and then Options says why that cannot work.
        for name, value in (("processes", 1), ("threads", 1), ("reload", False)):
            if name not in cli_values:
                merged[name] = value
    return Options(**merged)
