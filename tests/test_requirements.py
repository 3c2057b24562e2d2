"""wsgidev in someone else's venv: its dependencies, its extras, and what it never imports."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from conftest import REPO, assert_one_line_error, wait_for, wsgidev_command

from wsgidev import requirements
from wsgidev.envfile import EnvFileError, read_env_file

# A sitecustomize that makes the named top-level modules unimportable, as in a venv without them.
HIDE = """
import os, sys
HIDDEN = set(os.environ["WSGIDEV_TEST_HIDE"].split(","))
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Hide())
"""


def _run_hiding(tmp_path: Path, hidden: str, *args: str) -> subprocess.CompletedProcess[str]:
    site = tmp_path / "hide"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(HIDE)
    env = {**os.environ, "PYTHONPATH": str(site), "WSGIDEV_TEST_HIDE": hidden}
    env["TMPDIR"] = str(tmp_path)
    process = subprocess.run(
        wsgidev_command(*args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    return process


def test_hard_dependencies_are_what_every_start_needs():
    hard = {r.name for r in requirements.declared() if r.extra is None}
    wanted = {"mod-wsgi", "jinja2", "inotify-simple"} | (
        {"tomli"} if sys.version_info < (3, 11) else set()
    )
    assert hard == wanted


def test_declared_bounds_are_the_pyproject_ones():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in requirements.EXTRAS:
        lines += [f"{line}; extra == '{extra}'" for line in project["optional-dependencies"][extra]]
    read = {
        (r.name, r.lowest, r.extra)
        for r in requirements.declared()
        if r.extra in (None, *requirements.EXTRAS)
    }
    for line in lines:
        name = line.split(">=")[0].strip().lower().replace("_", "-")
        lowest = line.split(">=")[1].split(";")[0].strip()
        extra = line.split("extra == '")[1].rstrip("'") if "extra ==" in line else None
        if "sys_platform != 'linux'" in line or "python_version < '3.11'" in line:
            continue  # not on this machine
        assert (name, lowest, extra) in read, line


def test_no_dependency_shares_an_import_name_with_another_installed_package():
    ours = {r.name for r in requirements.declared() if r.extra in (None, *requirements.EXTRAS)}
    clashes = {
        name: owners for name, owners in requirements.import_owners().items() if set(owners) & ours
    }
    assert clashes == {}


def _dist(site: Path, name: str, files: list[str]) -> None:
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in [*files, f"{info.name}/METADATA"]))
    for name in files:  # Python 3.12+ leaves a RECORD's missing files out of Distribution.files
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).touch()


def test_import_owners_finds_a_module_two_distributions_define(tmp_path: Path):
    _dist(tmp_path, "django-dotenv", ["dotenv.py"])
    _dist(tmp_path, "python-dotenv", ["dotenv/__init__.py", "dotenv/main.py"])
    # Namespace packages are shared by design, and private helpers are nobody's import.
    _dist(tmp_path, "google-api-core", ["google/api_core/__init__.py", "_cffi_backend.so"])
    _dist(tmp_path, "protobuf", ["google/protobuf/__init__.py", "_cffi_backend.so"])
    for name in ("backports-zoneinfo", "backports-tarfile"):  # pkgutil-style namespace
        _dist(tmp_path, name, ["backports/__init__.py"])
    (tmp_path / "backports" / "__init__.py").write_text(
        "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"
    )
    _dist(tmp_path, "speedy", ["speedy.cpython-311-x86_64-linux-gnu.so"])
    _dist(tmp_path, "speedy-fork", ["speedy.py"])
    owners = requirements.import_owners(path=[str(tmp_path)])
    assert owners == {
        "dotenv": ["django-dotenv", "python-dotenv"],
        "speedy": ["speedy", "speedy-fork"],
    }


def test_doctor_names_a_clash_and_its_fix(monkeypatch: pytest.MonkeyPatch):
    from wsgidev import doctor
    from wsgidev.options import Options

    monkeypatch.setattr(
        requirements,
        "import_owners",
        lambda path=None: {"dotenv": ["django-dotenv", "python-dotenv"]},
    )
    checks = {c.name: c for c in doctor.run_checks(Options(port=1))}
    clash = checks["import names"]
    assert not clash.ok
    assert "`import dotenv` is defined by django-dotenv and python-dotenv" in clash.detail
    assert "pip uninstall python-dotenv" in clash.detail


def test_doctor_names_a_dependency_older_than_supported(monkeypatch: pytest.MonkeyPatch):
    from wsgidev import doctor
    from wsgidev.options import Options

    real = metadata.version
    monkeypatch.setattr(
        metadata, "version", lambda name: "2.11.3" if name == "jinja2" else real(name)
    )
    check = {c.name: c for c in doctor.run_checks(Options(port=1))}["dependencies"]
    assert not check.ok
    assert "jinja2 2.11.3 is older than wsgidev supports (>=3.0)" in check.detail
    assert "pip install --upgrade" in check.detail


def test_https_without_its_extra_is_one_line_naming_the_install(tmp_path: Path):
    (tmp_path / "app.py").write_text("def application(e, s):\n    return []\n")
    for args in (
        ["start", "app.py", "--https"],
        ["trust"],
        ["config", "express", "app.py", "--https"],
    ):
        done = _run_hiding(tmp_path, "cryptography", *args)
        assert_one_line_error(
            done.returncode, done.stderr, "needs cryptography", "pip install 'wsgidev[https]'"
        )


def test_https_with_a_too_old_cryptography_says_upgrade(monkeypatch: pytest.MonkeyPatch):
    real = metadata.version
    monkeypatch.setattr(
        metadata,
        "version",
        lambda name: "3.3.2" if name == "cryptography" else real(name),
    )
    with pytest.raises(requirements.WsgidevError) as raised:
        requirements.require("https")
    assert "needs cryptography>=3.4" in str(raised.value) and "has 3.3.2" in str(raised.value)
    assert "pip install --upgrade 'wsgidev[https]'" in str(raised.value)


def test_env_values_without_setproctitle_warn_in_one_line(tmp_path: Path):
    (tmp_path / "app.py").write_text("def application(e, s):\n    return []\n")
    # A target that does not exist: the run stops after the warning, before Apache.
    done = _run_hiding(tmp_path, "setproctitle", "start", "missing.py", "--env", "TOKEN=s3cret")
    lines = [line for line in done.stderr.splitlines() if line.startswith("wsgidev:")]
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert len(lines) == 2, done.stderr
    assert "--env values stay visible" in lines[0] and "pip install 'wsgidev[hide-env]'" in lines[0]
    assert "missing.py" in lines[1]


ENV_FILES = [
    "A=1\nB=two words\n",
    "# c\nexport A='x y'\nB=\"a\\nb\"\n",
    "A=1 # comment\nB=x#y\n",
    'A="multi\nline"\nB=2\n',
    "A='it\\'s'\nB='a\\\\b'\nC='no\\nesc'\n",
    "A=1\nB=${A}2\nC=${NOPE:-dflt}\nD='${A}'\nE=\"${A}-x\"\n",
    "A=\nB=\"\"\nC=''\nD=${A:-d}\n",
    "  A = spaced  \n\n\nB=2",
    "A=\"q\" # c\nB='s' #c\n",
    "NOVALUE\nA=1\n",
    "A=1\r\nB=2\r\n",
    "A=${WSGIDEV_TEST_FROM_ENV}\n",
    "A=x=y=z\n",
    "'QK'=v\n",
    'A="tab\\there"\n',
    "A=caf\u00e9\n",
    # Found by review: each read differently by a first version of the reader.
    'A="',
    "A='",
    'A="unterminated\nB=2\n',
    'A="x"y\n',
    "A='it''s'\n",
    'A="x\\\\"y"\n',
    "A= # comment\nB=\t#c\n",
    "A=x\xa0#c\n",
    "\ufeffA=1\n",
    "FOO\nB=${FOO:-x}\n",
    'a"b=1\n',
    '"a b"=1\n',
    "export =1\n",
    "A=1\nFOO BAR\nB=2\n",
    "A=#novalue\n",
    "   \n\t\nA=1",
]


@pytest.mark.parametrize("text", ENV_FILES)
def test_env_file_reads_as_python_dotenv_does(
    tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    from dotenv import (
        dotenv_values,
    )  # python-dotenv: in the test extra only, never imported by wsgidev

    monkeypatch.setenv("WSGIDEV_TEST_FROM_ENV", "from-env")
    monkeypatch.delenv("FOO", raising=False)
    path = tmp_path / "app.env"
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="dotenv.main"):
        expected = {k: v for k, v in dotenv_values(path).items() if v is not None}
    try:
        got = read_env_file(path)
    except EnvFileError as error:
        # A line python-dotenv skips with a warning is an error naming it here.
        assert "could not parse" in caplog.text, (text, str(error), expected)
        return
    assert "could not parse" not in caplog.text, (text, got, expected)
    assert got == expected


def test_env_file_line_that_is_not_a_pair_is_named(tmp_path: Path):
    path = tmp_path / "app.env"
    path.write_text("A=1\n=nameless\n")
    with pytest.raises(EnvFileError, match="line 2"):
        read_env_file(path)


DJANGO_DOTENV = '''
"""Stands for django-dotenv's dotenv.py: a module, with read_dotenv."""
import os

