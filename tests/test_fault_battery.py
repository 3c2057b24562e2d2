"""Issue 12's fault battery, on a real Apache on loopback: each fault is bounded in count and
time and stops by itself; what the user sees is one clear line, the server keeps serving (or
stops cleanly, exit non-zero, when it cannot), and nothing is left running (the fixtures check
that: no Apache or daemon process, the port free, no server root in the test's TMPDIR)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from statistics import median

from conftest import alive, descendants, imports, reload_lines, set_version, versions, wait_for
from test_logstream import Terminal


def group_pids(server, marker: bytes) -> list[int]:
    """The daemons of one group, by display name: b"(wsgidev:" serves at first, b"(wsgidev.b:"
    is the standby."""
    found = []
    for pid in descendants(server.process.pid):
        try:
            if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return sorted(found)


def wsgidev_lines(server) -> list[str]:
    """The lines wsgidev itself printed to say something went wrong."""
    return [line for line in server.log().splitlines() if line.startswith("wsgidev:")]


class Load:
    """A bounded loopback load: client threads looping GETs until stopped, failures kept."""

    def __init__(self, server, clients: int, path: str = "/") -> None:
        self.server = server
        self.path = path
        self.failures: list[tuple[float, str]] = []  # (sent, what)
        self.seen: list[tuple[float, float, str]] = []  # (sent, took, version)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _loop(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                status, body = self.server.get(self.path, timeout_s=30)
            except OSError as exc:
                self.failures.append((sent, repr(exc)))
                continue
            if status != 200:
                self.failures.append((sent, f"status {status}: {body.decode(errors='replace')}"))
            else:
                self.seen.append((sent, time.monotonic() - sent, json.loads(body)["version"]))


# --- 1. SIGKILL of the wsgidev command --------------------------------------------------------


def test_sigkill_of_the_command_takes_the_tree_and_the_next_start_sweeps_its_root(
    project: Path, start_server
):
    first = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    assert first.process is not None
    tree = descendants(first.process.pid)
    assert tree, "Apache and its daemons run below wsgidev"
    # The server root: a temp folder named for wsgidev's pid, in its TMPDIR.
    roots = list(first.tmpdir.glob(f"wsgidev-{first.process.pid}-*"))
    assert len(roots) == 1, list(first.tmpdir.iterdir())
    first.process.kill()
    first.process.wait(5)
    # Apache gets SIGTERM from the kernel when wsgidev dies (parent-death signal) and stops its
    # children and daemons.
    wait_for(lambda: not any(alive(pid) for pid in tree), 5, "Apache and the daemons to go")
    assert roots[0].exists(), "nobody was left to remove the root: the next start sweeps it"
    second = start_server(project, "app.py", "--processes", "1", env={"TMPDIR": str(first.tmpdir)})
    assert not roots[0].exists(), "the next start in the same TMPDIR removed the orphaned root"
    assert second.json()["version"] == "v1"


# --- 2. SIGKILL of the Apache parent ----------------------------------------------------------


def test_sigkill_of_apache_stops_wsgidev_in_one_line(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    assert server.process is not None
    apache = [pid for pid in descendants(server.process.pid) if _parent(pid) == server.process.pid]
    assert len(apache) == 1, apache
    # An error Apache logged earlier is not why it stopped: a request cut by a killed daemon.
    serving = group_pids(server, b"(wsgidev:")
    cut = threading.Thread(target=lambda: server.get("/sleep?s=3"))
    cut.start()
    wait_for(lambda: server.json()["peak"] == 2, 5, "the slow request to be in flight")
    os.kill(serving[0], signal.SIGKILL)
    cut.join(10)
    wait_for(
        lambda: "from daemon process" in server.log(),
        5,
        lambda: f"mod_wsgi's error\n{server.log()}",
    )
    wait_for(lambda: len(group_pids(server, b"(wsgidev")) == 2, 10, "the daemon in its place")
    daemons = group_pids(server, b"(wsgidev")
    os.kill(apache[0], signal.SIGKILL)
    assert server.process.wait(15) == 1
    lines = wsgidev_lines(server)
    assert lines == ["wsgidev: Apache stopped by itself: killed by signal 9 (SIGKILL)"], (
        server.log()
    )
    assert "Traceback" not in server.log()
    assert not any(alive(pid) for pid in daemons), "the daemons went with Apache"
    assert not any(server.tmpdir.iterdir()), "the server root was removed"


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


# --- 3. SIGKILL of a serving daemon under load ------------------------------------------------


def test_sigkill_of_a_serving_daemon_under_load_fails_only_its_requests(
    project: Path, start_server
):
    server = start_server(project, "app.py", "--processes", "2", "--threads", "5")
    wait_for(lambda: len(imports(project)) == 2, 10, "both serving daemons to import the app")
    serving = group_pids(server, b"(wsgidev:")
    assert len(serving) == 2, serving
    with Load(server, clients=8) as load:
        time.sleep(1.0)
        os.kill(serving[0], signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(3.0)
    assert len(load.seen) > 100, "the load ran"
    # The requests the killed process was running die with it (mod_wsgi cannot tell whether the
    # app saw them, so it does not send them again): at most its 5 threads' worth, each with
    # the 502 page that says what happened. The rest go to the other process, then to both.
    assert len(load.failures) <= 5, load.failures
    for sent, failure in load.failures:
        assert sent < killed and failure.startswith("status 502") and "wsgidev" in failure
    assert all(version == "v1" for _, _, version in load.seen)
    assert any(sent > killed + 1.0 for sent, _, _ in load.seen), "served after the kill"
    wait_for(lambda: len(imports(project)) == 3, 10, "Apache to start a daemon in its place")
    assert not alive(serving[0])
    assert versions(server) == {"v1"}


# --- 4. SIGKILL of a standby right before and during a hand-over -------------------------------

# Once this file exists the app's import says so (a file named for its pid) and takes a second:
# a window to kill a standby while it imports.
SLOW_IMPORT = """
_here = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(_here, "slow-import")):
    open(os.path.join(_here, f"importing-{os.getpid()}"), "w").close()
    time.sleep(1.0)
