"""Bytecode caches that could hold older code are not trusted (wsgidev/daemon/monitor/bytecode.py)."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from importlib.machinery import SourceFileLoader
from pathlib import Path

import pytest
from conftest import imports, wait_for

from wsgidev.daemon.monitor import bytecode
from wsgidev.daemon.monitor.bytecode import FreshSourceFileLoader, invalidate, racily_clean


def load(path: Path, loader_class: type[SourceFileLoader]) -> object:
    """Import path as a fresh module with the given loader, writing its bytecode cache."""
    name = f"bytecode_probe_{path.stem}"
    loader = loader_class(name, str(path))
    spec = importlib.util.spec_from_file_location(name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module.VALUE  # type: ignore[attr-defined]


@pytest.fixture
def write_bytecode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "dont_write_bytecode", False)


def same_second_edit(path: Path, text: str) -> None:
    """Rewrite path with text of the same size, its mtime in the second of the last save."""
    before = path.stat()
    path.write_text(text)
    assert path.stat().st_size == before.st_size
    second_ns = before.st_mtime_ns // 1_000_000_000 * 1_000_000_000
    os.utime(path, ns=(before.st_atime_ns, second_ns + 999_000_000))


@pytest.mark.usefixtures("write_bytecode")
def test_plain_importlib_serves_the_old_code(tmp_path: Path):
    # What the fix is for: without it, the same-size edit in the same second is never seen.
    module = tmp_path / "plain.py"
    module.write_text("VALUE = 'v1'\n")
    assert load(module, SourceFileLoader) == "v1"
    same_second_edit(module, "VALUE = 'v2'\n")
    assert load(module, SourceFileLoader) == "v1"


@pytest.mark.usefixtures("write_bytecode")
def test_a_racily_clean_cache_is_compiled_afresh(tmp_path: Path):
    module = tmp_path / "fresh.py"
    module.write_text("VALUE = 'v1'\n")
    # A timestamp cache, as a process without wsgidev's loader writes it (its own are
    # hash-checked: test_a_project_files_cache_is_hash_checked_and_used_whatever_the_clocks).
    assert load(module, SourceFileLoader) == "v1"
    cache = importlib.util.cache_from_source(str(module))
    assert os.path.exists(cache)
    same_second_edit(module, "VALUE = 'v2'\n")
    assert racily_clean(cache, str(module))
    assert load(module, FreshSourceFileLoader) == "v2"


@pytest.mark.usefixtures("write_bytecode")
def test_a_cache_written_seconds_after_its_source_is_used(tmp_path: Path):
    module = tmp_path / "settled.py"
    module.write_text("VALUE = 'v1'\n")
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns - 5_000_000_000))
    assert load(module, FreshSourceFileLoader) == "v1"
    cache = importlib.util.cache_from_source(str(module))
    assert not racily_clean(cache, str(module))


@pytest.mark.usefixtures("write_bytecode")
def test_invalidate_removes_the_cache_of_a_changed_source(tmp_path: Path):
    module = tmp_path / "restored.py"
    module.write_text("VALUE = 'v1'\n")
    load(module, SourceFileLoader)
    cache = Path(importlib.util.cache_from_source(str(module)))
    assert cache.exists()
    invalidate([str(module), str(tmp_path / "template.html"), str(tmp_path / "missing.py")])
    assert not cache.exists()


@pytest.mark.usefixtures("write_bytecode")
def test_a_wsgi_script_target_is_run_from_its_source_when_the_cache_is_racily_clean(
    tmp_path: Path,
):
    # `wsgidev start app.py`: the script is exec'd by wsgidev, not imported; a daemon that
    # starts after a same-size save in the cache's second must run the new code (seen failing
    # under load: the late daemon served v1 for good, its baseline already the new file's).
    from wsgidev.daemon.appimport import SCRIPT_MODULE_NAME, _exec_script

    script = tmp_path / "app.py"
    script.write_text("VALUE = 'v1'\n")
    try:
        assert _exec_script(str(script)).VALUE == "v1"
        same_second_edit(script, "VALUE = 'v2'\n")
        assert _exec_script(str(script)).VALUE == "v2"
    finally:
        sys.modules.pop(SCRIPT_MODULE_NAME, None)


def restored_edit(path: Path, text: str) -> None:
    """Rewrite path with text of the same size, and its mtime put back (as cp -p or rsync -t do)."""
    before = path.stat()
    path.write_text(text)
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


class SavedWhileCompiling(FreshSourceFileLoader):
    """A loader during whose compile of v1 the file is saved as v2 (another process's edit)."""

    def source_to_code(self, data, path, *, _optimize=-1):  # type: ignore[no-untyped-def, override]
        code = super().source_to_code(data, path)
        restored_edit(Path(path), "VALUE = 'v2'\n")
        return code


@pytest.mark.usefixtures("write_bytecode")
@pytest.mark.parametrize("when", ["compiling", "caching"])
def test_no_cache_is_left_of_a_source_saved_while_it_was_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, when: str
):
    # The monitor's invalidate() for the save may run before the cache of the old content is
    # written: every later process would trust that cache (same size, the mtime put back), and
    # run v1 for good while watching v2 (seen in test_reload's same-size edits, under load).
    module = tmp_path / "racing.py"
    module.write_text("VALUE = 'v1'\n")
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns - 5_000_000_000))  # not racily clean
    loader: type[FreshSourceFileLoader] = SavedWhileCompiling
    if when == "caching":  # saved just after importlib wrote the cache of v1
        write = SourceFileLoader.set_data

        def write_then_save(self, path, data, *, _mode=0o666):  # type: ignore[no-untyped-def]
            write(self, path, data, _mode=_mode)
            restored_edit(module, "VALUE = 'v2'\n")

        monkeypatch.setattr(SourceFileLoader, "set_data", write_then_save)
        loader = FreshSourceFileLoader
    assert load(module, loader) == "v1"  # what was read before the save
    assert not Path(importlib.util.cache_from_source(str(module))).exists()
    monkeypatch.undo()
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    assert load(module, FreshSourceFileLoader) == "v2"
    # ...and the cache of a source left alone is written, and used, as ever.
    assert Path(importlib.util.cache_from_source(str(module))).exists()
    assert load(module, FreshSourceFileLoader) == "v2"


