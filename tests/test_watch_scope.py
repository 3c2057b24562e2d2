"""The watch scope: --exclude, the non-Python files an app reads while importing, the listing.

Unit tests for the pattern rules, the option layers and the monitor's steps; real Apache for
the rest (an excluded edit proven not to reload, a settings file proven to, in every restart
mode and through Django's setup in a standby).
"""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
import time
from pathlib import Path

import pytest
from conftest import holds_for, reload_lines, wait_for

from wsgidev.daemon import monitor
from wsgidev.daemon.monitor.exclude import Exclusions
from wsgidev.daemon.monitor.listing import watch_list
from wsgidev.errors import WsgidevError
from wsgidev.options import load_options
from wsgidev.shared import events, protocol
from wsgidev.shared.globpattern import GlobError, compile_glob

# -- the pattern rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [
        ("*.log", "/p/app.log", True),
        ("*.log", "/p/deep/down/app.log", True),
        ("*.log", "/elsewhere/app.log", True),  # a name: the file's own, anywhere
        ("media", "/p/media/a/b.txt", True),  # a folder excludes what is in it
        ("media", "/p/mediafile.txt", False),
        ("lib", "/usr/lib/python3.11/os.py", False),  # no folder names outside the project
        ("lib", "/p/lib/m.py", True),
        ("gen/**", "/p/gen/a.py", True),
        ("gen/**", "/p/x/gen/a.py", False),  # a path is anchored at the project folder
        ("**/gen/*.py", "/p/x/gen/a.py", True),
        ("app/generated/*.py", "/p/app/generated/a.py", True),
        ("app/generated/*.py", "/p/app/generated/sub/a.py", False),  # * stays in one part
        ("uploads/", "/p/uploads/u.png", True),
        ("./uploads", "/p/uploads/u.png", True),
        ("/srv/x/**", "/srv/x/y/z.json", True),
        ("/srv/x", "/srv/x/y/z.json", True),
        ("settings_[!a]*.json", "/p/settings_local.json", True),
        ("settings_[!l]*.json", "/p/settings_local.json", False),
    ],
)
def test_exclude_rules(pattern: str, path: str, excluded: bool) -> None:
    assert (Exclusions([pattern], "/p").rule_for(path) is not None) is excluded


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("[", "without its ']'"),
        ("conf/[ab", "without its ']'"),
        ("a**/x", "'**' inside"),
        ("[z-a]", "range"),
        (" ", "empty"),
    ],
)
def test_bad_globs_say_what_is_wrong(pattern: str, words: str) -> None:
    with pytest.raises(GlobError, match=words.replace("*", r"\*").replace("[", r"\[")):
        compile_glob(pattern)


def test_a_literal_bracket_is_written_as_a_class() -> None:
    assert compile_glob("a[[]1].txt").fullmatch("a[1].txt")


# -- the option and its layers -----------------------------------------------------------------


def test_exclude_from_each_layer(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.wsgidev]\nexclude = ["*.log", "gen/**"]\n')
    inner = tmp_path / "pkg"
    inner.mkdir()
    # [tool.wsgidev]: a name as written, a path anchored at the pyproject.toml's folder.
    assert load_options({}, {}, inner).exclude == ("*.log", f"{tmp_path}/gen/**")
    # The Django WSGIDEV dict sits above it, WSGIDEV_EXCLUDE (":"-separated) above that,
    # the command line (relative to the current folder) above all.
    settings = {"exclude": ("media",)}
    assert load_options({}, {}, inner, settings).exclude == ("media",)
    env = {"WSGIDEV_EXCLUDE": "*.tmp:out/**"}
    assert load_options({}, env, inner, settings).exclude == ("*.tmp", f"{inner}/out/**")
    assert load_options({"exclude": ["x.json"]}, env, inner).exclude == ("x.json",)


@pytest.mark.parametrize(
    ("layer", "words"),
    [
        ({"cli": {"exclude": ["gen/[ab"]}}, "--exclude 'gen/[ab'"),
        ({"env": {"WSGIDEV_EXCLUDE": "*.log:[x"}}, "--exclude '[x'"),
        ({"pyproject": 'exclude = ["a**"]'}, "--exclude 'a**'"),
        ({"cli": {"watch": ["["]}}, "--watch '['"),
    ],
)
def test_a_bad_pattern_from_any_layer_is_one_error(
    tmp_path: Path, layer: dict[str, object], words: str
) -> None:
    if "pyproject" in layer:
        (tmp_path / "pyproject.toml").write_text(f"[tool.wsgidev]\n{layer['pyproject']}\n")
    cli = layer.get("cli", {})
    env = layer.get("env", {})
    assert isinstance(cli, dict) and isinstance(env, dict)
    with pytest.raises(WsgidevError) as caught:
        load_options(cli, env, tmp_path)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_watch_takes_plain_paths_and_valid_globs(tmp_path: Path) -> None:
    options = load_options({"watch": ["conf/*.ini", "extra.cfg", "a[[]1].txt"]}, {}, tmp_path)
    assert options.watch == tuple(
        str(tmp_path / p) for p in ("conf/*.ini", "extra.cfg", "a[[]1].txt")
    )


