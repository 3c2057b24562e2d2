"""Folders on mounts that send no notification of changes made beneath them (wsgidev/shared/mounts.py).

A real FUSE mount (bindfs, from Debian) stands for Docker Desktop's bind mounts, WSL2's /mnt/c
and NFS: an edit made in the folder beneath the mount changes what the mount shows, and inotify
on the mount hears nothing. The daemons poll such folders at --poll-interval.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import imports, reload_lines, set_version, wait_for
from inotify_simple import INotify
from inotify_simple import flags as inflags

from wsgidev.shared.mounts import Mount, MountTable, read_mounts
from wsgidev.staticwatch import StaticWatcher

# -- reading mountinfo ---------------------------------------------------------------------------

MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /srv rw,relatime shared:2 - nfs4 server:/export rw,vers=4.2
41 40 8:1 /local /srv/local rw shared:3 - ext4 /dev/sda1 rw
42 22 0:40 / /mnt/my\\040share rw,nosuid - fuse.bindfs /src rw,user_id=0
43 22 0:41 / /var/lib/containers/x rw - fuse.fuse-overlayfs fuse-overlayfs rw
44 22 0:42 / /mnt/c rw,noatime - 9p drvfs rw,aname=drvfs
45 22 0:43 / /mnt/c rw - ext4 /dev/sdb1 rw
not a mountinfo line
"""


@pytest.fixture
def table(tmp_path: Path) -> MountTable:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return MountTable(read_mounts(str(path)))


@pytest.mark.parametrize(
    ("folder", "silent"),
    [
        ("/home/me/project", None),
        ("/srv/app", Mount("/srv", "nfs4")),
        ("/srv", Mount("/srv", "nfs4")),
        ("/srv/local/app", None),  # a local mount inside the NFS one
        ("/srvx/app", None),  # a prefix that is not a folder boundary
        ("/mnt/my share/app", Mount("/mnt/my share", "fuse.bindfs")),  # \040 is a space
        ("/var/lib/containers/x/app", None),  # a container's own overlay sees its writes
        ("/mnt/c/code", None),  # the later mount at one point covers the earlier
    ],
)
def test_which_folders_are_silent(table: MountTable, folder: str, silent: Mount | None) -> None:
    assert table.silent(folder) == silent


def test_this_machine_reads_its_own_mounts() -> None:
    root = MountTable().mount_of("/")
    assert root is not None and root.point == "/"


def test_a_machine_with_no_silent_mount_resolves_no_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    # The monitor asks for every folder it watches (thousands on a large site): where no mount
    # is silent, the answer needs no path resolved.
    table = MountTable([Mount("/", "ext4"), Mount("/var/lib/containers/x", "fuse.fuse-overlayfs")])
    monkeypatch.setattr(os.path, "realpath", lambda path: pytest.fail(f"resolved {path}"))
    assert table.silent("/srv/app") is None


# -- a real FUSE mount -------------------------------------------------------------------------


@pytest.fixture
def bindfs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the folder beneath, the bindfs mount of it); unmounted after the test."""
    if shutil.which("bindfs") is None or not os.path.exists("/dev/fuse"):
        pytest.fail("bindfs and /dev/fuse are needed: bash dev.sh test installs bindfs")
    beneath, mount = tmp_path / "beneath", tmp_path / "mount"
    beneath.mkdir()
    mount.mkdir()
    subprocess.run(["bindfs", str(beneath), str(mount)], check=True, timeout=30)
    try:
        yield beneath, mount
    finally:
        # Lazily: a server that failed to stop must not leave the mount behind either.
        subprocess.run(["fusermount", "-uz", str(mount)], check=False, timeout=30)


def test_inotify_on_the_mount_hears_nothing_of_an_edit_beneath(bindfs: tuple[Path, Path]) -> None:
    # The premise of the feature, shown on this kernel: the reason the daemons must poll.
    beneath, mount = bindfs
    (beneath / "a.txt").write_text("1")
    found = MountTable().silent(str(mount))
    assert found is not None and found.point == str(mount) and found.fstype.startswith("fuse")
    with INotify() as inotify:
        inotify.add_watch(str(mount), inflags.MODIFY | inflags.CLOSE_WRITE | inflags.CREATE)
        (beneath / "a.txt").write_text("2")
        (beneath / "b.txt").write_text("new")
        assert inotify.read(timeout=500) == []
        (mount / "a.txt").write_text("3")  # through the mount: heard
        assert inotify.read(timeout=2000) != []


def test_an_edit_beneath_a_fuse_mount_is_served_within_two_poll_intervals(
    bindfs: tuple[Path, Path], project: Path, start_server
) -> None:
    beneath, mount = bindfs
    shutil.copy(project / "app.py", beneath / "app.py")
    interval = 3.0  # the poll comes within 3 s; the hand-over's own time fits in the other 3
    server = start_server(
        mount, "app:application", "--processes", "2", "--poll-interval", f"{interval:g}"
    )
    fstype = MountTable().mount_of(str(mount)).fstype  # "fuse", or "fuse.bindfs" by fusermount
    banner = f"files under {mount} polled every {interval:g} s: a {fstype} mount"
    assert banner in server.log(), server.log()
    wait_for(lambda: len(imports(mount)) == 2, 20, "both daemons to import the app")
    set_version(beneath / "app.py", "v2")
    saved = time.monotonic()
    # The 60 s safety net would find it too: this asserts the poll, not the net.
    wait_for(
        lambda: b'"version": "v2"' in server.get("/")[1],
        2 * interval,
        lambda: f"v2 within {2 * interval:g} s of the save\n{server.log()}",
    )
    seen = time.monotonic() - saved
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    assert reload_lines(server)[0].endswith(": app.py changed"), server.log()
    # Said once, in the banner: the daemons' own line for that mount is not repeated.
    assert "Polling the watched files" not in server.log(), server.log()
    assert seen < 2 * interval
    server.stop()


def test_a_static_folder_beneath_a_fuse_mount_is_polled(bindfs: tuple[Path, Path]) -> None:
    # The command's static watcher (live reload of a stylesheet) polls such a folder too.
    beneath, mount = bindfs
    (beneath / "css").mkdir()
    (beneath / "css" / "site.css").write_text("body {}")
    changed: list[str] = []
    watcher = StaticWatcher(changed.append, poll_interval_s=0.2)
    try:
        watcher.watch([("/static", str(mount))])
        (beneath / "css" / "site.css").write_text("body { color: red }")
        (beneath / "new.js").write_text("1")
        wait_for(lambda: sorted(changed) == ["/static/css/site.css", "/static/new.js"], 5, "both")
    finally:
        watcher.stop()
