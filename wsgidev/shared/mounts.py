"""Which folders sit on a file system whose changes made elsewhere send no notification.

inotify reports what this kernel does to a file. On a network or shared file system (NFS, SMB,
9p as in WSL2's /mnt/c, virtiofs and FUSE mounts as Docker Desktop's bind mounts), an edit made
on the other side (the host, the server, the folder beneath a bindfs mount) never passes through
this kernel: the file changes and no event comes. The monitor polls the files in such folders at
--poll-interval (wsgidev/daemon/monitor/base.py), and the command says so in its banner.

Linux only: /proc/self/mountinfo names each mount's file-system type. Read here rather than
through psutil (a dependency for one file) or statfs (its magic numbers say "fuse" but not which:
a FUSE overlay that serves a container's own writes is not a silent folder).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
# Kernel file systems whose content can change on another machine or kernel.
SILENT_TYPES = frozenset(
    {
        "9p",  # WSL2 /mnt/c, QEMU shares
        "afs",
        "ceph",
        "cifs",
        "fakeowner",  # Docker Desktop's osxfs
        "fuse",  # a FUSE mount without a subtype
        "gpfs",
        "lustre",
        "ncpfs",
        "nfs",
        "nfs4",
        "prl_fs",  # Parallels shared folders
        "smb3",
        "smbfs",
        "vboxsf",  # VirtualBox shared folders
        "virtiofs",  # Docker Desktop, Podman machine, Lima
    }
)
# FUSE file systems that only ever see this kernel's writes (a rootless container's overlay).
LOCAL_FUSE = frozenset({"fuse.fuse-overlayfs", "fuse.squashfuse", "fuse.lxcfs"})
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class Mount:
    """One line of mountinfo: where it is mounted and its file-system type ("fuse.bindfs")."""

    point: str
    fstype: str

    @property
    def silent(self) -> bool:
        """Whether changes made beneath it, elsewhere, may send this kernel no notification."""
        if self.fstype in LOCAL_FUSE:
            return False
        return self.fstype in SILENT_TYPES or self.fstype.startswith("fuse.")


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in a mount point as \040 and the like.
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def read_mounts(path: str = MOUNTINFO) -> list[Mount]:
    """This process's mounts in mountinfo's order (a later one covers an earlier at one point);
    empty where there is no mountinfo (not Linux)."""
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    mounts = []
    for line in lines:
        fields = line.split(" ")
        try:
            separator = fields.index("-", 6)
            mounts.append(Mount(_unescape(fields[4]), fields[separator + 1]))
        except (ValueError, IndexError):
            continue  # a line this reader does not understand: one mount less
    return mounts


class MountTable:
    """Answers which mount a folder is on, from one reading of mountinfo."""

    def __init__(self, mounts: Iterable[Mount] | None = None) -> None:
        self._mounts = list(read_mounts() if mounts is None else mounts)
        # Most machines have no silent mount at all: then no folder needs its path resolved
        # (realpath is a stat per component; a large site's first look asks for 2,400 folders).
        self._any_silent = any(mount.silent for mount in self._mounts)

    def mount_of(self, folder: str) -> Mount | None:
        """The mount that holds folder (symbolic links resolved), or None where unknown."""
        path = os.path.realpath(folder)
        found = None
        for mount in self._mounts:  # the last, longest match covers the rest
            point = mount.point
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and (found is None or len(point) >= len(found.point)):
                found = mount
        return found

    def silent(self, folder: str) -> Mount | None:
        """The mount folder is on when that mount sends no notification of changes made elsewhere."""
        if not self._any_silent:
            return None
        mount = self.mount_of(folder)
        return mount if mount is not None and mount.silent else None
