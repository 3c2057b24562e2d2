"""Browser dev tools with many processes, side by side: Werkzeug's console and the debug toolbar.

    .venv/bin/python bench/devtools.py [--write]

Needs `pip install -e '.[bench]'` (django-extensions, django-debug-toolbar, werkzeug, gunicorn).
Serves the tests' Django project (tests/djangoproject: a view that raises three frames down, a
page that runs a query and renders a template) with each server on a free loopback port, and
counts, as the client sees them:

- **console**: 20 requests that raise; in each traceback, Werkzeug's console evaluates `level`
  in three frames (60 commands; the right answer is the frame's own value), the PIN entered
  first (again until it takes: elsewhere than wsgidev it may land on a process that did not
  render the page). wsgidev --werkzeug
  (2 x 5) against runserver_plus (one process) and gunicorn with 2 workers around Werkzeug's
  DebuggedApplication (what a user would put together for several processes);
- **toolbar**: 20 pages loaded by 4 clients at once; every panel of each fetched afterwards, and
  the History panel's list. wsgidev (2 x 5, its shared store) against runserver (one process,
  the toolbar's default) and wsgidev with the toolbar's MemoryStore chosen in the settings (what
  the toolbar does by itself with two processes).

--write puts the tables into docs/benchmarks.md between its devtools markers.
"""

from __future__ import annotations

import argparse
import datetime
import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.projects import user_env  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"
HOST = "127.0.0.1"
TRACEBACKS, PAGES, CLIENTS = 20, 20, 4
FRAME = re.compile(
    r'<div class="frame" id="frame-(\d+)">\s*<h4>.*?<code class="function">([^<]+)</code>', re.S
)
PIN_LINE = re.compile(r"PIN:? (\d{3}-\d{3}-\d{3})")
GUNICORN_WSGI = """
from django.views import debug
from django_extensions.management.technical_response import null_technical_500_response
from testsite.wsgi import application as django_app
from werkzeug.debug import DebuggedApplication

debug.technical_500_response = null_technical_500_response
application = DebuggedApplication(django_app, evalex=True)
"""


@dataclass
class Server:
    label: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def start(self, project: Path, port: int) -> str:
        self.log = project / f"{self.label.split()[0]}-{port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                self.command,
                cwd=project,
                env={**user_env(), **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        base = f"http://{HOST}:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(base + "/", timeout=2).read()
                return base
            except urllib.error.HTTPError:
                return base
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.label} did not answer:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGINT)  # the group this script started
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)


