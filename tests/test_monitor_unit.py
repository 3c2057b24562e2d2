"""Unit tests for the reload monitor: tmp_path files, an injected on_change, no Apache.

Most tests drive the monitor one step at a time with check_once(); the threaded ones run the real
backend thread (inotify notifications, or polling) with a deadline on every wait.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import holds_for

from wsgidev.daemon import monitor, restart
from wsgidev.daemon.monitor.base import Monitor
from wsgidev.shared import events

pytestmark = pytest.mark.timeout(60)

BACKENDS = ["inotify", "poll"]
DEADLINE_S = 5.0


class Restarts:
    """An on_change that records its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self._called = threading.Event()

    def __call__(self, files: list[str]) -> None:
        self.calls.append(files)
        self._called.set()

    def wait(self, timeout_s: float = DEADLINE_S) -> list[str]:
        assert self._called.wait(timeout_s), f"no restart within {timeout_s} s"
        return self.calls[0]


class Modules:
    """A directory on sys.path for throwaway modules."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, name: str, text: str) -> Path:
        path = self.root / f"{name}.py"
        path.write_text(text)
        return path

    def load(self, name: str) -> types.ModuleType:
        importlib.invalidate_caches()  # the directory listing may be cached from before the write
        return importlib.import_module(name)


MakeMonitor = Callable[..., tuple[Monitor, Restarts]]


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Modules]:
    root = tmp_path / "mods"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    yield Modules(root)
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", "") or "").startswith(str(root)):
            del sys.modules[name]


@pytest.fixture
def started_now(monkeypatch: pytest.MonkeyPatch) -> None:
    """Modules imported before the test are judged against its start, not the pytest process's:
    `exec` keeps the start time of the shell that made the venv just before (dev.sh does)."""
    started_ns = time.time_ns()
    monkeypatch.setattr("wsgidev.daemon.monitor.base.process_start_ns", lambda: started_ns)


@pytest.fixture
def make_monitor() -> Iterator[MakeMonitor]:
    made: list[Monitor] = []

    def make(backend: str = "poll", **options: Any) -> tuple[Monitor, Restarts]:
        restarts = Restarts()
        options.setdefault("settle_s", 0.05)
        options.setdefault("poll_interval_s", 0.05)
        # Modules imported before the test are judged against its start, not the pytest process's:
        # a test file someone saves during the run is not this test's business.
        options.setdefault("process_started_ns", time.time_ns())
        created = monitor.create(backend, on_change=restarts, **options)
        made.append(created)
        return created, restarts

    yield make
    for created in made:
        created.stop()


def emitted(text: str, kind: str) -> list[Any]:
    """The events of one kind in captured stderr."""
    found = (events.parse(line) for line in text.splitlines())
    return [event for event in found if event is not None and kind == event.KIND]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_save_during_a_slow_look_is_dated_by_the_file(
    backend: str,
    modules: Modules,
    make_monitor: MakeMonitor,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A big site's first look after a take-over refreshes for most of a second; a save made
    # meanwhile was dated by the look's start (its real stamp refused as later than that), so
    # a sibling's report of the same save looked like another save: two "Reloaded" lines
    # (seen in the bench's rapid scenario on the Wagtail site, 4 to 9 edits of 15).
    m, restarts = make_monitor(backend)
    m.arm()
    path = modules.write("slowlook", "X = 1\n")
    modules.load("slowlook")
    assert m.check_once() == []
    refresh = m._refresh

    def slow_refresh() -> None:
        refresh()
        time.sleep(0.05)  # the refresh's own work, longer than the file clock's tick
        path.write_text("X = 22\n")

    monkeypatch.setattr(m, "_refresh", slow_refresh)
    assert m.check_once() == [str(path)]
    (change,) = emitted(capsys.readouterr().err, "change")
    assert change.saved_at == path.stat().st_mtime_ns / 1_000_000_000


def same_size_rewrite(path: Path, old: str, new: str) -> None:
    """Rewrite in place keeping size; the mtime moves forward."""
    assert len(old) == len(new)
    path.write_text(new)


# -- what counts as a change (one step at a time) ---------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_in_place_write_restarts_once_with_an_event(
    backend: str, modules: Modules, make_monitor: MakeMonitor, capsys: pytest.CaptureFixture[str]
) -> None:
    m, restarts = make_monitor(backend)
    m.arm()
    path = modules.write("inplace", "X = 1\n")
    modules.load("inplace")
    assert m.check_once() == []
    with path.open("a") as handle:
        handle.write("Y = 2\n")
    assert m.check_once() == [str(path)]
    assert restarts.calls == [[str(path)]]
    assert m.check_once() == []  # a restart was asked for: nothing more happens
    (change,) = emitted(capsys.readouterr().err, "change")
    assert change.files == (str(path),) and change.backend == backend


def test_temp_then_rename_with_same_size_and_mtime(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    m, _ = make_monitor()
    m.arm()
    path = modules.write("renamed", "X = 1\n")
    modules.load("renamed")
    before = path.stat()
    temp = path.with_suffix(".py.tmp")
    temp.write_text("X = 2\n")  # an editor's save: write a temporary file, rename it over
    os.utime(temp, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(temp, path)
    # Only the inode tells this save apart: same size, same mtime.
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert m.check_once() == [str(path)]


def test_delete_then_create(modules: Modules, make_monitor: MakeMonitor) -> None:
    m, _ = make_monitor()
    m.arm()
    path = modules.write("recreated", "X = 1\n")
    modules.load("recreated")
    path.unlink()
    assert m.check_once() == [str(path)]  # a deletion alone is a change

    m2, _ = make_monitor()
    m2.arm()
    other = modules.write("recreated2", "X = 1\n")
    modules.load("recreated2")
    other.unlink()
    other.write_text("X = 1234\n")
    assert m2.check_once() == [str(other)]


def test_restored_older_mtime_is_a_change(modules: Modules, make_monitor: MakeMonitor) -> None:
    m, _ = make_monitor()
    m.arm()
    path = modules.write("restored", "X = 1\n")
    modules.load("restored")
    older_ns = path.stat().st_mtime_ns - 3600 * 10**9
    same_size_rewrite(path, "X = 1\n", "X = 0\n")
    os.utime(path, ns=(older_ns, older_ns))  # git checkout, cp -p, tar: an older file comes back
    assert m.check_once() == [str(path)]


def test_edit_after_import_before_the_first_look_counts(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    m, restarts = make_monitor()
    m.arm()
    path = modules.write("early", "X = 1\n")
    original_mtime_ns = path.stat().st_mtime_ns
    modules.load("early")
    # Edited before the monitor has looked at the new module, and made to look older than the
    # import: only the state recorded when the module was imported can tell.
    same_size_rewrite(path, "X = 1\n", "X = 2\n")
    os.utime(path, ns=(original_mtime_ns - 10**9, original_mtime_ns - 10**9))
    assert m.check_once() == [str(path)]
    assert restarts.calls == [[str(path)]]


def test_edit_before_the_directory_watch_begins_is_not_lost(
    tmp_path: Path, make_monitor: MakeMonitor
) -> None:
    settings_file = tmp_path / "settings.ini"
    settings_file.write_text("[a]\n")
    m, _ = make_monitor("inotify", watch=[str(settings_file)])
    m.arm()  # baseline taken; no notification can have been seen for an edit made now
    settings_file.write_text("[b]\n")
    # The thread's first step after a wake-up with no events still compares new files once.
    assert m.check_once(hint=set()) == [str(settings_file)]


def test_module_imported_before_arm_and_touched_since_process_start(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    quiet = modules.write("quiet_before", "X = 1\n")
    touched = modules.write("touched_before", "X = 1\n")
    time.sleep(0.05)  # file times come from a coarse clock
    started_ns = time.time_ns()  # "the process started" after both files were written
    modules.load("quiet_before")
    modules.load("touched_before")
    touched.write_text("X = 22\n")  # after the import, before the monitor existed
    m, _ = make_monitor(process_started_ns=started_ns)
    m.arm()
    changed = m.check_once()
    assert str(touched) in changed
    assert str(quiet) not in changed


def test_failed_import_files_are_watched(modules: Modules, make_monitor: MakeMonitor) -> None:
    m, restarts = make_monitor()
    m.arm()
    broken = modules.write("broken_syntax", "def oops(:\n")
    with pytest.raises(SyntaxError) as syntax_error:
        modules.load("broken_syntax")
    outer = modules.write("outer_fails", "import inner_fails\n")
    inner = modules.write("inner_fails", "raise RuntimeError('boom')\n")
    with pytest.raises(RuntimeError) as runtime_error:
        modules.load("outer_fails")
    m.watch_exception(syntax_error.value)
    m.watch_exception(runtime_error.value)
    assert m.check_once() == []
    assert all(m.is_watching(str(p)) for p in (broken, outer, inner))
    broken.write_text("def fixed():\n    pass\n")
    assert m.check_once() == [str(broken)]
    assert restarts.calls == [[str(broken)]]


def test_traceback_frame_file_change_restarts(modules: Modules, make_monitor: MakeMonitor) -> None:
    m, _ = make_monitor()
    m.arm()
    outer = modules.write("frame_outer", "import frame_inner\n")
    modules.write("frame_inner", "raise ValueError('bad')\n")
    with pytest.raises(ValueError) as error:
        modules.load("frame_outer")
    m.watch_exception(error.value)
    assert m.check_once() == []
    outer.write_text("X = 'no longer imports the broken module'\n")
    assert m.check_once() == [str(outer)]


def test_watch_globs_and_files(tmp_path: Path, make_monitor: MakeMonitor) -> None:
    conf = tmp_path / "conf"
    (conf / "sub").mkdir(parents=True)
    existing = conf / "a.yaml"
    existing.write_text("a: 1\n")
    nested = conf / "sub" / "n.html"
    nested.write_text("<p>")
    single = tmp_path / "settings.ini"
    single.write_text("[x]\n")
    watch = [str(conf / "*.yaml"), str(conf / "**" / "*.html"), str(single)]
    m, _ = make_monitor(watch=watch)
    m.arm()
    (conf / "notes.txt").write_text("not matched")
    (conf / ".a.yaml.swp").write_text("editor swap file")
    (conf / "sub" / "x.yaml").write_text("not matched: *.yaml is not recursive")
    assert m.check_once() == []
    existing.write_text("a: 2\n")
    added = conf / "b.yaml"
    added.write_text("b: 1\n")
    nested.write_text("<p>changed")
    single.write_text("[y]\n")
    assert m.check_once() == sorted(map(str, [existing, added, nested, single]))


# -- the real thread ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_thread_sees_a_lazily_imported_module(
    backend: str, modules: Modules, make_monitor: MakeMonitor
) -> None:
    # A long safety interval: with inotify only a notification can get this change seen in time.
    m, restarts = make_monitor(backend, safety_interval_s=600)
    m.start()
    path = modules.write("lazy", "X = 1\n")
    modules.load("lazy")  # imported after the monitor started, as a view would be
    deadline = time.monotonic() + DEADLINE_S
    while not m.is_watching(str(path)):
        assert time.monotonic() < deadline, "the lazily imported module was never watched"
        time.sleep(0.01)
    with path.open("a") as handle:
        handle.write("Y = 2\n")
    assert restarts.wait() == [str(path)]


def test_request_time_import_wakes_an_idle_notify_monitor(
    modules: Modules, make_monitor: MakeMonitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsgidev.daemon.monitor import imports

    monkeypatch.setattr(imports, "RECENT_S", 0.05)  # imports count as "under way" this long
    m, restarts = make_monitor("inotify", safety_interval_s=600)
    m.start()
    time.sleep(0.5)  # startup's imports are over: the thread is in its long wait
    path = modules.write("late", "X = 1\n")
    modules.load("late")  # the first request to a view imports it; its directory is not watched
    deadline = time.monotonic() + DEADLINE_S
    while not m.is_watching(str(path)):
        assert time.monotonic() < deadline, "the import did not wake the monitor"
        time.sleep(0.01)
    with path.open("a") as handle:
        handle.write("Y = 2\n")
    assert restarts.wait() == [str(path)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_thread_edit_right_after_lazy_import(
    backend: str, modules: Modules, make_monitor: MakeMonitor
) -> None:
    m, restarts = make_monitor(backend, safety_interval_s=600)
    m.start()
    path = modules.write("racy", "X = 1\n")
    modules.load("racy")
    same_size_rewrite(path, "X = 1\n", "X = 2\n")  # before the monitor can have looked
    assert restarts.wait() == [str(path)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_burst_of_50_changes_is_one_restart(
    backend: str, modules: Modules, make_monitor: MakeMonitor
) -> None:
    paths = [modules.write(f"burst{i}", "X = 1\n") for i in range(50)]
    for i in range(50):
        modules.load(f"burst{i}")
    m, restarts = make_monitor(backend, safety_interval_s=600)
    m.start()
    for path in paths:  # a git checkout
        with path.open("a") as handle:
            handle.write("Y = 2\n")
    assert restarts.wait() == sorted(map(str, paths))
    holds_for(lambda: len(restarts.calls) == 1, 0.3, "one restart")  # no second one coming


def test_a_deploy_restarts_once_the_tree_is_quiet_its_new_modules_included(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    # A deploy changes a module, then writes new ones (imported by nobody yet, so not watched)
    # beside it: the restart waits for them, or the new process would import half a tree.
    path = modules.write("deployed", "X = 1\n")
    modules.load("deployed")
    m, restarts = make_monitor("inotify", settle_s=1.0, safety_interval_s=600)
    m.start()
    path.write_text("X = 2\n")
    for index in range(12):  # about 0.6 s of new files, each well within the settle time
        modules.write(f"arriving{index}", "Y = 1\n")
        assert not restarts.calls, f"a restart before the tree was quiet ({index} written)"
        time.sleep(0.05)
    assert restarts.wait() == [str(path)]


def test_a_polled_folder_does_not_hold_a_restart_back(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    # The files of a folder on a mount that sends no events (NFS, virtiofs) are looked at on
    # every pass: unchanged, they are no code arriving (each restart waited for the cap).
    path = modules.write("polled", "X = 1\n")
    modules.load("polled")
    m, restarts = make_monitor("inotify", max_settle_s=60.0, safety_interval_s=600)
    m._silent_dirs.add(str(modules.root))
    m.start()
    path.write_text("X = 2\n")
    assert restarts.wait() == [str(path)]


def test_a_process_that_imported_code_being_replaced_waits_and_knows_it(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    m, _ = make_monitor("inotify", settle_s=0.3, safety_interval_s=600)
    m.start()
    settled = modules.write("settled", "X = 1\n")
    old_ns = time.time_ns() - 10 * 1_000_000_000
    os.utime(settled, ns=(old_ns, old_ns))
    modules.load("settled")
    changed, _, quiet = m.settle_imported(5.0)
    assert (changed, quiet) == ([], True)  # quiet: what it imported is current
    path = modules.write("arriving", "X = 1\n")  # saved just now: a deploy may be under way
    modules.load("arriving")
    path.write_text("X = 22\n")  # ... and it was: replaced after the import
    changed, waited_s, quiet = m.settle_imported(5.0)
    assert (changed, quiet) == ([str(path)], True) and waited_s < 5.0
    # A file saved ahead of the clock (a skewed NFS server) holds nothing back.
    ahead_ns = time.time_ns() + 3600 * 1_000_000_000
    os.utime(path, ns=(ahead_ns, ahead_ns))
    changed, waited_s, quiet = m.settle_imported(0.2)
    assert quiet and waited_s < 0.2


def test_files_that_are_not_code_do_not_hold_a_restart_back(
    modules: Modules, make_monitor: MakeMonitor
) -> None:
    # A log or a SQLite journal written beside the code all the time is no deploy.
    path = modules.write("busy", "X = 1\n")
    modules.load("busy")
    m, restarts = make_monitor("inotify", settle_s=0.2, safety_interval_s=600)
    m.start()
    path.write_text("X = 2\n")
    log_file = modules.root / "app.log"
    deadline = time.monotonic() + DEADLINE_S
    while not restarts.calls and time.monotonic() < deadline:
        with log_file.open("a") as handle:
            handle.write("a line\n")
        time.sleep(0.02)
    assert restarts.wait(0) == [str(path)]
    assert m.max_settle_s == 6.0  # 30 settle times, and a burst never holds it back past that


@pytest.mark.parametrize("backend", BACKENDS)
def test_thread_new_file_in_watched_glob(
    backend: str, tmp_path: Path, make_monitor: MakeMonitor
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    m, restarts = make_monitor(backend, watch=[str(conf / "*.toml")], safety_interval_s=600)
    m.start()
    added = conf / "new.toml"
    added.write_text("x = 1\n")
    assert restarts.wait() == [str(added)]


def test_stop_removes_the_recorder_and_ends_the_thread(make_monitor: MakeMonitor) -> None:
    m, _ = make_monitor("inotify")
    m.start()
    assert any(type(finder).__name__ == "ImportRecorder" for finder in sys.meta_path)
    threads = {t for t in threading.enumerate() if t.name.startswith("wsgidev-monitor")}
    assert threads
    m.stop()
    assert not any(type(finder).__name__ == "ImportRecorder" for finder in sys.meta_path)
    assert not any(t.is_alive() for t in threads)


# -- Django's signals --------------------------------------------------------------------------


@pytest.fixture
def django_ready(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Django's autoreload signals with the app registry marked ready and our receivers only."""
    from django.apps import apps
    from django.utils import autoreload

    monkeypatch.setattr(apps, "ready", True)
    for signal_ in (autoreload.autoreload_started, autoreload.file_changed):
        monkeypatch.setattr(signal_, "receivers", [])
        signal_.sender_receivers_cache.clear()
    yield autoreload
    for signal_ in (autoreload.autoreload_started, autoreload.file_changed):
        signal_.sender_receivers_cache.clear()


