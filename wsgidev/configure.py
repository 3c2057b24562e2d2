"""`wsgidev config`: render one output to stdout, support files to --output."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TextIO

from wsgidev import render
from wsgidev.apache import system_apache_user
from wsgidev.errors import WsgidevError
from wsgidev.options import Options
from wsgidev.privileges import lookup_group, lookup_user
from wsgidev.runplan import RunPlan, prepare
from wsgidev.shared.serverroot import prepare_server_root


def output_dir(options: Options) -> Path:
    """Where support files go: --output, or .wsgidev/ in the project."""
    return Path(options.output_dir or Path(options.working_dir, ".wsgidev"))


def print_config(kind: str, options: Options, out: TextIO = sys.stdout) -> int:
    """Write the entry script, print the standalone config, Apache snippet or express command."""
    if options.debug and kind != "express":
        raise WsgidevError(
            f"--debug runs Apache attached to a terminal; `wsgidev config {kind}` cannot",
            "use wsgidev start --debug (or config express, which maps it to --debug-mode)",
        )
    if options.pdb and (kind == "apache" or (kind == "express" and not options.debug)):
        raise WsgidevError(
            f"--pdb opens pdb on wsgidev start's terminal; `wsgidev config {kind}` has none",
            "use wsgidev start --pdb"
            + (
                " (or config express --debug --pdb, one process on a terminal)"
                if kind == "express"
                else ""
            ),
        )
    if options.print_sql:  # a config run by hand has a log a person reads, not a terminal
        raise WsgidevError(
            f"--print-sql prints on wsgidev start's terminal; `wsgidev config {kind}` has none",
            "use wsgidev start --print-sql",
        )
    if options.werkzeug:  # its PIN goes to a terminal, its console's hand-off to a server root
        raise WsgidevError(
            f"--werkzeug needs wsgidev start's terminal and server root; "
            f"`wsgidev config {kind}` has neither",
            "use wsgidev start --werkzeug",
        )
    if options.live_reload and kind != "standalone":
        raise WsgidevError(
            f"--live-reload needs wsgidev start's event stream; `wsgidev config {kind}` has none",
            "use wsgidev start --live-reload",
        )
    prepared = prepare(options)
    options = prepared.options
    folder = output_dir(options)
    try:
        text = _render(kind, prepared, folder)
    except OSError as exc:
        raise WsgidevError(
            f"cannot write the entry script into {folder}: {exc.strerror}",
            "pass --output DIR naming a folder you can write",
        ) from None
    if not options.output_dir:
        _ignore_in_git(folder)
    out.write(text)
    return 0


def _ignore_in_git(folder: Path) -> None:
    """The .wsgidev folder wsgidev made in the project keeps itself out of `git status` (as
    .venv and .pytest_cache do), without touching the project's own .gitignore."""
    ignore = folder / ".gitignore"
    if not ignore.exists():
        # A read-only folder: the entry script could not be written either, and said so.
        with contextlib.suppress(OSError):
            ignore.write_text("*\n", encoding="utf-8")


def _render(kind: str, prepared: RunPlan, folder: Path) -> str:
    """Write the entry script into folder; the config or command that serves it."""
    options = prepared.options
    if kind == "standalone":
        # The config `wsgidev start` runs: the folder is its server root and holds the files
        # the daemons share for reloading (the hand-over's sockets, route and locks).
        render.write_entry(folder, prepared, server_root=str(folder))
        prepare_server_root(folder)
        text = render.render_standalone(prepared, folder)
    else:
        entry = render.write_entry(folder, prepared, server_root=None)
        if kind == "apache":
            _share_with_daemons(folder, entry, options)
            text = render.render_apache(prepared, entry)
        else:
            text = render.render_express(prepared, entry)
    return text


def _share_with_daemons(folder: Path, entry: Path, options: Options) -> None:
    """Run as root, the entry script is root's in a 0700 folder, which the system Apache's
    daemons (its User, www-data, or --user) cannot read: give both to the daemons' group (0750,
    the script 0640), never to everyone (the script holds the --env values)."""
    if os.geteuid() != 0:
        return  # the daemons of an Apache a user runs are that user
    try:
        if options.group:
            gid = lookup_group(options.group)
        elif options.user:
            gid = lookup_user(options.user).pw_gid
        else:
            gid = lookup_group(system_apache_user()[1])
    except WsgidevError as exc:
        print(
            f"wsgidev: {folder} stays readable by root alone ({exc}): pass --user NAME "
            "(the User of the system Apache) so that its daemons can read the entry script",
            file=sys.stderr,
        )
        return
    for path, mode in ((folder, 0o750), (entry, 0o640)):
        os.chown(path, -1, gid)
        os.chmod(path, mode)
