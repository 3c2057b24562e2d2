"""Browser dev tools with many processes: Werkzeug's console (--werkzeug) answered by the process
that holds its frames, and django-debug-toolbar's panels and History from a store every process
shares; real Apache (2 x 5), real packages, Debian's chromium where a page is involved."""

from __future__ import annotations

import html
import io
import json
import os
import re
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

from wsgidev.daemon.handoff import Owners, with_hand_off
from wsgidev.daemon.werkzeugdebug import console_key, wrap
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

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
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
    wait_for(lambda: PIN_LINE.search(server.log()), 20, f"the PIN line\n{server.log()}")
    pin = PIN_LINE.findall(server.log())[0]
    client = Browserless(server.url)
    secrets, answered, wrong = set(), 0, []
    for number in range(20):
        secret, frames = _traceback(client, f"r{number}")
        secrets.add(secret)
        if number == 0:  # the PIN once; the cookie is good in every process
            status, body = client.get(f"/raises?__debugger__=yes&cmd=pinauth&pin={pin}&s={secret}")
            assert status == 200 and json.loads(body)["auth"] is True, body
        for level, name in enumerate(("raises", "_raises_2", "_raises_3"), 1):
            status, out = _console(client, secret, frames[name], "level")
            if status == 200 and out.endswith(f">>> level\n{level}"):
                answered += 1
            else:
                wrong.append((number, name, status, out[-300:]))
    assert answered == 60 and not wrong, wrong
    # Django's exception reached Werkzeug with the view's frames, not Django's 500 page; the PIN
    # was printed once although every process (and standby) sent it.
    assert len(PIN_LINE.findall(server.log())) == 1, server.log()
    print(f"tracebacks from {len(secrets)} process(es), 60 of 60 commands answered")


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
    wait_for(lambda: reload_lines(server), 30, f"a reload\n{server.log()}")
    for _ in range(4):  # whichever new process takes it
        status, out = _console(client, secret, frames["_raises_3"], "level")
        assert status == 410 and "has stopped since" in out, (status, out)
    # A new traceback works again.
    secret, frames = _traceback(client, "new")
    assert _console(client, secret, frames["_raises_2"], "level")[1].endswith("2")


def test_the_console_in_a_browser(django_project, start_server, browser):
    server = start_server(django_project, "--werkzeug", "--processes", "2", "--threads", "5")
    wait_for(lambda: PIN_LINE.search(server.log()), 20, "the PIN line")
    pin = PIN_LINE.findall(server.log())[0]
    page = browser.new_page()
    try:
        page.goto(server.url + "/raises?m=browser")
        frame = page.locator("div.frame", has=page.locator("code.function", has_text="_raises_2"))
        frame.locator("pre.current").hover()  # which shows the console icon
        frame.locator("pre.current img").click()  # a console, and the PIN prompt
        page.fill('.pin-prompt input[name="pin"]', pin)
        page.click('.pin-prompt input[name="btn"]')
        page.locator(".pin-prompt").wait_for(state="hidden")
        for command, expected in (("level", "2"), ("mark", "'browser'")):
            field = page.locator("pre.console input")
            field.fill(command)
            field.press("Enter")
            output = page.locator("pre.console div.output")
            wait_for(
                lambda e=expected, o=output: e in o.inner_text(), 15, f"{command} -> {expected}"
            )
    finally:
        page.close()


def test_the_console_answers_loopback_clients_only_and_config_refuses_it(tmp_path):
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"app"]

    guarded = wrap(app, EntrySpec(kind="script", label="t", werkzeug=True))
    seen: list[str] = []

    def start(status: str, headers: Any, exc: Any = None) -> None:
        seen.append(status)

    query = "__debugger__=yes&cmd=1&frm=1&s=x"
    for address, status in (("10.1.2.3", "403"), ("127.0.0.1", "200"), ("::1", "200")):
        environ = {"REQUEST_METHOD": "GET", "QUERY_STRING": query, "REMOTE_ADDR": address}
        environ.update({"wsgi.input": io.BytesIO(), "PATH_INFO": "/", "SERVER_NAME": "localhost"})
        environ.update({"SERVER_PORT": "80", "wsgi.url_scheme": "http", "HTTP_HOST": "localhost"})
        b"".join(guarded(environ, start))
        assert seen[-1].startswith(status), (address, seen)
    assert console_key({"QUERY_STRING": "__debugger__=yes&cmd=resource&f=style.css"}) is None
    assert console_key({"QUERY_STRING": "page=2&s=abc"}) is None


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
        assert answers[-1] == ("201 Created", [("X-Pid", str(owner.pid))])
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
            os.replace(spare, folder)
        folders[version] = folder
    return folders


@pytest.mark.parametrize("version", TOOLBARS)
def test_every_panel_of_every_page_and_history_with_two_processes(
    version, toolbars, django_project, start_server
):
    server = start_server(
        _migrated(django_project),
        "--processes",
        "2",
        "--threads",
        "5",
        env={"TEST_TOOLBAR": str(toolbars[version])},
    )
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
    # A request id that is not the toolbar's names nothing (it reaches a file name otherwise).
    status, body = client.get("/__debug__/render_panel/?request_id=../../x&panel_id=SQLPanel")
    assert status == 200 and "available anymore" in body


def test_the_toolbar_in_a_browser(toolbars, django_project, start_server, browser):
    server = start_server(
        _migrated(django_project),
        "--processes",
        "2",
        "--threads",
        "5",
        env={"TEST_TOOLBAR": str(toolbars[TOOLBARS[0]])},
    )
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
