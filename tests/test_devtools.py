"""Browser dev tools with many processes: Werkzeug's console (--werkzeug) answered by the process
that holds its frames, and django-debug-toolbar's panels and History from a store every process
shares; real Apache (2 x 5), real packages, Debian's chromium where a page is involved."""

from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, reload_lines, wait_for

from wsgidev.daemon.handoff import ANSWERED_BY, Owners, with_hand_off
from wsgidev.daemon.werkzeugdebug import console_key, is_loopback, wrap
from wsgidev.shared.spec import EntrySpec

# The toolbar's current major version and the one before (its store API came in 6.0).
TOOLBARS = ("8.0.0", "7.1.1")
PIN_LINE = re.compile(r"^Werkzeug's debugger: PIN (\d{3}-\d{3}-\d{3}) ", re.M)
FRAME = re.compile(
    r'<div class="frame" id="frame-(\d+)">\s*<h4>.*?<code class="function">([^<]+)</code>', re.S
)


def _migrated(project: Path) -> Path:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=project, check=True
    )
    return project


class Browserless:
    """An HTTP client with cookies (the console's PIN cookie), that returns error pages too."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        self.headers: Any = None  # the last answer's

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=30) as response:
                self.headers = response.headers
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            self.headers = exc.headers
            return exc.code, exc.read().decode()


def _console(client: Browserless, secret: str, frame: str, command: str) -> tuple[int, str]:
    query = urllib.parse.urlencode(
        {"__debugger__": "yes", "cmd": command, "frm": frame, "s": secret}
    )
    status, out = client.get(f"/raises?{query}")
    return status, html.unescape(re.sub(r"<[^>]+>", "", out)).strip()


def _traceback(client: Browserless, mark: str) -> tuple[str, dict[str, str]]:
    """Load a page that raises: its console's secret, and its frames' ids by function name."""
    status, page = client.get(f"/raises?m={mark}")
    assert status == 500 and f"raised on purpose {mark} at level 3" in page, page[:2000]
    match = re.search(r'SECRET = "([^"]+)"', page)
    assert match is not None, page[:2000]
    frames = {name: frame for frame, name in FRAME.findall(page)}
    # Django's exception reached Werkzeug with the view's frames; wsgidev's re-raise is hidden.
    assert {"raises", "_raises_2", "_raises_3"} <= set(frames), frames
    assert "technical_500_response" not in frames, frames
    return match[1], frames


# --- Werkzeug's console -------------------------------------------------------------------------


def test_the_console_works_in_every_frame_whichever_process_raised(django_project, start_server):
    server = start_server(django_project, "--werkzeug", "--processes", "2", "--threads", "5")
    wait_for(lambda: PIN_LINE.search(server.log()), 20, lambda: f"the PIN line\n{server.log()}")
    pin = PIN_LINE.findall(server.log())[0]
    client = Browserless(server.url)
    secrets, answered, wrong, handed = set(), 0, [], 0
    for number in range(20):
        secret, frames = _traceback(client, f"r{number}")
        secrets.add(secret)
        if number == 0:  # the PIN once; the cookie is good in every process
            status, body = client.get(f"/raises?__debugger__=yes&cmd=pinauth&pin={pin}&s={secret}")
            assert status == 200 and json.loads(body)["auth"] is True, body
        for level, name in enumerate(("raises", "_raises_2", "_raises_3"), 1):
            status, out = _console(client, secret, frames[name], "level")
            handed += client.headers.get(ANSWERED_BY) is not None
            if status == 200 and out.endswith(f">>> level\n{level}"):
                answered += 1
            else:
                wrong.append((number, name, status, out[-300:]))
    assert answered == 60 and not wrong, wrong
    # Some commands landed on the process that did not raise and were handed to the one that
    # did (mod_wsgi gives each to a free process; all 60 on the owner never happened in testing).
    assert handed > 0, "no command was handed off: is one process answering everything?"
    # The PIN was printed once although every process (and standby) sent it.
    assert len(PIN_LINE.findall(server.log())) == 1, server.log()
    print(f"tracebacks from {len(secrets)} process(es); {handed} of 60 commands handed off")


def test_a_console_whose_process_a_reload_replaced_says_so(django_project, start_server):
    server = start_server(django_project, "--werkzeug", "--processes", "2", "--threads", "5")
    wait_for(lambda: PIN_LINE.search(server.log()), 20, "the PIN line")
    client = Browserless(server.url)
    secret, frames = _traceback(client, "old")
    pin = PIN_LINE.findall(server.log())[0]
    client.get(f"/raises?__debugger__=yes&cmd=pinauth&pin={pin}&s={secret}")
    assert _console(client, secret, frames["_raises_3"], "level")[1].endswith("3")
    views = django_project / "testapp" / "views.py"
    views.write_text(views.read_text() + "\n# edited\n")
    wait_for(lambda: reload_lines(server), 30, lambda: f"a reload\n{server.log()}")
    # The retired processes finish what they hold, then stop; from then on, whichever new
    # process takes the command says so.
    wait_for(
        lambda: _console(client, secret, frames["_raises_3"], "level")[0] == 410,
        30,
        "the old process's console to be gone",
    )
    for _ in range(4):
        status, out = _console(client, secret, frames["_raises_3"], "level")
        assert status == 410 and "has stopped since" in out, (status, out)
    # A new traceback works again.
    secret, frames = _traceback(client, "new")
    assert _console(client, secret, frames["_raises_2"], "level")[1].endswith("2")


def test_the_console_in_a_browser(django_project, start_server, browser):
    # A PIN of the user's: it reaches the daemons as wsgidev's own does (Apache's environment).
    pin = "314-159-265"
    server = start_server(
        django_project, "--werkzeug", "--env", f"WERKZEUG_DEBUG_PIN={pin}", "--threads", "5"
    )
    wait_for(lambda: PIN_LINE.search(server.log()), 20, "the PIN line")
    assert PIN_LINE.findall(server.log()) == [pin]
    page = browser.new_page()
    try:
        # No query string: Werkzeug 3.0's console appends its own "?__debugger__..." to the
        # page's whole URL (3.1 builds it properly).
        page.goto(server.url + "/raises")
        frame = page.locator("div.frame", has=page.locator("code.function", has_text="_raises_2"))
        frame.locator("pre.current").hover()  # which shows the console icon
        frame.locator("pre.current img").click()  # a console, and the PIN prompt
        # As a person does, enter the PIN once the prompt has faded in: Werkzeug fades it in
        # and out with two requestAnimationFrame loops, and a PIN accepted while the first
        # still runs starts the second beside it; each frame then adds and takes away 0.1 of
        # opacity and the prompt never hides (seen once, with pinauth answered in 30 ms).
        page.wait_for_function(
            "parseFloat(document.querySelector('.pin-prompt').style.opacity) > 0.95"
        )
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        page.fill('.pin-prompt input[name="pin"]', pin)
        page.click('.pin-prompt input[name="btn"]')
        page.locator(".pin-prompt").wait_for(state="hidden")
        for command, expected in (("level", "2"), ("mark == ''", "True")):
            field = page.locator("pre.console input")
            field.fill(command)
            field.press("Enter")
            output = page.locator("pre.console div.output")
            wait_for(
                lambda e=expected, o=output: e in o.inner_text(), 15, f"{command} -> {expected}"
            )
    finally:
        page.close()


@pytest.mark.parametrize(
    "query",
    [
        "__debugger__=yes&cmd=6*7&frm={frame}&s={secret}",
        # What a parser of its own would read otherwise than Werkzeug does.
        "__debugger__=yes&__debugger__=yes&cmd=6*7&frm={frame}&s={secret}",
        "%5F_debugger__=yes&cmd=6*7&frm={frame}&s={secret}",
        "__debugger__=yes&__debugger__=no&cmd=6*7&frm={frame}&s={secret}",
    ],
)
def test_only_clients_on_this_machine_get_the_console(query, monkeypatch):
    monkeypatch.setenv("WERKZEUG_DEBUG_PIN", "off")  # no PIN: only the address stands guard

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise ValueError("raised on purpose")

    debugged = wrap(app, EntrySpec(kind="script", label="t", werkzeug=True, trusted_hosts=("h",)))

    def call(address: str, path_query: str) -> tuple[str, str]:
        path, _, query_string = path_query.partition("?")
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": path,
            "QUERY_STRING": query_string,
            "REMOTE_ADDR": address,
            "HTTP_HOST": "h:8000",
            "SERVER_NAME": "h",
            "SERVER_PORT": "8000",
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(),
            "wsgi.errors": io.StringIO(),
        }
        seen: list[str] = []
        body = b"".join(debugged(environ, lambda s, h, e=None: seen.append(s)))
        return seen[0], body.decode()

    for address in ("127.0.0.1", "10.1.2.3"):
        status, page = call(address, "/")
        secret = re.search(r'SECRET = "([^"]+)"', page)
        frame = FRAME.findall(page)[-1][0]
        assert status.startswith("500") and secret is not None
        status, out = call(address, "/?" + query.format(frame=frame, secret=secret[1]))
        if address == "127.0.0.1" and query.startswith("__debugger__=yes&cmd"):
            assert status.startswith("200") and ">>> 6*7" in out and "42" in out, out
        elif address != "127.0.0.1":
            assert ">>> 6*7" not in out and status.startswith("500"), out[:500]
        # Werkzeug's own console page, for this machine only.
        console_page = "CONSOLE_MODE = true" in call(address, "/console")[1]
        assert console_page == (address == "127.0.0.1"), address
    assert console_key({"QUERY_STRING": "__debugger__=yes&cmd=resource&f=style.css&s=a"}) is None
    assert console_key({"QUERY_STRING": "page=2&s=abc"}) is None
    assert console_key({"QUERY_STRING": "__debugger__=yes&cmd=x&frm=1&s=abc"}) == "abc"
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("::1") and not is_loopback("10.0.0.1")


# --- the hand-off between processes ---------------------------------------------------------------

OWNER = """
import os, sys
from wsgidev.daemon.handoff import Owners