def read_dotenv(path=None):
    os.environ.setdefault("FROM_READ_DOTENV", "yes")
'''

APP_USING_DOTENV = """
import json, os
import dotenv
dotenv.read_dotenv()

def application(environ, start_response):
    body = json.dumps({"dotenv": dotenv.__file__, "token": os.environ.get("API_TOKEN"),
                       "read": os.environ.get("FROM_READ_DOTENV")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
"""


def test_env_file_in_a_project_with_django_dotenv(tmp_path: Path, start_server):
    project = tmp_path / "site"
    project.mkdir()
    (project / "dotenv.py").write_text(textwrap.dedent(DJANGO_DOTENV))
    (project / "app.py").write_text(textwrap.dedent(APP_USING_DOTENV))
    env_file = tmp_path / "app.env"
    env_file.write_text("API_TOKEN=t0k3n\n")
    server = start_server(project, "app.py", "--env-file", str(env_file))
    seen = server.json("/")
    assert seen == {"dotenv": str(project / "dotenv.py"), "token": "t0k3n", "read": "yes"}


def test_the_command_never_imports_a_dotenv_package(tmp_path: Path):
    (tmp_path / "app.py").write_text("def application(e, s):\n    return []\n")
    (tmp_path / "app.env").write_text("A=1\n")
    probe = (
        "import sys\nfrom wsgidev.cli import main\n"
        "code = main(['config', 'standalone', 'app.py', '--env-file', 'app.env', '--output', 'out'])\n"
        "assert code == 0, code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dotenv', 'cryptography', 'platformdirs', 'setproctitle', 'watchdog')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_static_folders_are_watched_with_inotify_and_new_subfolders_too(tmp_path: Path):
    from wsgidev.staticwatch import StaticWatcher

    folder = tmp_path / "static"
    (folder / "css").mkdir(parents=True)
    seen: list[str] = []
    watcher = StaticWatcher(seen.append)
    try:
        watcher.watch([("/static/", str(folder))])
        (folder / "css" / "site.css").write_text("body {}")
        wait_for(lambda: "/static/css/site.css" in seen, 5, "the stylesheet's change")
        (folder / "js" / "deep").mkdir(parents=True)
        (folder / "js" / "deep" / "app.js").write_text("1")
        (folder / ".app.js.swp").write_text("x")
        wait_for(lambda: "/static/js/deep/app.js" in seen, 5, "a file in a new folder")
        assert not any(".swp" in path for path in seen)
        # A build tool replaces a folder: the new one is watched as well.
        # (inotify queues the old folder's IGNORED before the new one's CREATE.)
        shutil.rmtree(folder / "css")
        (folder / "css").mkdir()
        (folder / "css" / "new.css").write_text("a {}")
        wait_for(lambda: "/static/css/new.css" in seen, 5, "a file in the folder made again")
        seen.clear()
        (folder / "css" / "new.css").write_text("b {}")
        wait_for(lambda: "/static/css/new.css" in seen, 5, "an edit in the folder made again")
    finally:
        watcher.stop()
