"""Debugging in the real server, on a real terminal (pexpect): breakpoint() in any of 2 x 5
daemon threads, one session at a time, --pdb post-mortem, reloads that never kill a paused
request, Ctrl-C at the prompt, and a breakpoint with no terminal that does not hang."""

from __future__ import annotations

import json
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conftest import TerminalServer, http_get, wait_for

from wsgidev.logstream import LogPrinter

APP = """
import json, os

VERSION = "v1"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    secret = "secret-of-" + path.strip("/")
    if path.startswith("/pause"):
        breakpoint()
    if path == "/boom":
        number = int("not a number")
    body = json.dumps({"version": VERSION, "pid": os.getpid(), "secret": secret}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

MIX = ("app.py", "--processes", "2", "--threads", "5")
BREAKPOINT_LINE = textwrap.dedent(APP).splitlines().index("        breakpoint()") + 1
RAISING_LINE = BREAKPOINT_LINE + 2


@pytest.fixture
def debug_project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "app.py").write_text(textwrap.dedent(APP))
    return folder


class Client:
    """A GET in a thread of its own (the request pauses while the test types)."""

    def __init__(self, url: str) -> None:
        self.answer: tuple[int, bytes] | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._get, args=(url,), daemon=True)
        self._thread.start()

    def _get(self, url: str) -> None:
        try:
            self.answer = http_get(url, 120)
        except BaseException as exc:
            self.error = exc

    def result(self, timeout_s: float = 20) -> tuple[int, bytes]:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"no answer within {timeout_s} s"
        assert self.answer is not None, self.error
        return self.answer

    def done(self) -> bool:
        return not self._thread.is_alive()


def _version(server: TerminalServer) -> str:
    status, body = http_get(server.url + "/", 10)
    assert status == 200, body
    return str(json.loads(body)["version"])


def test_breakpoint_stops_pdb_prints_a_local_and_continue_finishes_the_request(
    debug_project: Path, terminal_server
):
    server = terminal_server(debug_project, *MIX)
    assert "breakpoint() in any process or thread opens pdb on this terminal" in server.text()
    client = Client(server.url + "/pause-one")
    stopped = server.expect(r"\(Pdb\) ")
    assert (
        "GET /pause-one (process " in stopped and f"stopped at app.py:{BREAKPOINT_LINE}" in stopped
    ), stopped
    server.type("p secret")
    server.expect("'secret-of-pause-one'")
    server.expect(r"\(Pdb\) ")
    server.type("c")
    status, body = client.result()
    assert status == 200 and json.loads(body)["secret"] == "secret-of-pause-one", body
    # The access line was held back during the session and printed after it.
    server.expect('"GET /pause-one HTTP/1.1" 200')


def test_pythonbreakpoint_ipdb_set_trace_runs_ipdb_in_the_session(
    debug_project: Path, terminal_server
):
    server = terminal_server(debug_project, *MIX, env={"PYTHONBREAKPOINT": "ipdb.set_trace"})
    client = Client(server.url + "/pause-ipdb")
    stopped = server.expect("ipdb> ")
    # Told the caller's frame: it stops in the view, not in wsgidev's hook.
    assert "app.py" in stopped and "debugger.py" not in stopped, stopped
    server.type("p secret")
    server.expect("'secret-of-pause-ipdb'")
    server.type("c")
    status, body = client.result()
    assert status == 200 and json.loads(body)["secret"] == "secret-of-pause-ipdb"


def test_two_breakpoints_at_once_are_served_one_after_the_other(
    debug_project: Path, terminal_server
):
    server = terminal_server(debug_project, *MIX)
    first = Client(server.url + "/pause-first")
    server.expect(r"\(Pdb\) ")
    second = Client(server.url + "/pause-second")
    server.expect(r"Waiting for the debugger: GET /pause-second .* when GET /pause-first is done")
    assert not second.done()
    server.type("p secret")
    server.expect("'secret-of-pause-first'")
    server.type("c")
    assert first.result()[0] == 200
    server.expect(r"Debugger: GET /pause-second .*\(Pdb\) ")
    server.type("p secret")
    server.expect("'secret-of-pause-second'")
    server.type("c")
    status, body = second.result()
    assert status == 200 and json.loads(body)["secret"] == "secret-of-pause-second"


def test_q_ends_the_session_and_the_request_gets_an_error(debug_project: Path, terminal_server):
    server = terminal_server(debug_project, *MIX)
    client = Client(server.url + "/pause")
    server.expect(r"\(Pdb\) ")
    server.type("q")
    assert client.result()[0] == 500
    # The terminal is free again: the next breakpoint opens at once.
    again = Client(server.url + "/pause-again")
    server.expect(r"Debugger: GET /pause-again.*\(Pdb\) ")
    server.type("c")
    assert again.result()[0] == 200


def test_pdb_opens_post_mortem_at_the_raising_frame_then_the_500_goes_out(
    debug_project: Path, terminal_server
):
    server = terminal_server(debug_project, *MIX, "--pdb")
    client = Client(server.url + "/boom")
    opened = server.expect(r"\(Pdb\) ")
    assert "ValueError: invalid literal for int()" in opened, opened
    at = f'app.py({RAISING_LINE})application()\r\n-> number = int("not a number")'
    assert at in opened, opened
    server.type("p path")
    server.expect("'/boom'")
    assert not client.done(), "the response waits for the session"
    server.type("c")
    assert client.result()[0] == 500
    # Without --pdb nothing stops (checked in the no-terminal test); an ordinary page is fine.
    assert _version(server) == "v1"


def test_django_pdb_opens_post_mortem_through_got_request_exception(
    django_project: Path, terminal_server
):
    project = django_project
    server = terminal_server(project, "--pdb", "--skip-checks", "--no-reload", manage_py=True)
    client = Client(server.url + "/log?status=abc")
    opened = server.expect(r"\(Pdb\) ")
    assert "ValueError" in opened and "views.py" in opened, opened
    server.type("p marker")
    server.expect("''")
    server.type("c")
    assert client.result()[0] == 500


def test_django_breakpoint_in_a_view_under_runwsgidev_with_threads_and_reloading(
    django_project: Path, terminal_server
):
    project = django_project
    server = terminal_server(project, "--skip-checks", manage_py=True)  # 2 x 5, reloading
    assert "reloading on changes" in server.text()
    client = Client(server.url + "/pause")
    stopped = server.expect(r"\(Pdb\) ")
    assert "Debugger: GET /pause (process " in stopped and "views.py" in stopped, stopped
    server.type("p value + 1")
    server.expect("42")
    server.type("c")
    assert client.result() == (200, b"value=41")


@pytest.mark.parametrize("mode", ["standby", "process"])
def test_an_edit_during_a_session_serves_new_code_while_the_paused_request_keeps_the_old(
    debug_project: Path, terminal_server, mode: str
):
    server = terminal_server(debug_project, *MIX, "--restart-mode", mode, "--shutdown-timeout", "1")
    paused = Client(server.url + "/pause")
    stopped = server.expect(r"\(Pdb\) ")
    pid = stopped.split("(process ", 1)[1].split(",", 1)[0]
    app = debug_project / "app.py"
    app.write_text(app.read_text().replace('"v1"', '"v2"'))
    wait_for(lambda: _version(server) == "v2", 20, "the new code to serve")
    server.expect(f"Process {pid} keeps the old code until the debugger session ends")
    # Well past --shutdown-timeout: the process a session holds is not killed.
    time.sleep(3)
    assert not paused.done()
    server.type("p secret")
    server.expect("'secret-of-pause'")
    server.type("c")
    status, body = paused.result()
    assert status == 200 and json.loads(body)["version"] == "v1", body
    assert json.loads(body)["pid"] == int(pid)
    # The held process goes once its request is done; every request now gets the new code.
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 20, f"process {pid} to exit")
    assert {_version(server) for _ in range(10)} == {"v2"}


def test_request_timeout_stops_the_process_but_never_cuts_the_session_short(
    debug_project: Path, terminal_server
):
    # One thread: mod_wsgi's threshold is request-timeout x (1 + ln 1) = 1 s.
    args = ("app.py", "--processes", "2", "--threads", "1", "--request-timeout", "1")
    server = terminal_server(debug_project, *args)
    paused = Client(server.url + "/pause")
    stopped = server.expect(r"\(Pdb\) ")
    pid = stopped.split("(process ", 1)[1].split(",", 1)[0]
    server.expect(f"Process {pid} stops \\(request-timeout\\) once the debugger session ends")
    assert _version(server) == "v1"  # the other process serves
    time.sleep(2)
    server.type("p secret")
    server.expect("'secret-of-pause'")
    server.type("c")
    status, body = paused.result()
    assert status == 200 and json.loads(body)["pid"] == int(pid), body


def test_ctrl_c_at_the_prompt_interrupts_and_twice_stops_everything(
    debug_project: Path, terminal_server
):
    server = terminal_server(debug_project, *MIX)
    client = Client(server.url + "/pause")
    server.expect(r"\(Pdb\) ")
    server.child.send("p half-typed")
    time.sleep(0.5)  # a person's pause: CPython's readline sees a signal only while it waits
    server.ctrl_c()
    server.expect(r"--KeyboardInterrupt--\s+\(Pdb\) ")
    server.type("p secret")  # the session goes on
    server.expect("'secret-of-pause'")
    time.sleep(1.2)  # more than a second since the first Ctrl-C: not a double press
    server.ctrl_c()
    server.expect(r"--KeyboardInterrupt--\s+\(Pdb\) ")
    server.ctrl_c()  # the second press within a second of that one: the server stops
    assert server.wait_exit() == 0, server.text()
    server.assert_nothing_left()
    # The paused request gets its error page before Apache stops, as the log says; and no
    # process "keeps the old code": nothing was edited, the server stopped.
    client._thread.join(20)
    assert client.done() and client.answer is not None, client.error
    text = server.text()
    assert f'"GET /pause HTTP/1.1" {client.answer[0]} ' in text, text
    assert client.answer[0] == 500 and "keeps the old code" not in text, text


def test_breakpoint_without_a_terminal_is_skipped_with_one_line(debug_project: Path, start_server):
    server = start_server(debug_project, *MIX)
    assert "breakpoint() is skipped: wsgidev is not running in a terminal" in server.log()
    started = time.monotonic()
    status, body = server.get("/pause", timeout_s=10)
    assert status == 200 and time.monotonic() - started < 5, body
    wait_for(
        lambda: (
            f"breakpoint() at app.py:{BREAKPOINT_LINE} skipped: wsgidev start has no terminal"
            in server.log()
        ),
        10,
        "the skip line",
    )


def test_pythonbreakpoint_0_disables_breakpoints(debug_project: Path, terminal_server):
    server = terminal_server(debug_project, *MIX, env={"PYTHONBREAKPOINT": "0"})
    status, body = http_get(server.url + "/pause", 10)
    assert status == 200, body
    assert "(Pdb)" not in server.text() and "skipped" not in server.text()


def test_log_lines_are_held_during_a_session_and_wsgidev_lines_are_not():
    out: list[str] = []

    class Sink:
        def write(self, text: str) -> None:
            out.append(text)

        def flush(self) -> None:
            pass

    printer = LogPrinter(Sink(), processes=2, colour=False, verbose=False)  # type: ignore[arg-type]
    shown: list[str] = []
    printer.hold(shown.append)
    printer.access_line("24/Nov/2026 10:00:00\tGET / HTTP/1.1\t200\t5\t1000\n")
    printer.say("Reloaded in 0.10 s: app.py changed")
    assert out == [] and shown == ["Reloaded in 0.10 s: app.py changed"]
    printer.release()
    assert out == ['[24/Nov/2026 10:00:00] "GET / HTTP/1.1" 200 5 1ms\n']
    printer.say("after")
    assert out[-1] == "after\n"
