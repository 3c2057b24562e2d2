"""Options: precedence CLI > WSGIDEV_* env > [tool.wsgidev] > defaults, validation, targets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from wsgidev.errors import WsgidevError
from wsgidev.options import Options, load_options
from wsgidev.target import resolve_target


def write_pyproject(folder: Path, body: str) -> None:
    (folder / "pyproject.toml").write_text(f"[tool.wsgidev]\n{body}")


def test_defaults(tmp_path: Path):
    options = load_options({}, {}, tmp_path)
    assert (options.host, options.port, options.processes, options.threads) == (
        "127.0.0.1",
        8000,
        2,
        5,
    )
    assert options.reload is True
    assert options.working_dir == str(tmp_path.resolve())


def test_precedence_cli_over_env_over_pyproject_over_defaults(tmp_path: Path):
    write_pyproject(tmp_path, "threads = 3\nprocesses = 4\nport = 9001\n")
    env = {"WSGIDEV_THREADS": "7", "WSGIDEV_PORT": "9002"}
    options = load_options({"threads": "9"}, env, tmp_path)
    assert options.threads == 9  # CLI
    assert options.port == 9002  # env over pyproject
    assert options.processes == 4  # pyproject over default
    assert options.host == "127.0.0.1"  # default


def test_settings_layer_sits_between_env_and_pyproject(tmp_path: Path):
    write_pyproject(tmp_path, "threads = 3\nprocesses = 4\n")
    options = load_options({}, {"WSGIDEV_THREADS": "7"}, tmp_path, {"threads": 5, "processes": 6})
    assert (options.threads, options.processes) == (7, 6)


def test_pyproject_found_in_a_parent_and_paths_relative_to_it(tmp_path: Path):
    write_pyproject(tmp_path, 'python-path = ["src"]\nwatch = ["conf/*.ini"]\nreload = false\n')
    inner = tmp_path / "pkg"
    inner.mkdir()
    options = load_options({}, {}, inner)
    assert options.python_path == (str(tmp_path / "src"),)
    assert options.watch == (str(tmp_path / "conf/*.ini"),)
    assert options.reload is False


def test_env_lists_and_booleans(tmp_path: Path):
    env = {"WSGIDEV_RELOAD": "no", "WSGIDEV_PYTHON_PATH": "/a:/b", "DJANGO_SETTINGS_MODULE": "x.s"}
    options = load_options({}, env, tmp_path)
    assert options.reload is False
    assert options.python_path == ("/a", "/b")
    assert options.django_settings == "x.s"


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"WSGIDEV_THREADS": "lots"}, "WSGIDEV_THREADS"),
        ({"WSGIDEV_RELOAD": "maybe"}, "true or false"),
    ],
)
def test_bad_env_values_name_their_source(tmp_path: Path, layer: dict[str, str], message: str):
    with pytest.raises(WsgidevError, match=message):
        load_options({}, layer, tmp_path)


def test_bad_pyproject_key_and_value(tmp_path: Path):
    write_pyproject(tmp_path, "thread = 3\n")
    with pytest.raises(WsgidevError, match="unknown key 'thread'"):
        load_options({}, {}, tmp_path)
    write_pyproject(tmp_path, 'threads = "3x"\n')
    with pytest.raises(WsgidevError, match="pyproject.toml"):
        load_options({}, {}, tmp_path)


def test_options_are_frozen_and_revalidated_on_replace():
    options = Options()
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.threads = 3  # type: ignore[misc]
    with pytest.raises(WsgidevError, match="--threads"):
        dataclasses.replace(options, threads=0)


def test_target_forms(tmp_path: Path):
    (tmp_path / "mysite").mkdir()
    (tmp_path / "mysite" / "__init__.py").write_text("")
    (tmp_path / "mysite" / "wsgi.py").write_text("application = None\n")
    (tmp_path / "mysite" / "settings.py").write_text("")
    (tmp_path / "manage.py").write_text(
        'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")\n'
    )
    base = {"working_dir": str(tmp_path)}
    script = resolve_target(Options(**base, target="mysite/wsgi.py"))
    assert (script.kind, script.script_path) == ("script", str(tmp_path / "mysite" / "wsgi.py"))
    module = resolve_target(Options(**base, target="mysite.wsgi:application"))
    assert (module.kind, module.module, module.callable_name) == (
        "module",
        "mysite.wsgi",
        "application",
    )
    assert resolve_target(Options(**base, target="mysite.wsgi")).callable_name == "application"
    django = resolve_target(Options(**base))
    assert (django.kind, django.django_settings) == ("django", "mysite.settings")
    overridden = resolve_target(Options(**base, django_settings="mysite.settings"))
    assert overridden.django_settings == "mysite.settings"
    with pytest.raises(WsgidevError, match="neither a file nor module:callable"):
        resolve_target(Options(**base, target="my-site:app"))
