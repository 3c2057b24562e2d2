"""Who Apache and the mod_wsgi daemons run as, and how to get there when wsgidev runs as root.

Apache will not serve as root and mod_wsgi will not run a daemon as root. Started by root, Apache
switches to its User (www-data on Debian, apache on Fedora/RHEL), which usually cannot read a
Python kept under a 0700 /root. wsgidev's answer, in order of preference:

1. ``userns``: start Apache inside a new user namespace in which our real uid (0) appears as an
   unprivileged user (the first of www-data, apache, daemon, nobody that exists). Apache and
   mod_wsgi see a non-root user and do not switch; the kernel still checks files against real
   root's ownership, so the venv and project stay readable, and everything the server writes is
   owned by the real user.
2. ``apache-user``: a classic root start with ``User``/``user=`` set to a user who can read the
   interpreter and the project (``--user``, or that same user when it happens to have access).
3. Otherwise a clear error that says what to do.
"""

from __future__ import annotations

import ctypes
import errno as errno_module
import grp
import os
import pwd
import signal
import stat
import sys
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wsgidev.errors import WsgidevError

# unshare(CLONE_NEWUSER) and prctl(PR_SET_PDEATHSIG) are Linux system calls: elsewhere (macOS)
# wsgidev neither calls them nor offers the user namespace.
IS_LINUX = sys.platform.startswith("linux")
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1
_USERNS_CANDIDATES = ("www-data", "apache", "daemon", "nobody")


@dataclass(frozen=True, kw_only=True)
class RunAs:
    """How to start Apache: as ourselves, in a user namespace, or as root with a User to drop to."""

    mode: Literal["self", "userns", "apache-user"]
    inner_uid: int = 0
    inner_gid: int = 0
    user: str | None = None
    group: str | None = None

    def describe(self) -> str:
        """A few words for the banner."""
        if self.mode == "userns":
            name = _user_name(self.inner_uid)
            return f"daemons run as {name} in a user namespace mapped to root"
        if self.mode == "apache-user":
            return f"daemons run as {self.user}"
        return f"daemons run as {_user_name(os.geteuid())}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def plan_run_as(user: str | None, group: str | None, must_read: Iterable[Path]) -> RunAs:
    """Decide how Apache starts for the current user; raise WsgidevError where nothing works."""
    paths = list(must_read)
    if os.geteuid() != 0:
        return RunAs(mode="self")
    if user:
        entry = lookup_user(user)
        if entry.pw_uid == 0:
            raise WsgidevError(
                "--user root is refused by Apache and mod_wsgi", "name an unprivileged user"
            )
        gid = lookup_group(group) if group else entry.pw_gid
        _require_readable(paths, entry, gid, f"--user {user}")
        return RunAs(mode="apache-user", user=user, group=group or group_name(gid))
    inner = _userns_identity()
    problem = userns_problem(inner)
    if problem is None:
        return RunAs(mode="userns", inner_uid=inner.pw_uid, inner_gid=inner.pw_gid)
    if unreadable_by(paths, inner, inner.pw_gid) is None:
        return RunAs(mode="apache-user", user=inner.pw_name, group=group_name(inner.pw_gid))
    blocked = unreadable_by(paths, inner, inner.pw_gid)
    raise WsgidevError(
        f"running as root, and user namespaces are unavailable ({problem}) while "
        f"{inner.pw_name} cannot read {blocked}",
        _no_userns_fix(inner.pw_name, blocked),
    )


def in_container() -> bool:
    """Whether this looks like a Docker or Podman container (their marker files)."""
    return os.path.exists("/.dockerenv") or os.path.exists("/run/.containerenv")


def _no_userns_fix(user: str, blocked: Path | None) -> str:
    """What helps a root start without user namespaces: in a container, the image's layout."""
    readable = (
        f"put Python, the venv and the project where {user} can read them "
        "(a venv outside /root: python3 -m venv /opt/venv)"
    )
    if in_container():
        return (
            f"{readable}, or run the container as a non-root user (USER in the Dockerfile, "
            "user: in compose), or start it with --security-opt seccomp=unconfined"
        )
    return (
        f"{readable}, or run wsgidev as a non-root user, or pass --user NAME for a user who can "
        "read them, or allow user namespaces (sysctl user.max_user_namespaces=10000)"
    )


def lookup_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name) if not name.startswith("#") else pwd.getpwuid(int(name[1:]))
    except (KeyError, ValueError):
        raise WsgidevError(f"--user {name}: no such user", "name an existing user") from None


def lookup_group(name: str) -> int:
    import grp

    try:
        return grp.getgrnam(name).gr_gid if not name.startswith("#") else int(name[1:])
    except (KeyError, ValueError):
        raise WsgidevError(f"--group {name}: no such group", "name an existing group") from None