@pytest.mark.usefixtures("write_bytecode")
def test_a_cache_older_than_its_sources_restored_mtime_save_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # A process that starts between such a save and the monitor's invalidate() (tens of ms)
    # would take the old content's cache for good (seen under load: one process served e1
    # while it watched e2, in test_reload's same-size edits).
    module = tmp_path / "restored_save.py"
    module.write_text("VALUE = 'v1'\n")
    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns - 5_000_000_000))  # not racily clean
    # Its cache written by a process without wsgidev's loader (manage.py, runserver): a
    # timestamp cache (wsgidev's own are hash-checked, see below).
    assert load(module, SourceFileLoader) == "v1"
    cache = Path(importlib.util.cache_from_source(str(module)))
    restored_edit(module, "VALUE = 'v2'\n")
    # The cache was written before the save (the kernel's file clock may give both one tick).
    written = module.stat().st_ctime_ns - 1_000_000
    os.utime(cache, ns=(written, written))
    assert load(module, SourceFileLoader) == "v1"  # importlib's own check is fooled
    assert load(module, FreshSourceFileLoader) == "v2"

    # A library (under the venv or the Python installation) is judged by its mtime only: a
    # chown -R of a venv moves every ctime, and a read-only one would compile every import.
    restored_edit(module, "VALUE = 'v3'\n")
    written = module.stat().st_ctime_ns - 1_000_000
    os.utime(cache, ns=(written, written))
    monkeypatch.setattr(bytecode, "_PYTHON_TREES", (os.path.join(tmp_path, ""),))  # the venv
    assert not racily_clean(str(cache), str(module))