def app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("201 Created", [("X-Pid", str(os.getpid()))])
    seen = {k: environ[k] for k in ("SCRIPT_NAME", "PATH_INFO", "REMOTE_ADDR", "QUERY_STRING")}
    return [repr((seen, body)).encode()]

Owners(sys.argv[1]).claim("key-1", app)
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_pin_cookie_of_an_earlier_run_does_not_fail_the_next_runs_pin(
    django_project, start_server
):
    # Werkzeug names the cookie after the machine and the app: the same name in every run, and
    # a cookie of an earlier run's PIN would make the first PIN entered in this one fail.
    jar = CookieJar()
    for run in range(2):
        server = start_server(django_project, "--werkzeug", "--processes", "1")
        wait_for(lambda s=server: PIN_LINE.search(s.log()), 20, "the PIN line")
        client = Browserless(server.url)
        client.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        secret, _ = _traceback(client, f"run{run}")
        pin = PIN_LINE.findall(server.log())[0]
        status, body = client.get(f"/raises?__debugger__=yes&cmd=pinauth&pin={pin}&s={secret}")
        assert status == 200 and json.loads(body)["auth"] is True, (run, body)
        assert server.stop() == 0
    assert len({cookie.name for cookie in jar if cookie.name.startswith("__wzd")}) == 2