def group_name(gid: int) -> str:
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"#{gid}"


def _userns_identity() -> pwd.struct_passwd:
    """The unprivileged user our uid appears as inside the namespace (the first candidate that exists)."""
    for name in _USERNS_CANDIDATES:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry
    return pwd.struct_passwd(("nobody", "x", 65534, 65534, "", "/", "/bin/false"))


def _require_readable(paths: list[Path], entry: pwd.struct_passwd, gid: int, who: str) -> None:
    blocked = unreadable_by(paths, entry, gid)
    if blocked is not None:
        raise WsgidevError(
            f"{who} cannot read {blocked}",
            "choose a user who can, or make the path readable (chmod o+rx on its folders), "
            "or run wsgidev without --user to use a user namespace",
        )


def unreadable_by(paths: Iterable[Path], entry: pwd.struct_passwd, gid: int) -> Path | None:
    """The first path (or parent folder) that user cannot reach, or None when all are readable."""
    import grp

    groups = {gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    for path in paths:
        chain = [*reversed(path.parents), path]
        for index, part in enumerate(chain):
            try:
                info = part.stat()
            except OSError:
                break
            last = index == len(chain) - 1
            # Folders on the way need search (x); the path itself read (r), plus x for a folder.
            need = 1 if not last else (5 if stat.S_ISDIR(info.st_mode) else 4)
            if _granted(info, entry, groups) & need != need:
                return part
    return None


def _granted(info: os.stat_result, entry: pwd.struct_passwd, groups: set[int]) -> int:
    """The rwx bits (as 0-7) this user has on a file with this stat, by its mode alone."""
    if info.st_uid == entry.pw_uid:
        return (info.st_mode >> 6) & 7
    if info.st_gid in groups:
        return (info.st_mode >> 3) & 7
    return info.st_mode & 7


def unwritable_by(
    path: Path, entry: pwd.struct_passwd, gid: int, folder: bool = False
) -> Path | None:
    """Where this user cannot write what a program writes at path, or None: a file (an SQLite
    database: the file and, for its journal, its folder) or, with folder, a folder's entries.
    What does not exist yet is made in the nearest folder that does."""
    import grp

    groups = {gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
    targets = [path] if folder else [path, path.parent]
    for target in targets:
        existing = target
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            info = existing.stat()
        except OSError:
            return existing
        need = 3 if stat.S_ISDIR(info.st_mode) else 2  # a folder: write and search
        if _granted(info, entry, groups) & need != need:
            return existing
    return None


def userns_problem(inner: pwd.struct_passwd | None = None) -> str | None:
    """None when this process can start a child in a new user namespace, else why not."""
    if not IS_LINUX:
        return "user namespaces are a Linux feature"
    inner = inner or _userns_identity()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: try it, report, and leave without running any Python cleanup
        message = b""
        try:
            os.close(read_fd)
            enter_userns(inner.pw_uid, inner.pw_gid)
        except BaseException as exc:  # whatever it is, the child must not run on
            message = (str(exc) or type(exc).__name__).encode()[:200]
        finally:
            with suppress(OSError):
                os.write(write_fd, message)
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        message = pipe.read()
    os.waitpid(pid, 0)
    return message.decode() or None


def enter_userns(inner_uid: int, inner_gid: int) -> None:
    """Move this (single-threaded) process into a new user namespace, as inner_uid:inner_gid."""
    if not IS_LINUX:
        raise OSError(errno_module.ENOSYS, "user namespaces are a Linux feature")
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"unshare(CLONE_NEWUSER): {os.strerror(errno)}")
    # A process may map only its own ids, and must give up setgroups() before mapping gids.
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{inner_uid} {outer_uid} 1")
    Path("/proc/self/gid_map").write_text(f"{inner_gid} {outer_gid} 1")


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when wsgidev dies, even by SIGKILL (Linux; where
    there is no prctl, the next `wsgidev start` sweeps what a killed one left)."""
    if not IS_LINUX:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def child_setup(run_as: RunAs) -> Callable[[], None]:
    """The preexec function for Apache: its own user namespace if planned, and parent-death."""

    def setup() -> None:
        if run_as.mode == "userns":
            enter_userns(run_as.inner_uid, run_as.inner_gid)
        die_with_parent()

    return setup


def daemon_ids(run_as: RunAs) -> tuple[int, int] | None:
    """The uid and gid the daemons run as, where that is not wsgidev's own (--user as root)."""
    if run_as.mode != "apache-user":
        return None
    user = pwd.getpwnam(run_as.user or "")
    return user.pw_uid, grp.getgrnam(run_as.group).gr_gid if run_as.group else user.pw_gid
