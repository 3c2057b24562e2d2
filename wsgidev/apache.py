"""Where Apache, its modules and mod_wsgi live, as mod_wsgi itself knows them (its apxs settings)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from types import ModuleType

from wsgidev.errors import WsgidevError

INSTALL_APACHE = (
    "install Apache and its headers: apt-get install apache2 apache2-dev (Debian/Ubuntu)"
)
INSTALL_MOD_WSGI = "pip install mod_wsgi into this environment (it builds against Apache's apxs)"


@dataclass(frozen=True, kw_only=True)
class ApacheInstall:
    """The pieces of the system Apache and of the venv's mod_wsgi that a config refers to."""

    httpd: str
    modules_dir: str
    mod_wsgi_so: str
    python_home: str
    python_dylib: str
    mime_types: str


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
    httpd = httpd_override or str(apxs.HTTPD)
    resolved = shutil.which(httpd) or shutil.which(httpd, path="/usr/sbin:/usr/local/sbin")
    if resolved is None:
        raise WsgidevError(f"Apache httpd not found (looked for {httpd})", INSTALL_APACHE)
    if httpd_override and not apache_version(resolved):
        raise WsgidevError(
            f"--httpd {httpd_override} is not Apache httpd (`{resolved} -v` names no Apache/)",
            "pass the Apache binary (apache2 or httpd), or drop --httpd",
        )
    modules_dir = str(apxs.LIBEXECDIR)
    if not os.path.isdir(modules_dir):
        raise WsgidevError(f"Apache's modules folder {modules_dir} is missing", INSTALL_APACHE)
    find_mimetypes = getattr(platform, "find_mimetypes", None)
    mime_types = str(find_mimetypes()) if find_mimetypes else "/etc/mime.types"
    return ApacheInstall(
        httpd=resolved,
        modules_dir=modules_dir,
        mod_wsgi_so=mod_wsgi_so,
        python_home=os.path.normpath(sys.prefix),
        python_dylib=str(getattr(platform, "PYTHON_DYLIB", "") or ""),
        mime_types=mime_types,
    )


def apache_version(httpd: str) -> str:
    """'2.4.62' or '' when the binary does not say."""
    try:
        result = subprocess.run(
            [httpd, "-v"], capture_output=True, text=True, timeout=10, check=False
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
