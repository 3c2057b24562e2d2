"""Preloading a standby process: library modules only, in order, and never half a package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from wsgidev.daemon import preload


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway package on sys.path: pkg.good imports fine, pkg.bad fails halfway."""
    root = tmp_path / "lib"
    (root / "wsgidevpre").mkdir(parents=True)
    (root / "wsgidevpre" / "__init__.py").write_text("")
    (root / "wsgidevpre" / "good.py").write_text("VALUE = 1\n")
    (root / "wsgidevpre" / "bad").mkdir()
    (root / "wsgidevpre" / "bad" / "child.py").write_text("VALUE = 2\n")
    (root / "wsgidevpre" / "bad" / "__init__.py").write_text(
        "from wsgidevpre.bad import child\nraise RuntimeError('not yet')\n"
    )
    (root / "wsgidevpre" / "later.py").write_text("VALUE = 3\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for name in [n for n in sys.modules if n.startswith("wsgidevpre")]:
        del sys.modules[name]


def test_preload_stops_at_the_first_failure_and_drops_its_orphans(package: Path):
    names = ["wsgidevpre", "wsgidevpre.good", "wsgidevpre.bad", "wsgidevpre.later"]
    warmed = preload.preload(names, django=False)
    assert warmed.stopped_at == "wsgidevpre.bad"
    assert warmed.imported == 2
    assert "wsgidevpre.good" in sys.modules
    # The failed package is gone (importlib), and so is the child it had imported.
    assert "wsgidevpre.bad" not in sys.modules
    assert "wsgidevpre.bad.child" not in sys.modules
    assert "wsgidevpre.later" not in sys.modules  # after the failure: left to the app's import


def test_library_modules_are_stdlib_and_site_packages_not_the_project(package: Path):
    import json as stdlib_module  # noqa: F401 - a standard-library module, imported for sure

    import wsgidevpre.good  # noqa: F401 - outside every library folder, like project code

    names = preload.library_modules()
    assert "json" in names and "pytest" in names  # stdlib, site-packages
    assert "wsgidevpre.good" not in names
    assert not any(name.startswith("wsgidev.") for name in names)


def test_record_and_read_back(tmp_path: Path):
    assert preload.recorded(str(tmp_path)) is None
    preload.record(str(tmp_path))
    names = preload.recorded(str(tmp_path))
    assert names is not None and "json" in names
    assert json.loads((tmp_path / preload.MODULES_NAME).read_text()) == names


def test_a_failed_django_setup_is_kept_for_the_app_import(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "no_such_settings_module_here")
    warmed = preload.preload([], django=True)
    assert isinstance(warmed.django_error, ModuleNotFoundError)
