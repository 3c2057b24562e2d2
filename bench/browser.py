"""The browser scenario: save -> the refreshed page's `load` (or the restyled page), in Debian's
chromium, headless, driven by Playwright's Python package.

A tab shows /bench/page (the VALUE line of benchprobe/views.py, a template, a stylesheet). Each
load writes, in the tab's sessionStorage (it survives reloads), when it happened (the browser's
Date.now(), the same clock as time.time() here) and what the page showed; once a frame it also
notes the heading's colour when it changes (a stylesheet swapped in place). For each edit: save, then wait for the first
load showing the new text (or the new colour), and count the loads after the save that showed
the old one (a refresh before the new code served).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import edits
from bench.projects import Project
from bench.scenario import reset_probe
from bench.servers import HOST, SERVERS, Paths, ServerProcess, ServerSpec

PAGE_PATH = "/bench/page"
CHROMIUM = shutil.which("chromium")
EDITS_PER_KIND = {"small": 8, "large": 5}
DEADLINE_S = 15.0
GAP_S = 1.0  # between edits: the previous one's refresh and reconnect are over
KINDS = ("view", "template", "css")

NOTE = """
(() => {
  const text = (id) => (document.getElementById(id) || {}).textContent || '?';
  const note = (entry) => {
    const all = JSON.parse(sessionStorage.getItem('bench') || '[]');
    all.push(entry);
    sessionStorage.setItem('bench', JSON.stringify(all));
  };
  const colourNow = () => {
    const h1 = document.querySelector('h1');
    return h1 ? getComputedStyle(h1).color : null;
  };
  addEventListener('load', () => {
    note({kind: 'load', t: Date.now(), value: text('value'), template: text('template'),
          colour: colourNow()});
    let colour = null;
    const look = () => {
      const now = colourNow();
      if (colour !== null && now !== colour) note({kind: 'colour', t: Date.now(), colour: now});
      colour = now;
      requestAnimationFrame(look);
    };
    look();
  });
})();
"""


BROWSER_RELOAD_ON = (("BENCH_BROWSER_RELOAD", "1"),)


def _with_live_reload(project: Project, port: int, paths: Paths) -> list[str]:
    return [*SERVERS["wsgidev"].command(project, port, paths), "--live-reload"]


# The contenders: wsgidev's own live reload, and django-browser-reload (the package most
# projects use) under runserver and under wsgidev.
CONTENDERS = {
    "wsgidev --live-reload": dataclasses.replace(
        SERVERS["wsgidev"], key="wsgidev-live", command=_with_live_reload
    ),
    "runserver + django-browser-reload": dataclasses.replace(
        SERVERS["runserver"], key="runserver-dbr", env=BROWSER_RELOAD_ON
    ),
    "wsgidev + django-browser-reload": dataclasses.replace(
        SERVERS["wsgidev"], key="wsgidev-dbr", env=BROWSER_RELOAD_ON
    ),
}


@dataclass(frozen=True, kw_only=True)
class BrowserEdit:
    kind: str  # view, template or css
    latency_s: float | None  # None: not seen within the deadline
    stale_loads: int  # loads after the save that still showed the old text
    full_reloads: int  # loads after the save (a css edit should need none)


@dataclass(kw_only=True)
class BrowserResult:
    key: str
    label: str
    edits: list[BrowserEdit] = field(default_factory=list)
    error: str | None = None


def run_browser(
    spec: ServerSpec,
    label: str,
    project: Project,
    paths: Paths,
    scratch: Path,
    progress: Callable[[str], None],
) -> BrowserResult:
    """One contender on one project: every kind of edit, timed in the browser."""
    result = BrowserResult(key=spec.key, label=label)
    if CHROMIUM is None:
        result.error = "chromium is not installed"
        return result
    from playwright.sync_api import sync_playwright

    server = ServerProcess(spec, project, paths, scratch / f"browser-{project.key}-{spec.key}.log")
    _reset(project)
    try:
        server.start()
        server.wait_ready()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page()
                page.add_init_script(NOTE)
                page.goto(f"http://{HOST}:{server.port}{PAGE_PATH}")
                _wait(lambda: _notes(page), 10)
                time.sleep(GAP_S * 2)  # django-browser-reload: its first pings
                for kind in KINDS:
                    for n in range(1, EDITS_PER_KIND[project.key] + 1):
                        edit = _one_edit(page, project, kind, n)
                        result.edits.append(edit)
                        progress(f"{kind} {n}: {edit.latency_s}")
                        time.sleep(GAP_S)
            finally:
                browser.close()
    except Exception as exc:  # a contender that fails is a row with its error, not a crash
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        server.stop()
        _reset(project)
    return result


def _one_edit(page: Any, project: Project, kind: str, n: int) -> BrowserEdit:
    before = len(_notes(page))
    mark = f"{kind}-{n:03d}"
    saved = time.time()
    if kind == "view":
        text = edits.with_assignment(project.views_path.read_text(), "VALUE", mark)
        project.views_path.write_text(text)
        wanted: Callable[[dict[str, Any]], bool] = lambda note: note.get("value") == mark  # noqa: E731
    elif kind == "template":
        path = _template(project)
        path.write_text(re.sub(r'id="template">[^<]*<', f'id="template">{mark}<', path.read_text()))
        wanted = lambda note: note.get("template") == mark  # noqa: E731
    else:
        colour = f"rgb(0, {n}, {n})"
        _stylesheet(project).write_text(f"h1 {{ color: {colour}; }}\n")
        wanted = lambda note: note.get("colour") == colour  # noqa: E731
    deadline = time.time() + DEADLINE_S
    seen_at = None
    while time.time() < deadline and seen_at is None:
        for note in _notes(page)[before:]:
            if wanted(note):
                seen_at = note["t"] / 1000
                break
        else:
            time.sleep(0.02)
    after = [note for note in _notes(page)[before:] if note["kind"] == "load"]
    stale = sum(1 for note in after if not wanted(note)) if kind != "css" else 0
    return BrowserEdit(
        kind=kind,
        latency_s=None if seen_at is None else max(0.0, seen_at - saved),
        stale_loads=stale,
        full_reloads=len(after),
    )


def _notes(page: Any) -> list[dict[str, Any]]:
    for _ in range(100):
        try:
            return list(json.loads(page.evaluate("sessionStorage.getItem('bench') || '[]'")))
        except Exception:  # between two documents: ask again
            time.sleep(0.02)
    raise RuntimeError("the page never settled")


def _wait(predicate: Callable[[], object], timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        if time.time() > deadline:
            raise RuntimeError("the page did not load")
        time.sleep(0.05)


def _template(project: Project) -> Path:
    return project.path / "benchprobe" / "templates" / "benchprobe" / "page.html"


def _stylesheet(project: Project) -> Path:
    return project.path / "benchprobe" / "static" / "benchprobe" / "page.css"


def _reset(project: Project) -> None:
    """The page as it started (the next contender starts from the same files)."""
    reset_probe(project)
    path = _template(project)
    path.write_text(
        re.sub(r'id="template">[^<]*<', 'id="template">page-000-initial<', path.read_text())
    )
    _stylesheet(project).write_text("h1 { color: rgb(0, 0, 0); }\n")