"""


def test_a_standby_killed_right_before_a_hand_over(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "5")
    wait_for(lambda: len(imports(project)) == 1, 10, "the serving daemon to import the app")
    standby = group_pids(server, b"(wsgidev.b:")
    assert len(standby) == 1, standby
    with Load(server, clients=4) as load:
        time.sleep(0.5)
        os.kill(standby[0], signal.SIGKILL)
        saved = time.monotonic()
        set_version(project / "app.py", "v2")
        wait_for(lambda: load.seen and load.seen[-1][2] == "v2", 10, lambda: f"v2\n{server.log()}")
        time.sleep(0.5)
    assert load.failures == [], load.failures[:5]
    # The old group served the old code meanwhile: no request waited for a process to start
    # (a generous bound: here a flip to the empty group made requests wait about 0.45 s; the
    # line below is what tells the two apart).
    slowest = max(took for sent, took, _ in load.seen if sent >= saved - 0.1)
    assert slowest < 1.5, f"a request waited {slowest:.2f} s\n{server.log()}"
    after = [version for sent, _, version in load.seen if sent > load.seen[-1][0] - 0.4]
    assert set(after) == {"v2"}
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    assert len(reload_lines(server)) == 1
    # One line says so: the reload's own, or its own line where the new code served first.
    said = f"tandby process {standby[0]} had died (killed?): process "
    wait_for(lambda: said in server.log(), 5, lambda: f"the line\n{server.log()}")
    assert len([line for line in server.log().splitlines() if said in line]) == 1


def test_a_standby_killed_while_it_imports_the_new_code(project: Path, start_server):
    app = project / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"\n', 'VERSION = "v1"\n' + SLOW_IMPORT))
    server = start_server(project, "app.py", "--processes", "2", "--threads", "5")
    wait_for(lambda: len(imports(project)) == 2, 10, "the serving daemons to import the app")
    standby = group_pids(server, b"(wsgidev.b:")
    assert len(standby) == 2, standby
    (project / "slow-import").touch()
    with Load(server, clients=4) as load:
        time.sleep(0.5)
        set_version(app, "v2")
        # The route flips to the standby group at once; it imports for a second.
        importing = project / f"importing-{standby[0]}"
        wait_for(importing.exists, 5, lambda: f"the standby to import\n{server.log()}")
        os.kill(standby[0], signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: load.seen and load.seen[-1][2] == "v2", 10, lambda: f"v2\n{server.log()}")
        time.sleep(0.5)
    # Requests the killed process had taken (waiting there for the import) die with it: mod_wsgi
    # cannot know whether the app saw them, so it does not send them again. They get a 502
    # page that says what happened; every request sent after the kill gets the new code.
    for sent, failure in load.failures:
        assert sent < killed and failure.startswith("status 502") and "wsgidev" in failure
    assert standby[1] in {int(pid) for pid in imports(project)[2:]}, "the other one took over"
    # (A request sent just before the flip, which may come a moment after the kill, went to
    # the old group.)
    after = [version for sent, _, version in load.seen if sent > killed + 0.5]
    assert after and set(after) == {"v2"}
    # Requests waited for the import (a second), not for a process to start as well.
    slowest = max(took for _, took, _ in load.seen)
    assert slowest < 3.0, f"a request waited {slowest:.2f} s\n{server.log()}"
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    line = reload_lines(server)[0]
    assert f"standby process {standby[0]} died while importing the new code" in line, line
    assert f"process {standby[1]} serves it" in line, line


def test_the_only_standby_killed_while_it_imports(project: Path, start_server):
    """One process per group: nobody else has the new code, so requests wait for the process
    Apache starts in its place (a cold start), and the reload line waits for it too."""
    app = project / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"\n', 'VERSION = "v1"\n' + SLOW_IMPORT))
    server = start_server(project, "app.py", "--processes", "1", "--threads", "5")
    wait_for(lambda: len(imports(project)) == 1, 10, "the serving daemon to import the app")
    standby = group_pids(server, b"(wsgidev.b:")
    assert len(standby) == 1, standby
    (project / "slow-import").touch()
    set_version(app, "v2")
    wait_for((project / f"importing-{standby[0]}").exists, 5, lambda: f"the import\n{server.log()}")
    os.kill(standby[0], signal.SIGKILL)
    killed = time.monotonic()
    assert server.json()["version"] == "v2", "the next request waited for the new code"
    assert time.monotonic() - killed < 10
    wait_for(lambda: reload_lines(server), 10, "the reload line")
    replacement = [int(pid) for pid in imports(project)[1:] if int(pid) != standby[0]]
    assert len(replacement) == 1, imports(project)
    line = reload_lines(server)[0]
    assert f"standby process {standby[0]} died while importing the new code" in line, line
    assert f"process {replacement[0]} serves it" in line, line


# --- 9. A request longer than --shutdown-timeout during a reload -------------------------------


def test_a_request_cut_by_the_shutdown_timeout_gets_a_page_and_a_line(project: Path, start_server):
    server = start_server(
        project, "app.py", "--processes", "1", "--threads", "2", "--shutdown-timeout", "1"
    )
    answer: list[tuple[int, bytes]] = []
    slow = threading.Thread(target=lambda: answer.append(server.get("/sleep?s=6", 20)))
    slow.start()
    wait_for(lambda: server.json()["peak"] == 2, 5, "the slow request to be in flight")
    set_version(project / "app.py", "v2")
    wait_for(lambda: versions(server) == {"v2"}, 10, lambda: f"v2\n{server.log()}")
    slow.join(20)
    status, body = answer[0]
    # mod_wsgi answers 502 for a daemon that ended without answering; the page says why.
    assert status == 502, (status, body)
    page = body.decode()
    assert "proxy server" not in page
    assert "--shutdown-timeout (1 s)" in page and "larger --shutdown-timeout" in page, page
    wait_for(lambda: wsgidev_lines(server), 5, lambda: f"the line\n{server.log()}")
    lines = wsgidev_lines(server)
    assert len(lines) == 1, server.log()
    assert lines[0].startswith("wsgidev: GET /sleep?s=6 cut: still running 1 s after process")
    assert "told to stop for a reload" in lines[0] and "--shutdown-timeout" in lines[0]
    assert "from daemon process" not in server.log(), "mod_wsgi's own error went unsaid"


# --- 7. The server root deleted while running --------------------------------------------------


def test_the_server_root_deleted_while_running_stops_in_one_line(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    assert server.process is not None
    tree = descendants(server.process.pid)
    roots = list(server.tmpdir.glob("wsgidev-*"))
    assert len(roots) == 1
    shutil.rmtree(roots[0])
    # Without it every request got a 403 and no edit brought the server back: it stops.
    assert server.process.wait(15) == 1, server.log()
    lines = wsgidev_lines(server)
    assert len(lines) == 1, server.log()
    assert f"the server root {roots[0]} was deleted while the server ran" in lines[0]
    assert "start wsgidev again" in lines[0]
    assert lines[0] == server.log().splitlines()[-1], "nothing after it buries it"
    assert "Traceback" not in server.log()
    wait_for(lambda: not any(alive(pid) for pid in tree), 5, "Apache and the daemons to go")


# --- 5. An edit storm -----------------------------------------------------------------------------


def test_a_save_while_the_taker_imports_the_script_is_not_missed(project: Path, start_server):
    """The script's baseline is its state when its import began: a save made while a taking
    process imports it (and before that process watches) brings the next reload."""
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    wait_for(lambda: len(imports(project)) == 1, 10, "the serving daemon to import the app")
    app = project / "app.py"
    # v2 says it is importing (imports.log), then takes a second: the save of v3 lands then.
    text = app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"')
    aside = project / ".app.py.new"
    aside.write_text(text + '\nif VERSION == "v2":\n    time.sleep(1.0)\n')
    os.replace(aside, app)
    wait_for(lambda: len(imports(project)) == 2, 20, lambda: f"v2's import\n{server.log()}")
    set_version(app, "v3", style="rename")
    wait_for(lambda: versions(server, 4) == {"v3"}, 20, lambda: f"v3\n{server.log()}")


def test_an_edit_storm_gives_one_or_two_reloads_and_the_last_version(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "2", "--threads", "2")
    wait_for(lambda: len(imports(project)) == 2, 10, "both serving daemons to import the app")
    app = project / "app.py"
    started = time.monotonic()
    for index in range(100):  # 100 saves in 2 s, each with its own content
        set_version(app, f"s{index}")
        # Paced by the clock, not by a sleep after each save: on a loaded machine the saves
        # themselves slow down, and sleeps on top of them stretched the storm past 3 s.
        time.sleep(max(0.0, started + 0.02 * (index + 1) - time.monotonic()))
    assert time.monotonic() - started < 3.0
    wait_for(
        lambda: versions(server, 10) == {"s99"}, 20, lambda: f"the last version\n{server.log()}"
    )
    # Every serving process has the last version: 4 requests at once fill both processes'
    # 2 threads each.
    answers: list[dict[str, object]] = []
    together = [
        threading.Thread(target=lambda: answers.append(server.json("/sleep?s=0.5")))
        for _ in range(4)
    ]
    for thread in together:
        thread.start()
    for thread in together:
        thread.join(10)
    assert len({answer["pid"] for answer in answers}) == 2, answers
    assert {answer["version"] for answer in answers} == {"s99"}
    time.sleep(1.5)  # no reload comes after the last one
    reloads = len(reload_lines(server))
    assert reloads in (1, 2), server.log()
    # Each reload's taker group imports the app once per process up at the time: a hand-over
    # to a group whose second process Apache was still starting takes it with one (3 imports
    # for 2 reloads was seen), never more than two. A taker that read app.py while a save was
    # rewriting it in place fails that import and says so, and imports again at the next save
    # (seen once on a loaded machine: 3 imports, 1 reload, the failure said).
    imported = len(imports(project)) - 2
    half_read = server.log().count("The app failed to import")
    assert reloads <= imported <= 2 * reloads + half_read, (imports(project), server.log())


# --- 6. 40 reloads in a row ---------------------------------------------------------------------


def tree_usage(server) -> dict[str, int]:
    """The process tree's memory (PSS, kB), processes, threads and open descriptors, and the
    server root's file count."""
    assert server.process is not None
    usage = {"pss_kb": 0, "processes": 0, "threads": 0, "fds": 0}
    for pid in {server.process.pid, *descendants(server.process.pid)}:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            threads = len(os.listdir(f"/proc/{pid}/task"))
            fds = len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue  # exited meanwhile
        usage["pss_kb"] += next(
            int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")
        )
        usage["processes"] += 1
        usage["threads"] += threads
        usage["fds"] += fds
    usage["root_files"] = sum(1 for _ in next(server.tmpdir.glob("wsgidev-*")).rglob("*"))
    return usage


