"""Local security: what another user of the machine can see of a running wsgidev (real Apache).

The other user is a forked child of this test that drops to `nobody`'s uid (it cannot exec a
Python under a 0700 /root, so it keeps this one), and tries everything a local user could:
list the server root, read its files, connect to its sockets, read the processes' command lines.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

from conftest import descendants, wait_for

from wsgidev.proctitle import redacted

SECRET = "s3cret-7c1d-never-shown"
OTHER_UID = 65534  # nobody, on every Linux


def _server_root(server) -> Path:
    roots = list(server.tmpdir.glob("wsgidev-*"))
    assert len(roots) == 1, roots
    return roots[0]


def _as_other_user(attempts: list[tuple[str, str]]) -> dict[str, str]:
    """Run each (kind, path) attempt as OTHER_UID in a forked child; what each raised, or 'ok'."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            results = {}
            for kind, path in attempts:
                try:
                    if kind == "list":
                        os.listdir(path)
                    elif kind == "read":
                        with open(path, "rb") as file:
                            file.read(1)
                    elif kind == "stat":
                        os.stat(path)
                    elif kind == "connect":
                        with socket.socket(socket.AF_UNIX) as client:
                            client.settimeout(2)
                            client.connect(path)
                    results[f"{kind} {path}"] = "ok"
                except OSError as exc:
                    results[f"{kind} {path}"] = type(exc).__name__
            os.write(write_end, json.dumps(results).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    return dict(json.loads(data))


def test_another_user_reaches_nothing_in_the_server_root(project: Path, start_server):
    server = start_server(project, "app.py", "--env", f"SECRET={SECRET}")
    root = _server_root(server)
    # The standbys' import marks (importing/PID) come and go while the server warms up: what
    # vanished between the listing and its lstat is not there to try.
    modes = {}
    for entry in sorted(root.rglob("*")):
        try:
            modes[entry] = entry.lstat().st_mode
        except FileNotFoundError:
            continue
    entries = list(modes)
    sockets = [p for p, mode in modes.items() if stat.S_ISSOCK(mode)]
    files = [p for p, mode in modes.items() if stat.S_ISREG(mode)]
    assert sockets and files, entries  # the control sockets and the config are there to try
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    attempts = [("list", str(root)), ("stat", str(root / "httpd.conf"))]
    attempts += [("read", str(p)) for p in files] + [("connect", str(p)) for p in sockets]
    results = _as_other_user(attempts)
    reached = {what: result for what, result in results.items() if result == "ok"}
    assert not reached, reached
    # A mark may also vanish before the other user tries it (FileNotFoundError); nothing else.
    gone = {w for w, r in results.items() if r == "FileNotFoundError" and "/importing/" in w}
    assert {r for w, r in results.items() if w not in gone} == {"PermissionError"}, results
    # The --env value reaches the app through Apache's environment, in no file of the root.
    assert server.json("/?env=SECRET")["environ"] == {"SECRET": SECRET}
    holding = [p for p in files if p.exists() and SECRET.encode() in p.read_bytes()]
    assert not holding, holding


def test_env_values_are_in_no_command_line(project: Path, start_server):
    server = start_server(project, "app.py", "--env", f"SECRET={SECRET}", "--env=OTHER=x")
    assert server.process is not None
    app_code = (project / "app.py").read_text()
    # Saved whole (written aside, then renamed): an in-place write can be imported half-written,
    # and this test is about the environment, not about saves (seen once: a 500 mid-save).
    edited = project / ".app.py.new"
    edited.write_text(
        app_code.replace('"version": VERSION', '"version": VERSION, "secret": os.environ["SECRET"]')
    )
    os.replace(edited, project / "app.py")
    wait_for(lambda: server.json("/").get("secret") == SECRET, 20, "the app to see the secret")
    pids = {server.process.pid} | descendants(server.process.pid)
    assert len(pids) >= 4, pids  # the command, Apache, its daemons
    lines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids}
    shown = {pid: line for pid, line in lines.items() if SECRET.encode() in line}
    assert not shown, shown
    command_line = lines[server.process.pid].decode()
    assert "SECRET=***" in command_line and "--env=OTHER=***" in command_line, command_line


def test_a_named_server_root_is_made_private(project: Path, start_server, tmp_path: Path):
    named = tmp_path / "root"
    named.mkdir(mode=0o755)
    named.chmod(0o755)
    start_server(project, "app.py", "--server-root", str(named), "--env", f"SECRET={SECRET}")
    assert stat.S_IMODE(named.stat().st_mode) == 0o700
    assert stat.S_IMODE((named / "entry.wsgi").stat().st_mode) == 0o600


def test_redacted_hides_only_values_given():
    argv = ["wsgidev", "start", "--env", "A=1", "--env=B=two", "--port", "8000", "--env", "C="]
    assert redacted(argv, [("A", "1"), ("B", "two"), ("C", "")]) == [
        "wsgidev", "start", "--env", "A=***", "--env=B=***", "--port", "8000", "--env", "C=",
    ]  # fmt: skip
    assert redacted(["wsgidev", "start"], [("A", "1")]) is None