def test_django_file_changed_handled_means_no_restart(
    tmp_path: Path,
    modules: Modules,
    django_ready: Any,
    make_monitor: MakeMonitor,
    capsys: pytest.CaptureFixture[str],
) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    page = templates / "page.html"
    page.write_text("one")
    other = tmp_path / "other.cfg"
    other.write_text("x")
    offered: list[Path] = []

    def watch_templates(sender: Any, **kwargs: Any) -> None:
        sender.watch_dir(templates, "**/*")
        sender.extra_files.add(other)

    def template_changed(sender: Any, file_path: Path, **kwargs: Any) -> bool | None:
        offered.append(file_path)
        return True if templates in file_path.parents else None

    django_ready.autoreload_started.connect(watch_templates, weak=False)
    django_ready.file_changed.connect(template_changed, weak=False)
    m, restarts = make_monitor()
    m.arm()
    m.app_loaded()
    assert m.check_once() == []
    assert m.is_watching(str(page)) and m.is_watching(str(other))

    page.write_text("two")
    assert m.check_once() == [str(page)]
    assert restarts.calls == [] and offered == [page]
    (handled,) = emitted(capsys.readouterr().err, "handled")
    assert handled.files == (str(page),)
    assert m.check_once() == []  # handled: the new state is the baseline

    code = templates / "templatetag.py"
    code.write_text("X = 1\n")  # .py always restarts, even where a receiver would handle it
    assert m.check_once() == [str(code)]
    assert restarts.calls == [[str(code)]]
    assert offered == [page]