def test_the_pin_is_new_each_run_unless_set():
    from wsgidev.runplan import debugger_pin

    first, second = debugger_pin(()), debugger_pin(())
    assert re.fullmatch(r"\d{3}-\d{3}-\d{3}", first) and first != second
    assert debugger_pin((("WERKZEUG_DEBUG_PIN", "off"),)) == "off"
    assert debugger_pin((("WERKZEUG_DEBUG_PIN", "1234"),)) == "1234"


def test_a_request_with_another_process_key_is_answered_there_and_a_gone_one_says_so(tmp_path):
    (tmp_path / "owners").mkdir()
    with subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as owner:
        _hand_off_to(owner, tmp_path)


def _hand_off_to(owner: subprocess.Popen[str], tmp_path: Path) -> None:
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "ready\n"

        def local(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [])
            return [b"local"]

        routed = with_hand_off(local, Owners(tmp_path), lambda e: e.get("HTTP_X_KEY"), "thing")
        answers: list[Any] = []

        def call(key: str | None) -> bytes:
            environ = {
                "SCRIPT_NAME": "/mount",
                "PATH_INFO": "/p",
                "REMOTE_ADDR": "127.0.0.1",
                "QUERY_STRING": "a=1",
                "CONTENT_LENGTH": "5",
                "wsgi.input": io.BytesIO(b"hello"),
            }
            if key:
                environ["HTTP_X_KEY"] = key
            return b"".join(routed(environ, lambda s, h, e=None: answers.append((s, h))))

        body = call("key-1")
        pid = str(owner.pid)
        assert answers[-1] == ("201 Created", [("X-Pid", pid), (ANSWERED_BY, pid)])
        assert body.decode() == repr(
            (
                {
                    "SCRIPT_NAME": "/mount",
                    "PATH_INFO": "/p",
                    "REMOTE_ADDR": "127.0.0.1",
                    "QUERY_STRING": "a=1",
                },
                b"hello",
            )
        )
        assert call(None) == b"local" and call("nobody's") == b"local"
        owner.kill()
        owner.wait(10)
        gone = call("key-1")
        assert answers[-1][0] == "410 Gone" and f"process {owner.pid}" in gone.decode()
    finally:
        owner.kill()
        owner.wait(10)