def settled_usage(server, looks: int = 3) -> dict[str, int]:
    """tree_usage's smallest figures of a few looks 0.1 s apart: a leak stays in every look, a
    passing shape of the tree does not. (Sampled once each, the last samples' median was 57.5
    and 58 fds against 55, once in a full run on a quiet machine and once beside a busy loop;
    a run that listed every process's descriptors after 40 reloads found the same 55, held by
    the same kinds of file.)"""
    usages = []
    for look in range(looks):
        if look:
            time.sleep(0.1)
        usages.append(tree_usage(server))
    return {key: min(usage[key] for usage in usages) for key in usages[0]}


def test_forty_reloads_in_a_row_leave_usage_flat(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    wait_for(lambda: len(imports(project)) == 1, 10, "the serving daemon to import the app")
    settled = len(descendants(server.process.pid))
    samples: list[dict[str, int]] = []
    for index in range(40):
        set_version(project / "app.py", f"r{index}")
        wait_for(lambda i=index: versions(server, 3) == {f"r{i}"}, 15, f"r{index}")
        if index < 10 or index >= 30:
            # Sampled once the retired group is back as the standby (as many processes as
            # at the start), so each sample sees the same shape of tree.
            wait_for(
                lambda: len(descendants(server.process.pid)) == settled, 15, "the tree to settle"
            )
            samples.append(settled_usage(server))
    first, last = samples[:10], samples[10:]
    # A leak grows with the reloads (30 of them between the two sets of samples); a sample can
    # also catch a moment of the tree that passes (a standby importing with its files open, a
    # process being replaced: seen 58 -> 62 fds once), so the sets' medians are compared.
    for key in ("processes", "threads", "fds", "root_files"):
        before, after = median(s[key] for s in first), median(s[key] for s in last)
        assert after <= before + 2, (key, before, after, samples)
    mean_first = sum(s["pss_kb"] for s in first) / 10
    mean_last = sum(s["pss_kb"] for s in last) / 10
    assert mean_last < mean_first * 1.15 + 4096, (mean_first, mean_last, samples)
    # The last reload's line may come a moment after its new code serves.
    wait_for(
        lambda: len(reload_lines(server)) >= 40, 5, lambda: f"the 40th reload line\n{server.log()}"
    )
    assert len(reload_lines(server)) == 40, server.log()
    assert "had died" not in server.log(), "a standby that retired is no fault"


# --- 8. Two `wsgidev start` in one project ------------------------------------------------------


def test_two_servers_in_one_project(project: Path, start_server):
    one = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    # In the same temp folder: the second start's sweep must leave the live server's root.
    two = start_server(
        project, "app.py", "--processes", "1", "--threads", "2", env={"TMPDIR": str(one.tmpdir)}
    )
    assert one.process is not None and two.process is not None
    roots = {path.name for path in one.tmpdir.glob("wsgidev-*")}
    assert len(roots) == 2, roots
    assert any(name.startswith(f"wsgidev-{one.process.pid}-") for name in roots)
    assert any(name.startswith(f"wsgidev-{two.process.pid}-") for name in roots)
    assert versions(one) == versions(two) == {"v1"}
    set_version(project / "app.py", "v2")
    wait_for(lambda: versions(one) == versions(two) == {"v2"}, 15, "both to reload")
    assert two.stop() == 0
    assert versions(one) == {"v2"}
    assert [path.name for path in one.tmpdir.glob("wsgidev-*")] == [
        name for name in roots if name.startswith(f"wsgidev-{one.process.pid}-")
    ]
    set_version(project / "app.py", "v3")
    wait_for(
        lambda: versions(one) == {"v3"}, 15, lambda: f"the other to keep reloading\n{one.log()}"
    )


# --- the terminal's side of these faults, without Apache -----------------------------------------


def test_a_cut_request_is_one_line_and_mod_wsgis_error_for_it_goes_unsaid():
    term = Terminal()
    term.event(
        "cut", 11, 1000.0, requests=["GET /export"], timeout_s=5, shutdown_reason="shutdown_signal"
    )
    term.printer.error_line(
        "error\t7\twsgi\tWSGI0147: Error reading response headers from daemon process "
        "'wsgidev-site' (Connection reset by peer).\n"
    )
    # The next such error is not the cut request's: it is shown.
    term.printer.error_line(
        "error\t7\twsgi\tWSGI0147: Error reading response headers from daemon process "
        "'wsgidev-site' (Connection reset by peer).\n"
    )
    lines = term.out.getvalue().splitlines()
    assert lines[0] == (
        "wsgidev: GET /export cut: still running 5 s after process 11 was told to stop for a "
        "reload (its client gets a 502 page saying so); for longer requests pass a larger "
        "--shutdown-timeout (now 5)"
    )
    assert len(lines) == 2 and "WSGI0147" in lines[1]


def test_a_standby_that_retired_is_no_fault_and_a_killed_one_is_said():
    for exited, said in ((True, False), (False, True)):
        term = Terminal()
        if exited:
            term.event("exit", 31, 999.0)
        term.event("change", 11, 1000.1, files=["/site/app.py"], saved_at=1000.0)
        term.event(
            "handover",
            11,
            1000.5,
            to="b",
            files=["/site/app.py"],
            answers={"31": "gone", "32": "ready"},
            passed={},
            retiring=[11],
        )
        term.event("exit", 11, 1000.6)
        term.event("ready", 32, 1000.9, started_at=1000.6, group="b")
        assert (
            "standby process 31 had died (killed?): process 32 took over" in term.lines()[0]
        ) is said


def test_the_root_watch_reports_a_deleted_root_with_inotify_and_by_polling(
    tmp_path: Path, monkeypatch
):
    from wsgidev import rootwatch

    for backend in ("inotify", "poll"):
        if backend == "poll":  # as where there is no inotify_simple (macOS)
            monkeypatch.setitem(sys.modules, "inotify_simple", None)
            monkeypatch.setattr(rootwatch, "POLL_S", 0.05)
        root = tmp_path / backend
        root.mkdir()
        (root / "entry.wsgi").write_text("")
        (root / "route-1").write_text("")
        gone = threading.Event()
        rootwatch.watch_root(root, "entry.wsgi", gone.set)
        time.sleep(0.2)
        (root / "route-1").unlink()  # a hand-over's route file comes and goes: no news
        time.sleep(0.2)
        assert not gone.is_set(), backend
        shutil.rmtree(root)
        assert gone.wait(2), backend