def test_recreated_template_directory_is_watched_again(
    tmp_path: Path, django_ready: Any, make_monitor: MakeMonitor
) -> None:
    templates = tmp_path / "templates"
    sub = templates / "sub"
    sub.mkdir(parents=True)
    page = sub / "page.html"
    page.write_text("v1")
    offered: list[Path] = []

    def watch_templates(sender: Any, **kwargs: Any) -> None:
        sender.watch_dir(templates, "**/*")

    def template_changed(sender: Any, file_path: Path, **kwargs: Any) -> bool:
        offered.append(file_path)
        return True

    def offered_page(times: int) -> None:
        deadline = time.monotonic() + DEADLINE_S
        while offered.count(page) < times:
            assert time.monotonic() < deadline, f"{page} offered {offered.count(page)} times"
            time.sleep(0.01)

    django_ready.autoreload_started.connect(watch_templates, weak=False)
    django_ready.file_changed.connect(template_changed, weak=False)
    m, restarts = make_monitor("inotify", safety_interval_s=600)
    m.start()
    m.app_loaded()
    deadline = time.monotonic() + DEADLINE_S
    while not m.is_watching(str(page)):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    shutil.rmtree(sub)  # a branch switch: the directory goes, then comes back
    offered_page(1)
    sub.mkdir()
    page.write_text("v2")
    offered_page(2)
    page.write_text("v3")  # only seen if the new directory has a new watch
    offered_page(3)
    assert restarts.calls == []