class Client:
    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def console_run(base: str, pin: str) -> dict[str, object]:
    """20 tracebacks x 3 frames: how many console commands got their frame's answer."""
    client = Client(base)
    answered, took = 0, []
    for number in range(TRACEBACKS):
        _, page = client.get(f"/raises?m=b{number}")
        secret = re.search(r'SECRET = "([^"]+)"', page)
        frames = {name: frame for frame, name in FRAME.findall(page)}
        if secret is None:
            continue
        if number == 0 and pin:  # a user enters the PIN again until it takes
            for _ in range(10):
                _, body = client.get(
                    f"/raises?__debugger__=yes&cmd=pinauth&pin={pin}&s={secret[1]}"
                )
                if '"auth": true' in body:
                    break
        for level, name in enumerate(("raises", "_raises_2", "_raises_3"), 1):
            query = {"__debugger__": "yes", "cmd": "level", "frm": frames.get(name, "0")}
            started = time.perf_counter()
            status, out = client.get("/raises?" + urllib.parse.urlencode({**query, "s": secret[1]}))
            took.append(time.perf_counter() - started)
            text = html.unescape(re.sub(r"<[^>]+>", "", out)).strip()
            answered += status == 200 and text.endswith(f">>> level\n{level}")
    took.sort()
    return {
        "answered": answered,
        "of": TRACEBACKS * 3,
        "p50_ms": round(took[len(took) // 2] * 1000, 1) if took else None,
    }


def toolbar_run(base: str) -> dict[str, object]:
    """20 pages by 4 clients at once, then every panel of each, then History's list."""

    def load(_: int) -> tuple[str, list[str]]:
        status, page = Client(base).get("/tables")
        request_id = re.search(r'data-request-id="([0-9a-f]{32})"', page)
        panels = re.findall(r'<div id="(\w+Panel)" class="djdt-panelContent', page)
        return (request_id[1] if request_id and status == 200 else ""), panels

    with ThreadPoolExecutor(CLIENTS) as pool:
        pages = list(pool.map(load, range(PAGES)))
    client = Client(base)
    loaded = fetched = 0
    for request_id, panels in pages:
        for panel in panels:
            fetched += 1
            status, body = client.get(
                f"/__debug__/render_panel/?request_id={request_id}&panel_id={panel}"
            )
            loaded += status == 200 and "available anymore" not in body
    ids = [request_id for request_id, _ in pages if request_id]
    listed = 0
    if ids:
        status, body = client.get(
            f"/__debug__/render_panel/?request_id={ids[-1]}&panel_id=HistoryPanel"
        )
        content = json.loads(body).get("content", "") if status == 200 else ""
        listed = sum(request_id in content for request_id in ids)
    return {"pages": len(ids), "loaded": loaded, "fetched": fetched, "history": listed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md")
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    scratch = Path(tempfile.mkdtemp(prefix="wsgidev-devtools-"))
    project = scratch / "site"
    shutil.copytree(REPO / "tests" / "djangoproject", project)
    (project / "devtools_wsgi.py").write_text(GUNICORN_WSGI)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=project,
        env=user_env(),
        check=True,
    )
    wsgidev = [str(bin_dir / "wsgidev"), "start", "--processes", "2", "--threads", "5"]
    toolbar_env = {"TEST_TOOLBAR": "installed"}
    memory = {**toolbar_env, "TEST_TOOLBAR_STORE": "debug_toolbar.store.MemoryStore"}
    consoles = [
        ("wsgidev --werkzeug (2 processes x 5 threads)", [*wsgidev, "--werkzeug"], {}),
        (
            "runserver_plus (1 process, threaded)",
            [sys.executable, "manage.py", "runserver_plus", "--threaded"],
            {"TEST_DJANGO_EXTENSIONS": "1", "WERKZEUG_DEBUG_PIN": "123-456-789"},
        ),
        (
            "gunicorn, 2 workers x 5 threads, around DebuggedApplication",
            [str(bin_dir / "gunicorn"), "--workers", "2", "--threads", "5", "devtools_wsgi"],
            {"TEST_DJANGO_EXTENSIONS": "1", "WERKZEUG_DEBUG_PIN": "123-456-789"},
        ),
    ]
    toolbars = [
        ("wsgidev (2 processes x 5 threads; its shared store)", wsgidev, toolbar_env),
        (
            "runserver (1 process, threaded; the toolbar's MemoryStore)",
            [sys.executable, "manage.py", "runserver", "--noreload"],
            toolbar_env,
        ),
        ("wsgidev (2 x 5) with the toolbar's MemoryStore set", wsgidev, memory),
    ]
    rows: list[str] = []
    try:
        rows += ["| console | commands answered | p50 per command |", "|---|---|---|"]
        for label, command, env in consoles:
            port = free_port()
            server = Server(label, _with_address(command, port), env)
            try:
                base = server.start(project, port)
                _, _ = Client(base).get("/raises")  # wsgidev prints its PIN with the app
                assert server.log is not None
                pins = PIN_LINE.findall(server.log.read_text())
                result = console_run(base, pins[0] if pins else "123-456-789")
            finally:
                server.stop()
            print(label, result, flush=True)
            rows.append(
                f"| {label} | {result['answered']} of {result['of']} | {result['p50_ms']} ms |"
            )
        rows += ["", "| debug toolbar | panels loaded | History lists |", "|---|---|---|"]
        for label, command, env in toolbars:
            port = free_port()
            server = Server(label, _with_address(command, port), env)
            try:
                base = server.start(project, port)
                result = toolbar_run(base)
            finally:
                server.stop()
            print(label, result, flush=True)
            rows.append(
                f"| {label} | {result['loaded']} of {result['fetched']} | "
                f"{result['history']} of {result['pages']} |"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    revision = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(_version(name) for name in ("werkzeug", "django-debug-toolbar"))
    block = "\n".join(
        [
            "## Browser dev tools with many processes",
            "",
            f"- Command: `.venv/bin/python bench/devtools.py --write`; {now}, `{revision}`; "
            f"{versions}",
            f"- Console: {TRACEBACKS} tracebacks, `level` evaluated in 3 frames of each; toolbar: "
            f"{PAGES} pages by {CLIENTS} clients at once, then every panel of each.",
            "",
            *rows,
        ]
    )
    print(block)
    if args.write:
        report.write_docs(DOC, block, "devtools")
    return 0


def _with_address(command: list[str], port: int) -> list[str]:
    if command[0].endswith("wsgidev"):
        return [*command, "--host", HOST, "--port", str(port)]
    if command[0].endswith("gunicorn"):
        return [*command[:-1], "--bind", f"{HOST}:{port}", command[-1]]
    return [*command, f"{HOST}:{port}"]


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return f"{name} (not installed)"


if __name__ == "__main__":
    raise SystemExit(main())
