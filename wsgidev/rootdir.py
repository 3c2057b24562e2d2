"""wsgidev start's server root: a private folder made (or the one --server-root names),
httpd.conf and the entry script written into it and checked with `httpd -t`, given to the
daemons' user where they run as another, and removed afterwards."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from wsgidev import render
from wsgidev.errors import WsgidevError
from wsgidev.options import Options
from wsgidev.privileges import RunAs, child_setup, daemon_ids
from wsgidev.runplan import RunPlan
from wsgidev.shared.serverroot import prepare_server_root

# mod_wsgi's daemon sockets live in the server root, and a Unix socket path has at most 107
# bytes: "wsgi.<pid>.<generation>.<n>.sock" needs about 35 of them after the root.
MAX_ROOT_PARENT_CHARS = 50


@contextmanager
def server_root(options: Options) -> Iterator[Path]:
    """A private (0700) server root, removed afterwards unless the user named one."""
    if options.server_root:
        path = Path(options.server_root)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.chmod(0o700)  # it holds the --env values and the control sockets
        except OSError as exc:
            raise WsgidevError(
                f"--server-root {path} cannot be made private (0700): {exc.strerror}",
                "name a folder you own on a normal file system, or drop --server-root",
            ) from None
        yield path
        return
    parent = Path(tempfile.gettempdir())
    if len(str(parent)) > MAX_ROOT_PARENT_CHARS:
        parent = Path("/tmp")
    sweep_stale_roots(parent)
    path = Path(tempfile.mkdtemp(prefix=f"wsgidev-{os.getpid()}-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale_roots(folder: Path) -> None:
    """Remove server roots left by a wsgidev that was SIGKILLed (its pid is in the name)."""
    for path in folder.glob("wsgidev-*-*"):
        pid_text = path.name.split("-")[1]
        # Root also sweeps the roots it handed to a daemon user (--user).
        if not pid_text.isdigit() or (os.geteuid() != 0 and path.stat().st_uid != os.geteuid()):
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def write_config(prepared: RunPlan, root: Path) -> Path:
    """Render httpd.conf and the entry script into root; return the httpd.conf path."""
    previous = os.umask(0o077)  # files only their user may read: the --env values are in them
    try:
        # The --env values go to Apache's environment instead (app_environ).
        render.write_entry(
            root, prepared, server_root=str(root), env_in_process=True, events_read=True
        )
        prepare_server_root(root)
        conf = root / "httpd.conf"
        conf.write_text(
            render.render_standalone(prepared, root, events_read=True), encoding="utf-8"
        )
    finally:
        os.umask(previous)
    if prepared.run_as.mode == "apache-user":
        # The daemons run as that user: they read the entry script here and write the hand-over
        # and restart files. The server root stays private to that user (and root).
        hand_to(root, prepared.run_as)
    return conf


def hand_to(root: Path, run_as: RunAs) -> None:
    """Give the server root and what is in it to the user the daemons run as."""
    ids = daemon_ids(run_as)
    assert ids is not None, "only a classic root start hands the server root over"
    uid, gid = ids
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


def check_config(prepared: RunPlan, conf: Path) -> None:
    """`httpd -t` on the rendered config, as the server will run it."""
    result = subprocess.run(
        [prepared.apache.httpd, "-t", "-f", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=prepared.apache.environ(),
        preexec_fn=child_setup(prepared.run_as),
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        reason = " ".join(line.strip() for line in lines[:2]) or f"status {result.returncode}"
        where = _SYNTAX_ERROR.search(reason)
        if where and where.group(2) in prepared.options.include:
            # The user's own file: quote the line Apache stopped at.
            number, path = int(where.group(1)), where.group(2)
            quoted = _line(path, number)
            problem = reason[where.end() :].strip()
            raise WsgidevError(
                f"Apache rejected line {number} of --include {path}: {quoted!r}: {problem}",
                "fix that line (or drop --include)",
            )
        raise WsgidevError(
            f"Apache rejected the generated config: {reason}",
            f"check the options; the config is {conf}",
        )


# "AH00526: Syntax error on line 3 of /path/extra.conf:" (then the reason, on the next line)
_SYNTAX_ERROR = re.compile(r"Syntax error on line (\d+) of (.+?):")


def _line(path: str, number: int) -> str:
    try:
        return (
            Path(path)
            .read_text(encoding="utf-8", errors="replace")
            .splitlines()[number - 1]
            .strip()
        )
    except (OSError, IndexError):
        return "?"
