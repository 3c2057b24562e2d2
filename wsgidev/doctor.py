"""`wsgidev doctor`: check what wsgidev needs, each check with its fix."""

from __future__ import annotations

import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from wsgidev import requirements
from wsgidev.apache import (
    INSTALL_APACHE,
    INSTALL_MIME_TYPES,
    ApacheInstall,
    apache_version,
    compiled_modules,
    find_apache,
    linked_libpython,
    own_libpython,
    python_library_readable,
    require_own_libpython,
    system_apache_user,
)
from wsgidev.configure import output_dir
from wsgidev.django import datapaths
from wsgidev.errors import WsgidevError
from wsgidev.options import Options
from wsgidev.privileges import (
    RunAs,
    group_name,
    lookup_group,
    lookup_user,
    plan_run_as,
    unreadable_by,
)
from wsgidev.render import ENTRY_SCRIPT_NAME, MODULES
from wsgidev.runplan import check_address
from wsgidev.target import resolve_target

# Modules some options need, and those options.
OPTIONAL_MODULES = (
    ("mod_proxy.so", "--live-reload, --proxy, django-browser-reload"),
    ("mod_proxy_http.so", "--live-reload, --proxy, django-browser-reload"),
    ("mod_http2.so", "--http2, HTTP/2 with --https"),
    ("mod_ssl.so", "--https"),
    ("mod_socache_shmcb.so", "--https"),
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except WsgidevError as exc:
        return Check(name, False, str(exc))


def _has_mpm(built_in: set[str]) -> bool:
    """Whether the binary has an MPM compiled in (then no mod_mpm_*.so is loaded)."""
    return any(name.startswith(("event.c", "worker.c", "prefork.c")) for name in built_in)


def run_checks(options: Options, system_apache: bool = False) -> list[Check]:
    """Every check, in the order a fix would be made. system_apache: for the `config apache`
    snippet under the system's Apache, whose daemons run as its User (or --user), not for
    `wsgidev start` (no run-as plan, no port)."""
    found: list[ApacheInstall] = []

    def apache() -> str:
        install = find_apache(options.httpd)
        found.append(install)
        version = apache_version(install.httpd, install.environ())
        if not version:
            raise WsgidevError(f"{install.httpd} -v did not answer", "reinstall Apache")
        return f"Apache {version} at {install.httpd} ({install.httpd_found_by})"

    def library_path() -> str:
        install = found[0]
        if not Path(install.library_path).is_dir():
            raise WsgidevError(
                f"{install.library_path} (this Apache's libraries) is missing",
                "pip install --force-reinstall mod_wsgi-httpd, then mod_wsgi",
            )
        return (
            f"{install.library_path_var} gets {install.library_path} for this Apache "
            "(pip's mod_wsgi-httpd; its libapr and libpcre2 are there)"
        )

    def modules() -> str:
        if not found:
            raise WsgidevError("skipped: Apache not found", "fix the check above")
        install = found[0]
        folder = Path(install.modules_dir)
        built_in = compiled_modules(install.httpd, install.environ())
        needed = (
            [("mpm_event_module", "mod_mpm_event.so"), *MODULES]
            if not _has_mpm(built_in)
            else MODULES
        )
        missing = [
            file
            for _, file in needed
            if not (folder / file).is_file() and file.replace(".so", ".c") not in built_in
        ]
        if missing:
            raise WsgidevError(
                f"{', '.join(missing)} neither in {folder} nor built into {install.httpd}",
                "install Apache's modules (" + INSTALL_APACHE.split(": ", 1)[1] + ")",
            )
        return f"modules in {folder} (mod_wsgi's build settings: apxs LIBEXECDIR)"

    def optional_modules() -> str:
        if not found:
            raise WsgidevError("skipped: Apache not found", "fix the check above")
        folder = Path(found[0].modules_dir)
        present: list[str] = []
        missing: list[str] = []
        for module, features in OPTIONAL_MODULES:
            (present if (folder / module).is_file() else missing).append(f"{module} ({features})")
        detail = "present: " + (", ".join(present) or "none")
        if missing:
            detail += "; missing, so those options will not start: " + ", ".join(missing)
        return detail

    def mod_wsgi() -> str:
        if not found:
            raise WsgidevError("skipped: Apache not found", "fix the check above")
        so = found[0].mod_wsgi_so
        tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
        if tag not in Path(so).name:
            raise WsgidevError(
                f"{so} is not built for Python {sys.version_info[0]}.{sys.version_info[1]}",
                "pip install --force-reinstall --no-binary mod_wsgi mod_wsgi",
            )
        return f"mod_wsgi for Python {sys.version_info[0]}.{sys.version_info[1]}: {so}"

    def mime_types() -> str:
        if not found:
            raise WsgidevError("skipped: Apache not found", "fix the check above")
        install = found[0]
        if not install.mime_types:
            raise WsgidevError(
                f"no MIME types file: {install.mime_types_found_by}", INSTALL_MIME_TYPES
            )
        return f"{install.mime_types} ({install.mime_types_found_by})"

    def libpython() -> str:
        if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
            raise WsgidevError(
                f"{sys.executable} is built without a shared libpython",
                "use a Python built with --enable-shared (Debian's, or pyenv with "
                'PYTHON_CONFIGURE_OPTS="--enable-shared")',
            )
        ours = own_libpython()
        linked = linked_libpython(found[0].mod_wsgi_so) if found else None
        if found:
            require_own_libpython(found[0])
        return f"shared libpython {ours}" + (", the one mod_wsgi loads" if linked else "")

    plans: list[RunAs] = []

    def root() -> str:
        if not found:
            raise WsgidevError("skipped: Apache not found", "fix the check above")
        plan = plan_run_as(options.user, options.group, python_library_readable(found[0]))
        plans.append(plan)
        return plan.describe()

    def daemon_user() -> str:
        if not found:
            raise WsgidevError("skipped: Apache not found", "fix the check above")
        if options.user:
            user, group, source = options.user, options.group, "--user"
        else:
            user, group = system_apache_user()
            source = "the system Apache's User"
        try:
            entry = lookup_user(user)
            gid = lookup_group(group) if group else entry.pw_gid
        except WsgidevError:
            if source == "--user":
                raise
            raise WsgidevError(
                f"the system Apache runs as {user}/{group}, which this machine has no name for",
                "pass the user its daemons run as: wsgidev doctor apache --user NAME",
            ) from None
        entry_script = output_dir(options) / ENTRY_SCRIPT_NAME
        paths = [*python_library_readable(found[0]), options.working_path.resolve()]
        blocked = unreadable_by(
            [*paths, *([entry_script] if entry_script.exists() else [])], entry, gid
        )
        if blocked is not None:
            raise WsgidevError(
                f"the daemons run as {entry.pw_name} ({source}), who cannot read {blocked}",
                f"put Python, the venv and the project where {entry.pw_name} can read them "
                "(e.g. /srv/mysite with python3 -m venv /srv/mysite/.venv), or run the daemons "
                "as a user who can: wsgidev config apache --user NAME",
            )
        plans.append(RunAs(mode="apache-user", user=entry.pw_name, group=group_name(gid)))
        return (
            f"daemons run as {entry.pw_name} ({source}), who can read Python, the venv, "
            "the project and the entry script"
        )

    def data() -> str:
        try:
            target = resolve_target(options)
        except WsgidevError:
            return "no project found here: nothing to check"
        if target.kind != "django":
            return "not a Django project: nothing to check"
        if not plans:
            raise WsgidevError(
                "skipped: who the daemons run as is not known",
                "fix daemon user" if system_apache else "fix root readiness",
            )
        from wsgidev.django.settings_reader import read_settings

        paths = datapaths.data_paths(
            read_settings(datapaths.SETTINGS, options, target), target.project_dir
        )
        lines = datapaths.unwritable(paths, plans[0])
        if lines:
            raise WsgidevError(lines[0], datapaths.fix_for(plans[0]))
        names = ", ".join(str(path) for path, _ in paths) or "no SQLite database or MEDIA_ROOT"
        return f"the daemons can write {names}"

    def dependencies() -> str:
        hard: list[requirements.Requirement] = []
        for requirement in requirements.declared():
            if requirement.extra not in (None, *requirements.EXTRAS):
                continue  # django, test, bench: not wsgidev's own
            old = requirements.too_old(requirement)
            if old:
                extra = f"[{requirement.extra}]" if requirement.extra else ""
                raise WsgidevError(
                    f"{requirement.name}, which wsgidev needs, is not installed"
                    if old == "not installed"
                    else f"{requirement.name} {old} is older than wsgidev supports "
                    f"(>={requirement.lowest})",
                    f"pip install --upgrade 'wsgidev{extra}' '{requirement.name}>={requirement.lowest}'",
                )
            if not requirement.extra:
                hard.append(requirement)
        detail = "needs " + ", ".join(f"{r.name}>={r.lowest}" for r in hard)
        for extra, (feature, modules) in requirements.EXTRAS.items():
            have = all(requirements.importable(m) for m in modules)
            state = "installed" if have else f"not installed: pip install 'wsgidev[{extra}]'"
            detail += f"; [{extra}] for {feature}: {state}"
        return detail

    def import_names() -> str:
        clashes = requirements.import_owners()
        if clashes:
            name, owners = next(iter(clashes.items()))
            more = (
                f" (and {len(clashes) - 1} more: {', '.join(list(clashes)[1:4])})"
                if len(clashes) > 1
                else ""
            )
            raise WsgidevError(
                f"`import {name}` is defined by {' and '.join(owners)}: the last installed "
                f"overwrote the other's files{more}",
                f"keep the one your project imports: pip uninstall {owners[-1]} && "
                f"pip install --force-reinstall {owners[0]} (or the other way round)",
            )
        return "no import name is defined by two installed distributions"

    def port() -> str:
        check_address(options.host, options.port)
        return f"{options.host}:{options.port} is free"

    checks = [_check("Apache httpd", apache)]
    if found and found[0].library_path:
        checks.append(_check("library path", library_path))
    return [
        *checks,
        _check("Apache modules", modules),
        _check("optional modules", optional_modules),
        _check("mod_wsgi", mod_wsgi),
        _check("MIME types", mime_types),
        _check("libpython", libpython),
        _check("daemon user", daemon_user) if system_apache else _check("root readiness", root),
        _check("Django data", data),
        _check("dependencies", dependencies),
        _check("import names", import_names),
        # The system Apache listens where its own config says.
        *([] if system_apache else [_check("port", port)]),
    ]


def run_doctor(options: Options, out: TextIO = sys.stdout, system_apache: bool = False) -> int:
    """Print every check; 1 if any failed."""
    checks = run_checks(options, system_apache)
    for check in checks:
        out.write(f"{'ok  ' if check.ok else 'FAIL'} {check.name}: {check.detail}\n")
    return 0 if all(check.ok for check in checks) else 1