# -- the monitor, one step at a time -----------------------------------------------------------


class Restarts:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, files: list[str]) -> None:
        self.calls.append(files)


@pytest.fixture
def opened_monitor(tmp_path: Path):
    """A poll monitor of a project in tmp_path that watches what is opened until app_loaded()."""
    made = []

    def make(**options: object):
        restarts = Restarts()
        created = monitor.create(
            "poll",
            on_change=restarts,
            settle_s=0.05,
            process_started_ns=time.time_ns(),
            project_dir=str(tmp_path),
            watch_opened=True,
            **options,
        )
        made.append(created)
        return created, restarts

    yield make
    for created in made:
        created.stop()


def test_files_opened_for_reading_while_importing_are_watched(
    tmp_path: Path, opened_monitor
) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"a": 1}')
    env = tmp_path / ".env"
    env.write_text("A=1\n")
    late = tmp_path / "late.txt"
    late.write_text("read at request time")
    m, restarts = opened_monitor()
    m.arm()
    json.loads(settings.read_text())
    with open(env, "rb") as handle:
        handle.read()
    with open(tmp_path / "app.log", "a") as handle:  # a write is never a settings file
        handle.write("started\n")
    with pytest.raises(FileNotFoundError):
        (tmp_path / "local.json").read_text()  # a probe for an optional file
    m.app_loaded()  # the import is over: opens from now on are the requests'
    late.read_text()
    assert m.check_once() == []
    assert m.is_watching(str(settings)) and m.is_watching(str(env))
    assert not m.is_watching(str(late)) and not m.is_watching(str(tmp_path / "app.log"))
    late.write_text("changed, but only read at request time")
    assert m.check_once() == []
    settings.write_text('{"a": 2}')
    assert m.check_once() == [str(settings)]
    assert restarts.calls == [[str(settings)]]


def test_a_file_the_app_also_writes_while_importing_is_state_not_settings(
    tmp_path: Path, opened_monitor
) -> None:
    # Read, then rewritten by the import itself: watching it would reload after every import.
    counter = tmp_path / "starts.json"
    counter.write_text('{"starts": 0}')
    cache = tmp_path / "cache.json"
    cache.write_text("{}")
    m, restarts = opened_monitor()
    m.arm()
    counter.read_text()
    cache.read_text()
    assert m.check_once() == [] and m.is_watching(str(cache))  # taken in before the write
    counter.write_text('{"starts": 1}')
    cache.write_text('{"warm": true}')
    m.app_loaded()
    assert m.check_once() == [] and restarts.calls == []
    assert not m.is_watching(str(counter)) and not m.is_watching(str(cache))


def test_an_excluded_opened_file_is_not_watched_but_counts_for_a_standby(
    tmp_path: Path, opened_monitor
) -> None:
    cache = tmp_path / "cache.json"
    cache.write_text("{}")
    m, restarts = opened_monitor(exclude=["cache.json"])
    m.record_imports()  # a standby: records, watches nothing yet
    cache.read_text()
    assert m.stale() == []
    cache.write_text('{"x": 1}')
    # A standby that read the old content must not take over with it...
    assert m.stale() == [str(cache)]
    m.app_loaded()
    m.arm()
    # ...but the file itself never triggers a reload, and is not listed as watched.
    assert m.check_once() == [] and restarts.calls == []
    assert not m.is_watching(str(cache))


def test_the_listing_counts_folders_and_says_why(tmp_path: Path, opened_monitor) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "a.ini").write_text("[a]\n")
    settings = tmp_path / "settings.yaml"
    settings.write_text("a: 1\n")
    (tmp_path / "app.log").write_text("")
    m, _ = opened_monitor(watch=[str(tmp_path / "conf" / "*.ini")], exclude=["*.log"])
    m.arm()
    settings.read_text()
    (tmp_path / "app.log").read_text()
    m.app_loaded()
    m.check_once()
    listing = watch_list(m._files, str(tmp_path))
    assert [str(settings), "opened while importing"] in listing["extra"]
    assert [f"{tmp_path}/conf/*.ini", "--watch", 1] in listing["globs"]
    assert listing["excluded"] == [["*.log", 1, [str(tmp_path / "app.log")]]]
    groups = {label: count for label, count, _ in listing["folders"]}
    assert groups[f"project {tmp_path}"] == 2  # settings.yaml and conf/a.ini
    assert sum(groups.values()) == listing["file_count"]
    assert "standard library" in groups  # json, os... imported by the test process


