"""Where wsgidev finds Apache's pieces on layouts other than this machine's (unit tests; the
pip-built Apache itself runs the whole suite in `bash dev.sh compat pip-httpd`)."""

from __future__ import annotations

import types
from pathlib import Path

from wsgidev.apache import ApacheInstall, find_mime_types

NO_SYSTEM_TYPES = types.SimpleNamespace(find_mimetypes=lambda: "/dev/null")


def _install(**fields: str) -> ApacheInstall:
    base = dict(httpd="/x/bin/httpd", modules_dir="/x/modules", mod_wsgi_so="/x/w.so")
    return ApacheInstall(**base, python_home="/v", python_dylib="", mime_types="", **fields)


def test_a_pip_built_apache_gets_its_library_path_first():
    install = _install(library_path="/v/httpd/lib")
    assert install.environ({"LD_LIBRARY_PATH": "/opt/lib", "A": "1"}) == {
        "LD_LIBRARY_PATH": "/v/httpd/lib:/opt/lib",
        "A": "1",
    }
    assert install.environ({})["LD_LIBRARY_PATH"] == "/v/httpd/lib"


def test_a_system_apache_keeps_the_environment_as_it_is():
    assert _install().environ({"A": "1"}) == {"A": "1"}


def test_mime_types_beside_a_moved_pip_built_apache(tmp_path: Path):
    # mod_wsgi-httpd reports the HTTPD_ROOT it was built in (a pip temp folder, gone since).
    (tmp_path / "bin").mkdir()
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mime.types").write_text("text/plain txt\n")
    settings = {"HTTPD_ROOT": "/tmp/pip-gone/httpd", "AP_TYPES_CONFIG_FILE": "conf/mime.types"}
    path, found_by = find_mime_types(str(tmp_path / "bin" / "httpd"), settings, NO_SYSTEM_TYPES)
    assert path == str(tmp_path / "conf" / "mime.types") and "Apache's own" in found_by


def test_mime_types_next_to_the_config_file(tmp_path: Path):
    # Homebrew: HTTPD_ROOT is the keg, the config and its mime.types live under etc/httpd.
    etc = tmp_path / "etc" / "httpd"
    etc.mkdir(parents=True)
    (etc / "mime.types").write_text("text/plain txt\n")
    settings = {"HTTPD_ROOT": str(tmp_path / "keg"), "SERVER_CONFIG_FILE": str(etc / "httpd.conf")}
    path, _ = find_mime_types(str(tmp_path / "bin" / "httpd"), settings, NO_SYSTEM_TYPES)
    assert path == str(etc / "mime.types")


def test_no_mime_types_anywhere_says_where_it_looked(tmp_path: Path):
    settings = {"HTTPD_ROOT": str(tmp_path / "none")}
    path, found_by = find_mime_types(str(tmp_path / "bin" / "httpd"), settings, NO_SYSTEM_TYPES)
    assert path == ""
    assert f"{tmp_path}/none/conf/mime.types" in found_by and "mimetypes.knownfiles" in found_by