def test_an_installed_librarys_cache_written_in_its_seconds_is_trusted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # pip writes a file and its cache in one second: refused, every start would compile every
    # library again where caches cannot be rewritten. A library saved since the start is not.
    monkeypatch.setattr(bytecode, "_PYTHON_TREES", (str(tmp_path) + os.sep,))
    library = tmp_path / "library.py"
    library.write_text("VALUE = 1\n")
    cache = Path(importlib.util.cache_from_source(str(library)))
    cache.parent.mkdir()
    cache.write_bytes(b"")
    installed_ns = (time.time_ns() // 1_000_000_000 - 3600) * 1_000_000_000
    os.utime(library, ns=(installed_ns, installed_ns + 100_000_000))
    os.utime(cache, ns=(installed_ns, installed_ns + 600_000_000))
    assert not racily_clean(str(cache), str(library))
    saved_ns = (time.time_ns() // 1_000_000_000) * 1_000_000_000
    os.utime(library, ns=(saved_ns, saved_ns))
    os.utime(cache, ns=(saved_ns, saved_ns + 1))
    assert racily_clean(str(cache), str(library))
    # The project's own files are judged by the second rule whenever they were saved.
    monkeypatch.setattr(bytecode, "_PYTHON_TREES", ("/nonexistent-tree/",))
    os.utime(library, ns=(installed_ns, installed_ns + 100_000_000))
    os.utime(cache, ns=(installed_ns, installed_ns + 600_000_000))
    assert racily_clean(str(cache), str(library))


def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths FreshSourceFileLoader compiles from now on (a cache used is no compile)."""
    compiled: list[str] = []
    compile_source = FreshSourceFileLoader.source_to_code

    def counted(self, data, path, *, _optimize=-1):  # type: ignore[no-untyped-def]
        compiled.append(str(path))
        return compile_source(self, data, path, _optimize=_optimize)

    monkeypatch.setattr(FreshSourceFileLoader, "source_to_code", counted)
    return compiled


@pytest.mark.usefixtures("write_bytecode")
def test_a_project_files_cache_is_hash_checked_and_used_whatever_the_clocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # The cache a daemon writes of a file saved in the same second (a start just after a git
    # checkout) would be refused as racily clean at every later start where no cache can be
    # rewritten (PYTHONDONTWRITEBYTECODE): compiled each time. Hash-checked, it is used.
    compiled = compiles(monkeypatch)
    module = tmp_path / "checked.py"
    module.write_text("VALUE = 'v1'\n")
    assert load(module, FreshSourceFileLoader) == "v1"
    cache = Path(importlib.util.cache_from_source(str(module)))
    flags = int.from_bytes(cache.read_bytes()[4:8], "little")
    assert flags == 0b11  # PEP 552: hash-based, checked against the source at import
    same_second = module.stat().st_mtime_ns // 1_000_000_000 * 1_000_000_000
    os.utime(cache, ns=(same_second, same_second))  # written in its source's second
    assert racily_clean(str(cache), str(module))  # as a timestamp cache it would be refused
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert load(module, FreshSourceFileLoader) == "v1"
    assert compiled == [str(module)]  # the first import only: the second used the cache
    # A same-size edit in the same second: its hash differs, the source is compiled.
    same_second_edit(module, "VALUE = 'v2'\n")
    assert load(module, FreshSourceFileLoader) == "v2"
    assert load(module, SourceFileLoader) == "v2"  # plain importlib checks it too
    assert len(compiled) == 2


@pytest.mark.usefixtures("write_bytecode")
def test_a_librarys_cache_stays_a_timestamp_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # Thousands of library files: hashing each source at each import would cost a read apiece.
    monkeypatch.setattr(bytecode, "_PYTHON_TREES", (os.path.join(tmp_path, ""),))
    library = tmp_path / "installed.py"
    library.write_text("VALUE = 'v1'\n")
    assert load(library, FreshSourceFileLoader) == "v1"
    cache = Path(importlib.util.cache_from_source(str(library)))
    assert int.from_bytes(cache.read_bytes()[4:8], "little") == 0


def test_a_restart_compiles_no_project_file_that_did_not_change(project: Path, start_server):
    # End to end, as the issue counts it: a module whose compile says so (a SyntaxWarning, shown
    # only when Python compiles; whoosh's printed at every daemon start this way). Its cache is
    # dated into its source's second, as when a server starts just after a checkout; the second
    # start runs where no cache can be written (PYTHONDONTWRITEBYTECODE, a Docker image's
    # habit): it compiles nothing, so says nothing.
    (project / "helper.py").write_text("CHECK = 1 is 1  # SyntaxWarning when compiled\n")
    app = project / "app.py"
    app.write_text("import helper\n" + app.read_text())
    first = start_server(project, "app:application", "--processes", "2")
    wait_for(
        lambda: "SyntaxWarning" in first.log(), 10, lambda: f"the compile's warning\n{first.log()}"
    )
    assert first.stop() == 0
    cache = Path(importlib.util.cache_from_source(str(project / "helper.py")))
    source_ns = (project / "helper.py").stat().st_mtime_ns
    second_ns = source_ns // 1_000_000_000 * 1_000_000_000 + 999_999_999
    os.utime(cache, ns=(second_ns, second_ns))
    assert racily_clean(str(cache), str(project / "helper.py"))  # a timestamp cache: refused
    imported_before = len(imports(project))
    second = start_server(
        project,
        "app:application",
        "--processes",
        "2",
        "--log-level",
        "info",
        env={"PYTHONDONTWRITEBYTECODE": "1"},
    )
    # Both serving processes imported the app, and said so after it: each one's "watches"
    # line comes after its import's output (a warning would have come before it).
    wait_for(lambda: len(imports(project)) >= imported_before + 2, 20, "both imports")
    wait_for(
        lambda: second.log().count(" watches ") >= 2, 20, lambda: f"both watching\n{second.log()}"
    )
    assert "SyntaxWarning" not in second.log(), second.log()
