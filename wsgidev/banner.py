"""What `wsgidev start` says once Apache listens (the banner), and its warnings before."""

from __future__ import annotations

import sys

from wsgidev import render
from wsgidev.django import datapaths
from wsgidev.options import Options
from wsgidev.runplan import RunPlan
from wsgidev.shared.mounts import Mount, MountTable
from wsgidev.shared.serverroot import BROWSER_RELOAD_EVENTS_PATH

# More daemon processes than this per CPU gets a warning: each holds the whole app in memory.
DAEMONS_PER_CORE = 8


def daemons_warning(options: Options, cpus: int) -> str | None:
    """A warning when the daemon processes (with the standby groups) are many for the CPUs."""
    # `wsgidev start` always has a server root: any non-None server_root answers for it.
    groups = 1 + (options.standbys if render.uses_standby(options, "-") else 0)
    daemons = options.processes * groups
    if daemons <= DAEMONS_PER_CORE * cpus:
        return None
    standbys = f" in {groups} groups (with the standbys)" if groups > 1 else ""
    return (
        f"{daemons} daemon processes{standbys} on {cpus} CPU(s), each holding the whole app in "
        "memory: pass fewer --processes (or --standbys 1)"
    )


def _trusted() -> bool:
    from wsgidev.certs import LocalCA
    from wsgidev.trust import is_trusted

    return is_trusted(LocalCA())


def silent_mounts(prepared: RunPlan) -> list[Mount]:
    """The mounts under the project, --python-path and the venv that send no notification of
    changes made beneath them, where the daemons poll (wsgidev/shared/mounts.py)."""
    options = prepared.options
    if not options.reload or options.debug or options.reload_backend == "poll":
        return []
    table = MountTable()
    found: dict[str, Mount] = {}
    for folder in (prepared.target.project_dir, *options.python_path, sys.prefix):
        mount = table.silent(str(folder))
        if mount is not None:
            found.setdefault(mount.point, mount)
    return list(found.values())


def host_lines(prepared: RunPlan) -> list[str]:
    """What the Host check answers beyond localhost and IP addresses, for the banner."""
    if "*" in prepared.allow_host:
        return ["  any Host name is answered (--allow-host '*'): other sites' pages can read it"]
    lines = []
    if prepared.allow_host:
        names = ", ".join(prepared.allow_host)
        lines.append(f"  also answers Host names {names} (others but localhost and IPs: 400)")
    if prepared.django_any_host:
        lines.append(
            "  ALLOWED_HOSTS '*' is not taken for any Host here (DNS rebinding): "
            "pass --allow-host NAME for a name other than localhost or an IP address"
        )
    return lines


def banner(prepared: RunPlan, debugger: bool = False) -> str:
    """The lines printed once Apache listens; debugger: sessions come to this terminal."""
    options = prepared.options
    reload = f"reloading on changes ({options.reload_backend})" if options.reload else "reload off"
    mode = f"mod_wsgi daemon mode: {options.processes} process(es) x {options.threads} thread(s)"
    who = prepared.run_as.describe()
    if options.debug:
        mode = "debug mode: the app runs in Apache's one process, one request at a time"
        who = who.replace("daemons run", "it runs", 1)
        reload = "reload off in --debug (restart to pick up changes); breakpoint() works here"
    lines = [
        f"wsgidev serving {prepared.target.label} at {prepared.url}",
        f"  Apache {prepared.apache.httpd}, {mode}, {who}",
        *(f"  {folder} served by Apache at {path}" for path, folder in prepared.static),
    ]
    if prepared.tls.port:
        http2 = " (HTTP/2)" if prepared.tls.h2 else ""
        lines.append(f"  also at {prepared.tls.url}{http2}")
        if prepared.ca_certificate and not _trusted():
            lines.append(
                f"  its certificate is signed by your local CA, {prepared.ca_certificate}: "
                "until `wsgidev trust` installs that, browsers will warn"
            )
    if options.random_delay_ms:
        lines.append(f"  each request delayed by a random 0-{options.random_delay_ms} ms")
    if not options.debug:
        post_mortem = (
            "; an exception a request raises opens pdb here (--pdb)" if options.pdb else ""
        )
        if debugger:
            lines.append(
                "  breakpoint() in any process or thread opens pdb on this terminal" + post_mortem
            )
        else:
            lines.append("  breakpoint() is skipped: wsgidev is not running in a terminal")
    live = prepared.stream_paths
    if options.live_reload and live:
        lines.append("  pages refresh by themselves when new code serves (--live-reload)")
    if BROWSER_RELOAD_EVENTS_PATH in live:
        lines.append(
            f"  django-browser-reload's events ({BROWSER_RELOAD_EVENTS_PATH}) served by wsgidev"
        )
    lines += host_lines(prepared)
    for line in prepared.read_only:
        lines.append(f"  warning: {line}: {datapaths.fix_for(prepared.run_as)}")
    for mount in silent_mounts(prepared):
        lines.append(
            f"  files under {mount.point} polled every {options.poll_interval_s:g} s: "
            f"a {mount.fstype} mount sends no notification of changes made beneath it"
        )
    lines.append(f"  {reload}; quit with CONTROL-C.")
    return "\n".join(lines)
