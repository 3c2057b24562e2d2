"""What runs only on Linux is guarded (macOS has no prctl and no user namespaces): checked by
simulation here, where it cannot run for real."""

from __future__ import annotations

import os
import pwd

import pytest

from wsgidev import privileges
from wsgidev.privileges import RunAs, child_setup


def test_without_linux_no_linux_call_is_made(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(privileges, "IS_LINUX", False)

    def no_libc(*args: object, **kwargs: object) -> None:
        raise AssertionError("a Linux system call where there is none")

    monkeypatch.setattr(privileges.ctypes, "CDLL", no_libc)
    privileges.die_with_parent()
    child_setup(RunAs(mode="self"))()  # Apache's preexec function
    me = pwd.getpwuid(os.getuid())
    assert privileges.userns_problem(me) == "user namespaces are a Linux feature"
    with pytest.raises(OSError, match="Linux feature"):
        privileges.enter_userns(me.pw_uid, me.pw_gid)


def test_the_namespace_probe_child_never_runs_on(monkeypatch: pytest.MonkeyPatch):
    def broken(uid: int, gid: int) -> None:
        raise AttributeError("boom: no such function in this libc")

    monkeypatch.setattr(privileges, "enter_userns", broken)
    me = pwd.getpwuid(os.getuid())
    parent = os.getpid()
    assert "boom" in str(privileges.userns_problem(me))
    assert os.getpid() == parent  # the forked child left through os._exit, whatever it raised