def test_a_long_listing_still_fits_one_error_log_line(tmp_path: Path, opened_monitor) -> None:
    deep = tmp_path / ("a-rather-long-folder-name-" * 4)
    deep.mkdir()
    names = [deep / f"settings-file-number-{i:03d}-with-a-long-name.json" for i in range(200)]
    m, _ = opened_monitor(exclude=[f"excluded-{i}-*.txt" for i in range(30)])
    for path in names:
        path.write_text("{}")
    m.arm()
    for path in names:
        path.read_text()
    m.app_loaded()
    m.check_once()
    listing = watch_list(m._files, str(tmp_path))
    assert len(listing["extra"]) + listing["extra_more"] == 200 and listing["extra"]
    # Apache cuts an error-log message at 8 KB: the event line (base64 JSON) stays well below.
    line = io.StringIO()
    with contextlib.redirect_stderr(line):
        events.emit(protocol.WatchList(**listing))
    assert len(line.getvalue()) < 7000
    parsed = events.parse(line.getvalue())
    assert isinstance(parsed, protocol.WatchList)
    assert parsed.extra_more == listing["extra_more"] and len(parsed.extra) == len(listing["extra"])


# -- real Apache -------------------------------------------------------------------------------

SETTINGS_APP = """
import json, os
import generated.mod

SETTINGS = json.load(open(os.path.join(os.path.dirname(__file__), "settings.json")))
with open(os.path.join(os.path.dirname(__file__), ".env")) as handle:
    DOTENV = handle.read().strip()
"""

SETTINGS_VIEW = """

_inner = application


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/settings":
        late = None
        if environ.get("QUERY_STRING") == "late":
            with open(os.path.join(os.path.dirname(__file__), "late.txt")) as handle:
                late = handle.read().strip()
        body = json.dumps({"value": SETTINGS["value"], "dotenv": DOTENV, "late": late,
                           "generated": generated.mod.VALUE, "version": VERSION}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return _inner(environ, start_response)
"""


def settings_project(project: Path) -> Path:
    """The test app, reading settings.json and .env at import and importing generated/mod.py."""
    (project / "settings.json").write_text('{"value": "json-1"}')
    (project / ".env").write_text("dotenv-1\n")
    (project / "late.txt").write_text("late-1\n")
    (project / "generated").mkdir()
    (project / "generated" / "__init__.py").write_text("")
    (project / "generated" / "mod.py").write_text('VALUE = "gen-1"\n')
    app = project / "app.py"
    app.write_text(textwrap.dedent(SETTINGS_APP) + app.read_text() + SETTINGS_VIEW)
    return project


def imports(project: Path) -> list[str]:
    path = project / "imports.log"
    return path.read_text().split() if path.exists() else []


def served(server) -> dict[str, object]:
    return server.json("/settings")


def served_now(server) -> dict[str, object]:
    """What /settings answers, or {} for a 503 (--restart-mode server's documented window)."""
    status, body = server.get("/settings")
    return dict(json.loads(body)) if status == 200 else {}


@pytest.mark.parametrize("mode", ["standby", "process", "server"])
def test_settings_files_read_while_importing_reload_the_app(
    project: Path, start_server, mode: str
) -> None:
    settings_project(project)
    server = start_server(project, "app:application", "--processes", "1", "--restart-mode", mode)
    assert served(server)["value"] == "json-1"
    (project / "settings.json").write_text('{"value": "json-2"}')
    wait_for(
        lambda: served_now(server).get("value") == "json-2", 20, lambda: f"json-2\n{server.log()}"
    )
    # The process now serving (a standby that took over, or a fresh one) watches it too.
    (project / ".env").write_text("dotenv-2\n")
    wait_for(
        lambda: served_now(server).get("dotenv") == "dotenv-2",
        20,
        lambda: f"dotenv-2\n{server.log()}",
    )
    wait_for(
        lambda: len(reload_lines(server)) == 2, 10, lambda: f"two reload lines\n{server.log()}"
    )
    lines = reload_lines(server)
    assert lines[0].endswith("settings.json changed") and lines[1].endswith(".env changed"), lines


