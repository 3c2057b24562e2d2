"""Where Apache, its modules and mod_wsgi live, as mod_wsgi itself knows them (its apxs settings)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType

from wsgidev.errors import WsgidevError

INSTALL_APACHE = (
    "install Apache and its headers: apt-get install apache2 apache2-dev (Debian/Ubuntu), "
    "dnf install httpd httpd-devel (Fedora/RHEL), brew install httpd (macOS), "
    "or pip install mod_wsgi-httpd before mod_wsgi"
)
INSTALL_MOD_WSGI = "pip install mod_wsgi into this environment (it builds against Apache's apxs)"
INSTALL_MIME_TYPES = (
    "install a MIME types file: apt-get install media-types (Debian/Ubuntu), "
    "dnf install mailcap (Fedora/RHEL)"
)
# Apache's settings from `httpd -V`: -D NAME="value" (or -D NAME alone).
_DEFINE = re.compile(r'^\s*-D\s+(\w+)(?:="(.*)")?\s*$')


@dataclass(frozen=True, kw_only=True)
class ApacheInstall:
    """The pieces of the system Apache and of the venv's mod_wsgi that a config refers to."""

    httpd: str
    modules_dir: str
    mod_wsgi_so: str
    python_home: str
    python_dylib: str
    mime_types: str
    # A pip-built Apache (mod_wsgi-httpd) finds its own libapr and libpcre2 only on this path,
    # as mod_wsgi-express's scripts set it; empty for an Apache the system's loader finds.
    library_path: str = ""
    library_path_var: str = "LD_LIBRARY_PATH"
    # Where each piece came from, for `wsgidev doctor`.
    httpd_found_by: str = ""
    mime_types_found_by: str = ""

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment every run of this httpd gets: base (os.environ) with library_path
        first on library_path_var when there is one."""
        env = dict(os.environ if base is None else base)
        if self.library_path:
            rest = env.get(self.library_path_var, "")
            env[self.library_path_var] = self.library_path + (f":{rest}" if rest else "")
        return env


def _mod_wsgi_platform() -> tuple[ModuleType, ModuleType]:
    """mod_wsgi's platform and apxs_config modules (mod_wsgi >= 6: .express; older: .server)."""
    for package in ("mod_wsgi.express", "mod_wsgi.server"):
        try:
            platform = import_module(f"{package}.platform" if "express" in package else package)
            apxs = import_module(f"{package}.apxs_config")
        except ImportError:
            continue
        return platform, apxs
    raise WsgidevError(f"mod_wsgi is not installed for {sys.executable}", INSTALL_MOD_WSGI)


def find_apache(httpd_override: str | None = None) -> ApacheInstall:
    """Locate Apache and mod_wsgi the way mod_wsgi-express does, and check they are there."""
    platform, apxs = _mod_wsgi_platform()
    mod_wsgi_so = str(platform.MOD_WSGI_SO)
    if not os.path.isfile(mod_wsgi_so):
        raise WsgidevError(f"mod_wsgi's Apache module {mod_wsgi_so} is missing", INSTALL_MOD_WSGI)
    library_path = ""
    if getattr(apxs, "WITH_HTTPD_PACKAGE", False) and getattr(apxs, "SHLIBPATH", ""):
        library_path = str(apxs.SHLIBPATH)
    library_path_var = str(getattr(apxs, "SHLIBPATH_VAR", "") or "LD_LIBRARY_PATH")
    httpd = httpd_override or str(apxs.HTTPD)
    found_by = "--httpd" if httpd_override else "mod_wsgi's build settings: apxs HTTPD"
    resolved = shutil.which(httpd) or shutil.which(httpd, path="/usr/sbin:/usr/local/sbin")
    if resolved is None:
        raise WsgidevError(f"Apache httpd not found (looked for {httpd})", INSTALL_APACHE)
    if not os.path.isabs(httpd):
        found_by += " on PATH"
    env = ApacheInstall(
        httpd=resolved,
        modules_dir="",
        mod_wsgi_so=mod_wsgi_so,
        python_home="",
        python_dylib="",
        mime_types="",
        library_path=library_path,
        library_path_var=library_path_var,
    ).environ()
    if httpd_override and not apache_version(resolved, env):
        raise WsgidevError(
            f"--httpd {httpd_override} is not Apache httpd (`{resolved} -v` names no Apache/)",
            "pass the Apache binary (apache2 or httpd), or drop --httpd",
        )
    modules_dir = str(apxs.LIBEXECDIR)
    if not os.path.isdir(modules_dir):
        raise WsgidevError(f"Apache's modules folder {modules_dir} is missing", INSTALL_APACHE)
    mime_types, mime_found_by = find_mime_types(resolved, httpd_settings(resolved, env), platform)
    return ApacheInstall(
        httpd=resolved,
        modules_dir=modules_dir,
        mod_wsgi_so=mod_wsgi_so,
        python_home=os.path.normpath(sys.prefix),
        python_dylib=str(getattr(platform, "PYTHON_DYLIB", "") or ""),
        mime_types=mime_types,
        library_path=library_path,
        library_path_var=library_path_var,
        httpd_found_by=found_by,
        mime_types_found_by=mime_found_by,
    )


