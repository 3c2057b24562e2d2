"""`wsgidev start` against a real Apache: concurrency, queueing, logs, and every stop path."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import (
    alive,
    assert_one_line_error,
    descendants,
    holds_for,
    http_get,
    port_is_free,
    run_wsgidev,
    set_version,
    versions,
    wait_for,
)

from wsgidev.shared.serverroot import HANDOVER_LOCK, RESTART_LOCK


def _parallel_get(url: str, count: int, timeout_s: float = 60.0) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: http_get(url, timeout_s), range(count)))


def test_serves_across_exactly_the_asked_processes_and_threads(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "2", "--threads", "15")
    started = time.monotonic()
    answers = _parallel_get(server.url + "/sleep?s=1", 30)
    elapsed = time.monotonic() - started
    assert [status for status, _ in answers] == [200] * 30
    bodies = [json.loads(body) for _, body in answers]
    pids = {body["pid"] for body in bodies}
    assert len(pids) == 2, pids
    threads_per_pid = {pid: {b["thread"] for b in bodies if b["pid"] == pid} for pid in pids}
    assert all(len(threads) <= 15 for threads in threads_per_pid.values())
    # 30 one-second requests on 30 threads overlap; one thread per process would take 15 s.
    assert max(body["peak"] for body in bodies) > 1
    assert elapsed < 10, f"30 x 1 s requests took {elapsed:.1f} s"
    assert all(body["multiprocess"] for body in bodies)
    # The app was imported once per daemon process (preloaded), not once per request.
    imports = (project / "imports.log").read_text().split()
    assert sorted(set(imports)) == sorted(str(pid) for pid in pids)


def test_more_requests_than_threads_queue_and_all_succeed(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "2", "--threads", "15")
    answers = _parallel_get(server.url + "/sleep?s=1", 45)
    assert [status for status, _ in answers] == [200] * 45
    assert len({json.loads(body)["pid"] for _, body in answers}) == 2


def test_app_print_and_access_lines_reach_the_terminal(project: Path, start_server):
    server = start_server(project, "app.py", "--processes", "1", "--threads", "2")
    status, _ = server.get("/print?m=marker-123")
    assert status == 200
    wait_for(lambda: "hello from the app marker-123" in server.log(), 10, "the print() line")
    wait_for(lambda: '"GET /print?m=marker-123 HTTP/1.1" 200' in server.log(), 10, "access line")
    wait_for(lambda: "wsgidev serving" in server.log(), 10, "the banner")


def test_env_and_python_path_options_reach_the_app(project: Path, tmp_path: Path, start_server):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "helper_mod.py").write_text("VALUE = 'from-extra'\n")
    (project / "app2.py").write_text(
        "import helper_mod\nfrom app import application as inner\n"
        "def application(environ, start_response):\n"
        "    environ['QUERY_STRING'] = 'env=WSGIDEV_TEST_VAR'\n"
        "    return inner(environ, start_response)\n"
    )
    server = start_server(
        project,
        "app2:application",
        "--python-path",
        str(extra),
        "--env",
        "WSGIDEV_TEST_VAR=hello",
        "--processes",
        "1",
    )
    assert server.json("/")["environ"] == {"WSGIDEV_TEST_VAR": "hello"}


def test_sigterm_stops_everything(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "1")
    assert server.stop(signal.SIGTERM) == 0
    server.assert_nothing_left()


def test_terminal_resize_does_not_stop_the_server(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "1")
    assert server.process is not None
    # A resize signals the terminal's foreground process group: wsgidev's, not Apache's.
    os.killpg(server.process.pid, signal.SIGWINCH)
    holds_for(lambda: server.process.poll() is None, 1.0, "wsgidev running")
    assert server.get("/")[0] == 200
    assert all(alive(pid) for pid in server.apache_pids)


def test_killed_wsgidev_takes_apache_down(project: Path, start_server):
    server = start_server(project, "app:application", "--processes", "1")
    assert server.process is not None
    pids = descendants(server.process.pid)
    assert pids, "Apache should run below wsgidev"
    server.process.kill()
    server.process.wait(5)
    wait_for(lambda: not any(alive(pid) for pid in pids), 15, "Apache to follow wsgidev down")
    wait_for(lambda: port_is_free(server.port), 5, "the port to be free")
    # A SIGKILLed wsgidev cannot remove its server root; the next start sweeps it.
    leftovers = list(server.tmpdir.iterdir())
    assert len(leftovers) == 1
    again = start_server(
        project, "app:application", "--processes", "1", env={"TMPDIR": str(server.tmpdir)}
    )
    assert again.get("/")[0] == 200
    assert not leftovers[0].exists()


def test_named_server_root_is_kept_and_ipv6_loopback_serves(
    project: Path, tmp_path: Path, start_server
):
    if not socket.has_ipv6 or not _can_bind_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback")
    root = tmp_path / "root"
    server = start_server(
        project,
        "app:application",
        "--processes",
        "1",
        "--host",
        "::1",
        "--server-root",
        str(root),
        wait=False,
    )
    url = f"http://[::1]:{server.port}/"
    wait_for(lambda: _answers(url), 30, lambda: f"{url} to answer\n{server.log()}")
    assert json.loads(http_get(url)[1])["pid"] > 0
    assert server.stop() == 0
    assert (root / "httpd.conf").is_file() and (root / "entry.wsgi").is_file()
    assert 'Listen "[::1]:' in (root / "httpd.conf").read_text()


def _can_bind_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def _answers(url: str) -> bool:
    try:
        http_get(url, 2)
    except OSError:
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files to another user")
def test_server_root_is_handed_to_the_daemon_user(tmp_path: Path):
    import pwd

    from wsgidev.privileges import RunAs
    from wsgidev.rootdir import hand_to

    root = tmp_path / "root"
    (root / "ctl").mkdir(parents=True)
    (root / "entry.wsgi").write_text("")
    hand_to(root, RunAs(mode="apache-user", user="nobody"))
    nobody = pwd.getpwnam("nobody")
    for path in (root, root / "ctl", root / "entry.wsgi"):
        assert (path.stat().st_uid, path.stat().st_gid) == (nobody.pw_uid, nobody.pw_gid)


def test_env_file_reaches_the_app_and_stays_off_every_command_line(
    project: Path, tmp_path: Path, start_server
):
    secret = "s3cret-value-9f2c"
    env_file = tmp_path / "app.env"
    env_file.write_text(f"# secrets\nAPI_TOKEN={secret}\nexport OTHER='quoted value'\n")
    server = start_server(project, "app.py", "--env-file", str(env_file), "--env", "OTHER=flag")
    seen = server.json("/?env=API_TOKEN&env=OTHER")["environ"]
    assert seen == {"API_TOKEN": secret, "OTHER": "flag"}  # --env wins over the file
    assert server.process is not None
    for pid in {server.process.pid, *descendants(server.process.pid)}:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret.encode() not in cmdline, pid
    roots = [p for p in server.tmpdir.iterdir() if p.name.startswith("wsgidev-")]
    assert roots and all(stat.S_IMODE(root.stat().st_mode) == 0o700 for root in roots)


def test_a_second_start_into_a_running_servers_root_leaves_it_alone(
    project: Path, tmp_path: Path, short_tmp: Path, start_server
):
    # Started twice by mistake (server-root in pyproject.toml): the second start finds the port
    # busy before it rewrites the first one's files and hand-over locks.
    root = tmp_path / "root"
    server = start_server(project, "app:application", "--server-root", str(root))
    # What a start writes there (the running server rewrites others itself, preload.json).
    names = ("httpd.conf", "entry.wsgi", HANDOVER_LOCK, RESTART_LOCK)

    def written() -> dict[str, tuple[bytes, int]]:
        return {
            name: ((root / name).read_bytes(), (root / name).stat().st_mtime_ns) for name in names
        }

    files = written()
    code, _, err = run_wsgidev(
        project, short_tmp, "start", "app:application", "--server-root", str(root),
        "--port", str(server.port),
    )  # fmt: skip
    assert_one_line_error(code, err, f"port {server.port}", "in use")
    assert written() == files
    set_version(project / "app.py", "v2")
    wait_for(lambda: versions(server) == {"v2"}, 20, lambda: f"v2 served\n{server.log()}")
