"""`wsgidev trust`: install the local CA (wsgidev/certs.py) where this system trusts it, or say
exactly what to run where wsgidev cannot; `--uninstall` takes it out again. Nothing is ever
trusted without this command being run.

Debian and Ubuntu: the system store (/usr/local/share/ca-certificates + update-ca-certificates,
which curl, Python's ssl, and most tools read). Chromium and Firefox on Linux keep their own NSS
databases: added with NSS's `certutil` where it is installed. macOS and Windows: the command to
run is printed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from wsgidev.certs import LocalCA

SYSTEM_STORE = Path("/usr/local/share/ca-certificates")
STORE_NAME = "wsgidev-rootCA.crt"
NSS_NICKNAME = "wsgidev local development CA"


def is_trusted(ca: LocalCA) -> bool:
    """Whether `wsgidev trust` put this CA in the system store."""
    try:
        return (SYSTEM_STORE / STORE_NAME).read_bytes() == ca.certificate_path.read_bytes()
    except OSError:
        return False


def run_trust(
    uninstall: bool = False, system_store: str | None = None, out: TextIO = sys.stdout
) -> int:
    """Install (or remove) the local CA; 0 when every store that could be changed was."""
    ca = LocalCA()
    if uninstall and not ca.exists():
        out.write(f"wsgidev: no local CA at {ca.folder}: nothing to take out\n")
        return 0
    ca.ensure()
    status = 0
    if sys.platform == "darwin":
        verb = "remove-trusted-cert" if uninstall else "add-trusted-cert -d -r trustRoot"
        keychain = "" if uninstall else " -k /Library/Keychains/System.keychain"
        out.write(f"run: sudo security {verb}{keychain} {ca.certificate_path}\n")
        return 0
    if sys.platform == "win32":
        action = f'-delstore ROOT "{NSS_NICKNAME}"' if uninstall else "-addstore -f ROOT"
        out.write(f"run (as administrator): certutil {action} {ca.certificate_path}\n")
        return 0
    status |= _system_store(ca, uninstall, system_store, out)
    if system_store is None:
        status |= _nss_stores(ca, uninstall, out)
    return status


def _system_store(ca: LocalCA, uninstall: bool, given: str | None, out: TextIO) -> int:
    folder = Path(given) if given else SYSTEM_STORE
    update = shutil.which("update-ca-certificates")
    if given is None and (update is None or not folder.parent.is_dir()):
        out.write(
            "wsgidev: this system has no Debian-style store (update-ca-certificates); add "
            f"{ca.certificate_path} to its trusted certificates by hand\n"
        )
        return 1
    target = folder / STORE_NAME
    try:
        if uninstall:
            target.unlink(missing_ok=True)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ca.certificate_path, target)
    except PermissionError:
        verb = f"rm -f {target}" if uninstall else f"cp {ca.certificate_path} {target}"
        out.write(f"wsgidev: no permission: run sudo {verb} && sudo update-ca-certificates\n")
        return 1
    if given is None and update is not None:
        subprocess.run([update, "--fresh" if uninstall else "--verbose"], capture_output=True,
                       check=False, timeout=120)  # fmt: skip
    done = "removed from" if uninstall else "installed in"
    out.write(f"wsgidev: local CA {done} {folder}\n")
    return 0


def _nss_stores(ca: LocalCA, uninstall: bool, out: TextIO) -> int:
    databases = [
        path.parent
        for pattern in (".pki/nssdb/cert9.db", ".mozilla/firefox/*/cert9.db")
        for path in Path.home().glob(pattern)
    ]
    if not databases:
        return 0
    certutil = shutil.which("certutil")
    if certutil is None:
        out.write(
            "wsgidev: Chromium/Firefox keep their own certificate stores: install NSS's certutil "
            "(apt-get install libnss3-tools, dnf install nss-tools, brew install nss) and run "
            "wsgidev trust again\n"
        )
        return 1
    for database in databases:
        if uninstall:
            command = [certutil, "-d", f"sql:{database}", "-D", "-n", NSS_NICKNAME]
        else:
            command = [certutil, "-d", f"sql:{database}", "-A", "-t", "C,,", "-n", NSS_NICKNAME,
                       "-i", str(ca.certificate_path)]  # fmt: skip
        subprocess.run(command, capture_output=True, check=False, timeout=60)
        out.write(f"wsgidev: local CA {'removed from' if uninstall else 'added to'} {database}\n")
    return 0