def test_an_excluded_module_never_reloads_and_the_next_reload_brings_it(
    project: Path, start_server
) -> None:
    settings_project(project)
    server = start_server(
        project, "app:application", "--processes", "1", "--exclude", "generated/**"
    )
    assert served(server)["generated"] == "gen-1"
    wait_for(lambda: len(imports(project)) == 1, 10, "the first import")
    (project / "generated" / "mod.py").write_text('VALUE = "gen-2"\n')
    # A reload takes well under a second here; three seconds of nothing is the proof.
    holds_for(
        lambda: len(imports(project)) == 1 and served(server)["generated"] == "gen-1",
        3.0,
        "no reload for an excluded file",
    )
    assert reload_lines(server) == []
    # Not vacuous: an edit of a watched file reloads, and the new code has the new content.
    app = project / "app.py"
    app.write_text(app.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    wait_for(lambda: served(server)["version"] == "v2", 20, lambda: f"v2\n{server.log()}")
    assert served(server)["generated"] == "gen-2"
    assert len(imports(project)) == 2


def test_the_listing_and_a_file_read_at_request_time(project: Path, start_server) -> None:
    settings_project(project)
    (project / "app.log").write_text("")
    server = start_server(
        project,
        "app:application",
        "--processes",
        "1",
        "--log-level",
        "info",
        "--exclude",
        "generated",
        "--exclude",
        "*.log",
        "--watch",
        "app.log",  # asked for, and excluded: exclude wins
    )
    assert served(server)["late"] is None
    assert served_late(server) == "late-1"
    wait_for(lambda: "What process" in server.log(), 10, lambda: f"the listing\n{server.log()}")
    block = listing_block(server.log())
    assert "opened while importing: .env, settings.json" in block, block
    assert f"project {project}: " in block and "standard library: " in block, block
    assert (
        "excluded: generated (2 files: generated/__init__.py, generated/mod.py); "
        "*.log (1 file: app.log)"
    ) in block, block
    assert "late.txt" not in block and "app.log" not in block.split("excluded:")[0], block
    # Read at request time: never watched, however often it changes.
    (project / "late.txt").write_text("late-2\n")
    holds_for(lambda: len(imports(project)) == 1, 3.0, "no reload for a request-time file")
    assert served_late(server) == "late-2"  # read again by the same process
    assert reload_lines(server) == []


def served_late(server) -> object:
    status, body = server.get("/settings?late")
    assert status == 200, body
    return json.loads(body)["late"]


def listing_block(log: str) -> str:
    lines = log.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("What process"))
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        block.append(line)
    return "\n".join(block)


def test_django_settings_reading_a_json_file_reloads_through_a_stale_standby(
    django_project: Path, start_server
) -> None:
    site = django_project
    (site / "motto.json").write_text('{"motto": "motto-1"}')
    settings = site / "testsite" / "settings.py"
    settings.write_text(
        settings.read_text() + '\nMOTTO = json.loads((BASE_DIR / "motto.json").read_text())\n'
    )
    views = site / "testapp" / "views.py"
    views.write_text(
        views.read_text()
        + "\n\ndef motto(request):\n"
        + "    from django.conf import settings\n"
        + "    return HttpResponse(settings.MOTTO['motto'])\n"
    )
    urls = site / "testsite" / "urls.py"
    urls.write_text(
        urls.read_text().replace(
            'path("", views.index),', 'path("", views.index),\n    path("motto", views.motto),'
        )
    )
    server = start_server(site, "--processes", "1", "--log-level", "info")
    assert server.get("/motto") == (200, b"motto-1")
    # The standby ran Django's setup, so it read motto.json too: an edit makes it stale.
    wait_for(
        lambda: "and Django's setup" in server.log(), 20, lambda: f"the warm-up\n{server.log()}"
    )
    (site / "motto.json").write_text('{"motto": "motto-2"}')
    wait_for(lambda: server.get("/motto") == (200, b"motto-2"), 20, server.log())
    wait_for(lambda: reload_lines(server), 10, lambda: f"the reload line\n{server.log()}")
    assert reload_lines(server)[0].endswith("motto.json changed"), server.log()
    assert "Standbys stale" in server.log(), server.log()


def test_the_listing_counts_editable_installs_as_such(
    tmp_path: Path, opened_monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # django-oscar's sandbox: the project is sandbox/, the code being worked on is ../src,
    # installed with pip install -e (its direct_url.json says editable): not "other".
    checkout = tmp_path / "checkout"
    (checkout / "src" / "shop").mkdir(parents=True)
    module = checkout / "src" / "shop" / "models.py"
    module.write_text("")
    info = tmp_path / "site" / "shop-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shop\nVersion: 1.0\n")
    direct = {"url": checkout.as_uri(), "dir_info": {"editable": True}}
    (info / "direct_url.json").write_text(json.dumps(direct))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    m, _ = opened_monitor(watch=[str(module)])
    m.arm()
    listing = watch_list(m._files, str(checkout / "sandbox"))
    groups = {label: (count, subs) for label, count, subs in listing["folders"]}
    assert ["shop", 1] in groups["editable installs"][1], groups
    assert not any(label == "other" for label in groups), groups