# --- django-debug-toolbar -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def toolbars() -> dict[str, Path]:
    """Each toolbar version in its own folder (pip --target, kept in the venv between runs):
    the test project imports the one named in TEST_TOOLBAR before the venv's packages."""
    import django

    if django.VERSION < (5, 2):
        pytest.skip(f"django-debug-toolbar 7 and 8 need Django 5.2; this is {django.__version__}")
    cache = Path(sys.prefix) / "wsgidev-test-packages"
    folders = {}
    for version in TOOLBARS:
        folder = cache / f"django-debug-toolbar-{version}"
        if not (folder / "debug_toolbar").is_dir():
            spare = cache / f".{folder.name}.{os.getpid()}"
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(spare)]
                + [f"django-debug-toolbar=={version}"],
                check=True,
            )
            try:
                os.replace(spare, folder)
            except OSError:  # another run put it there meanwhile
                shutil.rmtree(spare, ignore_errors=True)
        folders[version] = folder
    return folders


def _toolbar_server(start_server: Any, project: Path, toolbar: Path) -> Any:
    """The test project with the toolbar installed from that folder, 2 processes x 5 threads."""
    env = {"TEST_TOOLBAR": str(toolbar)}
    return start_server(_migrated(project), "--processes", "2", "--threads", "5", env=env)


@pytest.mark.parametrize("version", TOOLBARS)
def test_every_panel_of_every_page_and_history_with_two_processes(
    version, toolbars, django_project, start_server
):
    server = _toolbar_server(start_server, django_project, toolbars[version])
    client = Browserless(server.url)
    request_ids, failed, fetched = [], [], 0
    for _ in range(20):
        status, page = client.get("/tables")
        assert status == 200, page[:2000]
        request_id = re.search(r'data-request-id="([0-9a-f]{32})"', page)
        assert request_id is not None, page[-3000:]
        request_ids.append(request_id[1])
        panels = re.findall(r'<div id="(\w+Panel)" class="djdt-panelContent', page)
        assert {"SQLPanel", "TemplatesPanel", "HistoryPanel"} <= set(panels), panels
        for panel in panels:
            status, body = client.get(
                f"/__debug__/render_panel/?request_id={request_id[1]}&panel_id={panel}"
            )
            fetched += 1
            if status != 200 or "available anymore" in body:
                failed.append((panel, status, body[:200]))
        sql = client.get(f"/__debug__/render_panel/?request_id={request_id[1]}&panel_id=SQLPanel")
        assert "django_content_type" in sql[1], sql[1][:2000]
    assert not failed, f"{len(failed)} of {fetched} panels failed: {failed[:5]}"
    status, body = client.get(
        f"/__debug__/render_panel/?request_id={request_ids[-1]}&panel_id=HistoryPanel"
    )
    listed = [rid for rid in request_ids if rid in json.loads(body)["content"]]
    assert listed == request_ids, f"History lists {len(listed)} of 20"
    assert toolbars[version].name.endswith(version)
    # wsgidev's shared store holds them (not the toolbar's MemoryStore, by chance on one process).
    stored = {
        path.name.rpartition("-")[2] for path in server.tmpdir.glob("wsgidev-*/toolbar/order/*")
    }
    assert set(request_ids) <= stored, stored
    # A request id that is not the toolbar's names nothing (it reaches a file name otherwise).
    status, body = client.get("/__debug__/render_panel/?request_id=../../x&panel_id=SQLPanel")
    assert status == 200 and "available anymore" in body


def test_the_toolbar_in_a_browser(toolbars, django_project, start_server, browser):
    server = _toolbar_server(start_server, django_project, toolbars[TOOLBARS[0]])
    page = browser.new_page()
    try:
        for _ in range(6):  # each panel's content comes from whichever process
            page.goto(server.url + "/tables")
            page.locator("#djDebugToolbar").wait_for()  # shown: the project's default
            for panel, text in (
                ("SQLPanel", "django_content_type"),
                ("TemplatesPanel", "page.html"),
            ):
                page.click(f"#djdt-{panel}")
                content = page.locator(f"#{panel} .djdt-scroll")
                wait_for(lambda c=content, t=text: t in c.inner_text(), 15, f"{panel} content")
                page.click(f"#{panel} .djDebugClose")
    finally:
        page.close()