def httpd_settings(httpd: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What `httpd -V` says it was built with (HTTPD_ROOT, SERVER_CONFIG_FILE, DEFAULT_PIDLOG,
    AP_TYPES_CONFIG_FILE...); empty when it does not answer. `-f /dev/null`: the system's
    own config (which may need its init script's variables) is not read."""
    try:
        result = subprocess.run(
            [httpd, "-V", "-f", os.devnull],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env=env,
        )
    except OSError:
        return {}
    settings: dict[str, str] = {}
    for line in result.stdout.splitlines():
        match = _DEFINE.match(line)
        if match:
            settings[match.group(1)] = match.group(2) or ""
        elif line.startswith("Server MPM:"):
            settings["MPM"] = line.split(":", 1)[1].strip()
    return settings


def _in_root(settings: Mapping[str, str], name: str) -> str:
    """A path setting of `httpd -V`, made absolute against HTTPD_ROOT as Apache does."""
    value = settings.get(name, "")
    if not value or os.path.isabs(value):
        return value
    root = settings.get("HTTPD_ROOT", "")
    return os.path.join(root, value) if root else ""


def find_mime_types(
    httpd: str, settings: Mapping[str, str], platform: ModuleType
) -> tuple[str, str]:
    """Apache's own mime.types, else the system's (mod_wsgi looks only in
    mimetypes.knownfiles); then where it was found. ("", what was tried) when there is none.

    Apache's own is its compiled-in AP_TYPES_CONFIG_FILE, or next to its config file (Homebrew),
    or in conf/ beside the binary's folder: a pip-built Apache (mod_wsgi-httpd) was moved after
    its build, so the HTTPD_ROOT it reports is gone."""
    candidates = []
    for name in ("AP_TYPES_CONFIG_FILE", "SERVER_CONFIG_FILE"):
        path = _in_root(settings, name)
        if path:
            folder = os.path.dirname(path) if name == "SERVER_CONFIG_FILE" else ""
            candidates.append(os.path.join(folder, "mime.types") if folder else path)
    if settings.get("HTTPD_ROOT"):
        candidates.append(os.path.join(settings["HTTPD_ROOT"], "conf", "mime.types"))
    prefix = os.path.dirname(os.path.dirname(os.path.realpath(httpd)))
    candidates.append(os.path.join(prefix, "conf", "mime.types"))
    for path in dict.fromkeys(candidates):
        if os.path.isfile(path):
            return path, "Apache's own: httpd -V and the binary's folder"
    find_mimetypes = getattr(platform, "find_mimetypes", None)
    system = str(find_mimetypes()) if find_mimetypes else ""
    if system and system != os.devnull and os.path.isfile(system):
        return system, "the system's: mimetypes.knownfiles, where mod_wsgi-express looks"
    looked = ", ".join(dict.fromkeys(candidates))
    return "", f"none of Apache's own ({looked}) nor the system's (mimetypes.knownfiles)"


def compiled_modules(httpd: str, env: Mapping[str, str] | None = None) -> set[str]:
    """The modules built into the binary (`httpd -l`: core.c, mod_unixd.c, ...)."""
    try:
        result = subprocess.run(
            [httpd, "-l"], capture_output=True, text=True, timeout=10, check=False, env=env
        )
    except OSError:
        return set()
    return {line.strip() for line in result.stdout.splitlines() if line.strip().endswith(".c")}


def apache_version(httpd: str, env: Mapping[str, str] | None = None) -> str:
    """'2.4.62' or '' when the binary does not say."""
    try:
        result = subprocess.run(
            [httpd, "-v"], capture_output=True, text=True, timeout=10, check=False, env=env
        )
    except OSError:
        return ""
    match = re.search(r"Apache/([\d.]+)", result.stdout)
    return match.group(1) if match else ""


def python_library_readable(install: ApacheInstall) -> list[Path]:
    """The files and folders the daemon's Python must be able to read."""
    paths = [Path(install.python_home), Path(sys.base_prefix), Path(install.mod_wsgi_so)]
    if install.python_dylib:
        paths.append(Path(install.python_dylib))
    return paths


def linked_libpython(shared_object: str) -> str | None:
    """The libpython the dynamic loader gives shared_object (ldd), or None where ldd cannot say."""
    try:
        result = subprocess.run(
            ["ldd", shared_object], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in result.stdout.splitlines():
        name, _, where = line.strip().partition(" => ")
        if name.startswith("libpython") and where:
            path = where.split(" (")[0].strip()
            # "not found": Apache's LoadFile of this Python's libpython comes first and serves.
            return path if path.startswith("/") else None
    return None


def own_libpython() -> Path:
    """The shared libpython of the Python wsgidev runs in."""
    return Path(sysconfig.get_config_var("LIBDIR") or "") / (
        sysconfig.get_config_var("INSTSONAME") or sysconfig.get_config_var("LDLIBRARY") or ""
    )


def require_own_libpython(install: ApacheInstall) -> None:
    """WsgidevError when mod_wsgi loads another Python's libpython (a wheel pip cached for
    another Python of the same version): its daemons would fail at `import math`."""
    linked = linked_libpython(install.mod_wsgi_so)
    ours = own_libpython()
    if linked is not None and os.path.realpath(linked) != os.path.realpath(ours):
        raise WsgidevError(
            f"{install.mod_wsgi_so} loads {linked}, not this Python's {ours} (a mod_wsgi "
            "built for another Python, e.g. a wheel pip cached from another venv)",
            "pip install --force-reinstall --no-cache-dir --no-binary mod_wsgi mod_wsgi",
        )


def system_apache_user() -> tuple[str, str]:
    """The User and Group the system Apache runs as, from its own config (`apachectl -t -D
    DUMP_RUN_CFG`, which reads Debian's envvars and honours APACHE_CONFDIR)."""
    command = next(filter(None, map(shutil.which, ("apache2ctl", "apachectl"))), None)
    if command is None:
        raise WsgidevError(
            "cannot tell which user the system Apache runs as: no apachectl",
            "pass the User of its config: wsgidev doctor apache --user NAME",
        )
    try:
        result = subprocess.run(
            [command, "-t", "-D", "DUMP_RUN_CFG"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise WsgidevError(
            f"cannot run {command}: {exc}", "pass the User of its config: --user NAME"
        ) from None
    ids = dict(re.findall(r'^(User|Group): name="[^"]*" id=(\d+)', result.stdout, re.M))
    if "User" not in ids:
        problem = (result.stderr.strip().splitlines() or ["no User line"])[-1]
        raise WsgidevError(
            f"cannot tell which user the system Apache runs as ({command}: {problem})",
            "pass the User of its config: wsgidev doctor apache --user NAME",
        )
    return f"#{ids['User']}", f"#{ids.get('Group', ids['User'])}"