def test_django_unhandled_change_restarts(
    tmp_path: Path, django_ready: Any, make_monitor: MakeMonitor
) -> None:
    other = tmp_path / "other.cfg"
    other.write_text("x")

    def watch_other(sender: Any, **kwargs: Any) -> None:
        sender.extra_files.add(other)

    def not_mine(sender: Any, file_path: Path, **kwargs: Any) -> None:
        return None

    django_ready.autoreload_started.connect(watch_other, weak=False)
    django_ready.file_changed.connect(not_mine, weak=False)
    m, restarts = make_monitor()
    m.arm()
    m.app_loaded()
    m.check_once()
    other.write_text("y")
    assert m.check_once() == [str(other)]
    assert restarts.calls == [[str(other)]]


DJANGO_SCRIPT = """
import json, os, sys, time, threading
import django
from django.conf import settings
root = sys.argv[1]
settings.configure(
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [root + "/templates"]}],
)
from wsgidev.daemon import monitor
restarts = []
m = monitor.start(
    backend=sys.argv[2], on_change=restarts.append, safety_interval_s=600, settle_s=0.05
)
django.setup()
from django.template.loader import render_to_string
m.app_loaded()
page = root + "/templates/page.html"
deadline = time.monotonic() + 5
while not m.is_watching(page) and time.monotonic() < deadline:
    time.sleep(0.005)
first = render_to_string("page.html")
edited = time.monotonic()
with open(page, "w") as f:
    f.write("two")
while render_to_string("page.html") != "two" and time.monotonic() - edited < 5:
    time.sleep(0.002)
visible_s = time.monotonic() - edited
second = render_to_string("page.html")
time.sleep(0.2)
m.stop()
print(json.dumps({"first": first, "second": second, "visible_s": visible_s, "restarts": restarts}))
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_real_django_template_edit_reloads_without_restart(tmp_path: Path, backend: str) -> None:
    # A subprocess: settings.configure() and django.setup() are once per process.
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "page.html").write_text("one")
    script = tmp_path / "django_check.py"
    script.write_text(textwrap.dedent(DJANGO_SCRIPT))
    result = subprocess.run(
        [sys.executable, str(script), str(tmp_path), backend],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["first"] == "one" and report["second"] == "two"
    assert report["restarts"] == []
    (handled,) = emitted(result.stderr, "handled")
    assert handled.files == (str(tmp_path / "templates" / "page.html"),)
    if backend == "inotify":
        assert report["visible_s"] < 0.5, report  # about 50 ms: the settle time it was given


# -- where the monitor refuses, and how it restarts ---------------------------------------------


def fake_mod_wsgi(monkeypatch: pytest.MonkeyPatch, **attributes: Any) -> None:
    module = types.ModuleType("mod_wsgi")
    for key, value in attributes.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, "mod_wsgi", module)


def test_embedded_mode_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_mod_wsgi(monkeypatch, process_group="")
    restarts = Restarts()
    finders = list(sys.meta_path)
    assert monitor.start(on_change=restarts) is None
    assert sys.meta_path == finders  # nothing installed
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    (refused,) = emitted(err, "refused")
    assert "embedded" in refused.reason


def test_outside_mod_wsgi_needs_an_explicit_on_change(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_mod_wsgi(monkeypatch)  # the pip package's module: no process_group
    assert monitor.start() is None
    assert emitted(capsys.readouterr().err, "refused")
    started = monitor.start(backend="poll", on_change=Restarts())
    assert started is not None
    started.stop()


def test_daemon_mode_restart_sends_sigint_to_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_mod_wsgi(monkeypatch, process_group="wsgidev")
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: kills.append((pid, sig)))
    started = monitor.start(backend="poll")
    assert started is not None
    try:
        assert started.on_change is restart.restart_process
        started.on_change(["/x.py"])
        assert kills == [(os.getpid(), signal.SIGINT)]
    finally:
        started.stop()


def test_failing_notify_backend_falls_back_to_polling(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wsgidev.daemon.monitor import inotify

    def no_instance(**_: Any) -> Any:
        raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(inotify, "INotify", no_instance)
    started = monitor.start(backend="inotify", on_change=Restarts())
    assert isinstance(started, monitor.PollingMonitor)
    started.stop()
    assert "inotify backend failed to start" in capsys.readouterr().err


@pytest.mark.usefixtures("started_now")
def test_one_thread_watches_every_directory(tmp_path: Path) -> None:
    # watchdog's observer ran a thread per watched directory: 2,657 in a Wagtail site's daemon.
    files = []
    for index in range(300):
        folder = tmp_path / f"pkg{index}"
        folder.mkdir()
        files.append(folder / "mod.py")
        files[-1].write_text("X = 1\n")
    before = threading.active_count()
    restarts = Restarts()
    started = monitor.start(
        watch=[str(f) for f in files], backend="inotify", on_change=restarts, safety_interval_s=600
    )
    assert started is not None and started.name == "inotify"
    try:
        assert threading.active_count() - before == 1  # the monitor thread, reading the descriptor
        files[-1].write_text("X = 2\n")  # the last directory armed is watched too
        assert restarts.wait() == [str(files[-1])]
    finally:
        started.stop()
    assert threading.active_count() == before


def test_unknown_backend_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown monitor backend"):
        monitor.create("fsevents2", on_change=Restarts())
    with pytest.raises(ValueError, match="unknown monitor backend"):
        monitor.start(backend="fsevents2", on_change=Restarts())  # not a fallback to polling


# -- deferred start (a standby process) --------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.usefixtures("started_now")
def test_deferred_monitor_records_imports_and_watches_only_after_resume(
    modules: Modules, backend: str
) -> None:
    restarts = Restarts()
    deferred = monitor.start(
        on_change=restarts, backend=backend, poll_interval_s=0.05, deferred=True
    )
    assert deferred is not None
    started: Monitor | None = None
    try:
        path = modules.write("standby_mod", "VALUE = 1\n")
        modules.load("standby_mod")
        assert not deferred.watching
        assert deferred.stale() == []
        path.write_text("VALUE = 22\n")  # after the import: the state recorded then is what counts
        assert deferred.stale() == [str(path)]
        holds_for(lambda: restarts.calls == [], 0.3, "no restart")  # nothing watches until resumed
        started = monitor.resume(deferred)
        assert started.watching
        assert restarts.wait() == [str(path)]
    finally:
        (started or deferred).stop()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.usefixtures("started_now")
def test_a_deferred_monitor_takes_the_script_and_watch_baselines_when_the_import_began(
    tmp_path: Path, backend: str
) -> None:
    # A standby arms when it takes over, after its import: a save of the WSGI script or of a
    # --watch file during that import must still count as a change.
    script, watched = tmp_path / "app.py", tmp_path / "settings.ini"
    conf = tmp_path / "conf"  # a --watch folder: its files are found only at the arm
    conf.mkdir()
    in_glob = conf / "site.toml"
    for path in (script, watched, in_glob):
        path.write_text("v = 1\n")
    restarts = Restarts()
    deferred = monitor.start(
        on_change=restarts,
        backend=backend,
        poll_interval_s=0.05,
        deferred=True,
        script=str(script),
        watch=[str(watched), str(conf)],
    )
    assert deferred is not None
    started: Monitor | None = None
    try:
        deferred.import_starting()
        time.sleep(0.01)  # a coarse clock must still date the saves after the import began
        for path in (script, watched, in_glob):
            path.write_text("v = 22\n")  # saved while the import ran
        started = monitor.resume(deferred)
        assert sorted(restarts.wait()) == sorted(map(str, (script, watched, in_glob)))
    finally:
        (started or deferred).stop()


@pytest.mark.usefixtures("started_now")
def test_without_a_noted_import_start_the_baselines_are_taken_at_arm(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("VERSION = 1\n")
    restarts = Restarts()
    deferred = monitor.start(
        on_change=restarts, backend="poll", poll_interval_s=0.05, deferred=True, script=str(script)
    )
    assert deferred is not None
    started = monitor.resume(deferred)
    try:
        holds_for(lambda: restarts.calls == [], 0.3, "no restart")
        script.write_text("VERSION = 22\n")
        assert restarts.wait() == [str(script)]
    finally:
        started.stop()


def test_glob_counts_count_only_what_each_glob_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each glob looks only at the files under its root (sorted, bisected): a sibling folder
    # whose name starts with the root's ("templates2", "templates.old") is not under it, and
    # is not even looked at.
    from wsgidev.daemon.monitor.globs import WatchGlob
    from wsgidev.daemon.monitor.imports import ImportRecorder
    from wsgidev.daemon.monitor.watched import WatchedFiles

    for relative in (
        "templates/a.html", "templates/sub/b.html", "templates/c.txt", "templates2/d.html",
        "templates.old/e.html", "templatesx.html", "locale/fr/f.po",
    ):  # fmt: skip
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    files = WatchedFiles(ImportRecorder(lambda: None))
    globs = [
        WatchGlob(str(tmp_path / "templates"), "**/*.html"),
        WatchGlob(str(tmp_path / "templates"), "*"),
        WatchGlob(str(tmp_path / "templates2"), "**/*"),
        WatchGlob(str(tmp_path / "locale"), "**/*.mo"),
    ]
    for glob in globs:
        files.add_glob(glob)
    looked_at: list[tuple[str, str]] = []
    matches = WatchGlob.matches

    def counted(glob: WatchGlob, path: str) -> bool:
        looked_at.append((glob.root, path))
        return matches(glob, path)

    monkeypatch.setattr(WatchGlob, "matches", counted)
    assert [count for _, count in files.glob_counts()] == [2, 2, 1, 0]
    assert all(path.startswith(root + os.sep) for root, path in looked_at), looked_at
    assert len(looked_at) == 3 + 3 + 1  # templates' three files twice, templates2's one


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_inotify_uses_the_loaded_c_library_and_never_looks_for_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """find_library runs ldconfig, then gcc on a temporary file that a process ended meanwhile
    leaves in TMPDIR; inotify_simple 1.3 calls it on every INotify(), 2.0 on the first."""
    import ctypes.util

    import inotify_simple

    from wsgidev.shared.inotifylibc import use_loaded_libc

    looked: list[str] = []

    def find_library(name: str) -> str | None:
        looked.append(name)
        return None

    monkeypatch.setattr(ctypes.util, "find_library", find_library)
    monkeypatch.setattr(inotify_simple, "find_library", find_library, raising=False)
    monkeypatch.setattr(inotify_simple, "_libc", None)
    use_loaded_libc()
    for _ in range(2):
        with inotify_simple.INotify() as notify:
            assert notify.fileno() >= 0
    assert looked == []


def test_a_glob_rooted_at_the_file_systems_root_matches():
    """--watch '/*.conf': the root is "/", and "/" + os.sep was "//", which no path starts with."""
    from wsgidev.daemon.monitor.globs import WatchGlob

    glob = WatchGlob.parse("/*.conf")
    assert glob is not None and glob.root == os.sep
    assert glob.matches("/site.conf") and glob.covers("/site.conf")
    assert not glob.matches("/etc/site.conf") and not glob.matches("/site.py")
    assert WatchGlob(os.sep, "**/*.conf").matches("/etc/site.conf")
