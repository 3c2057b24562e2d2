"""Nothing a user types or a folder is named can change what httpd.conf means (real Apache).

Values go through wsgidev/apachequote.py: a double-quoted argument with `\\`, `"` and `${`
escaped, an expression string with `%{`, `$`, `'` escaped too, ASCII names for process groups,
and a line break refused in one line. Checked here three ways: the escapes round-trip through a
real Apache exactly; configs rendered for hostile folder names hold exactly the directives a
plain name gives (no extra line); and `wsgidev start` serves, reloads and hands over there.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
from pathlib import Path

import pytest
from conftest import (
    APP,
    assert_one_line_error,
    free_port,
    reload_lines,
    run_wsgidev,
    set_version,
    versions,
    wait_for,
    wsgidev_command,
)
from test_config import minimal_main_config, running

from wsgidev.apache import find_apache
from wsgidev.apachequote import DEFINE_DOLLAR, UnsafeValue, arg, ascii_name, check, expr_string

# Every character Apache or mod_wsgi reads specially, each in a value of its own.
HOSTILE = [
    "sp ace",
    "dolbr${HOME}",
    "dol$lar",
    "pct%{HTTP_HOST}",
    "qu'ote",
    'dq"uote',
    "back\\slash",
    "trail\\",
    "ha#sh",
    "café-ñ",
    "br[ack]et",
    "star*q?",
    "dollar1$1",
]


def _header(port: int, name: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        response.read()
        value = response.getheader(name) or ""
    finally:
        connection.close()
    return value.encode("latin-1").decode("utf-8")


def test_arguments_and_expression_strings_round_trip_through_apache(tmp_path: Path):
    folder = tmp_path / "files"
    folder.mkdir()
    lines = [DEFINE_DOLLAR, "<Location />", "    Require all granted"]
    for index, value in enumerate(HOSTILE):
        (folder / value).write_text("x")
        # SetEnv takes its value as written: the header shows what Apache made of the argument.
        lines.insert(1, f"SetEnv WV{index} {arg(value)}")
        expression = f"-f '{expr_string(str(folder / value))}'"
        lines.insert(1, f"SetEnvIfExpr {arg(expression)} WF{index}=found")
        lines.append(f'    Header always set X-V{index} "%{{WV{index}}}e"')
        lines.append(f'    Header always set X-F{index} "%{{WF{index}}}e"')
    missing = f"-f '{expr_string(str(folder / 'not-there'))}'"
    lines.insert(1, f"SetEnvIfExpr {arg(missing)} WMISSING=found")
    lines += ['    Header always set X-Missing "%{WMISSING}e"', "</Location>"]
    apache = find_apache()
    modules = apache.modules_dir
    snippet = tmp_path / "values.conf"
    snippet.write_text(
        # The main config names mod_wsgi's socket folder: mod_wsgi is loaded, and left idle.
        f'LoadModule wsgi_module "{apache.mod_wsgi_so}"\nWSGIPythonHome "{apache.python_home}"\n'
        "WSGIRestrictEmbedded On\n"
        + "".join(
            f'<IfModule !{name}>\nLoadModule {name} "{modules}/{file}"\n</IfModule>\n'
            for name, file in (
                ("headers_module", "mod_headers.so"),
                ("env_module", "mod_env.so"),
                ("setenvif_module", "mod_setenvif.so"),
            )
        )
        + "\n".join(lines)
        + "\n"
    )
    port = free_port()
    main = minimal_main_config(tmp_path / "root", port, snippet)
    with running([find_apache().httpd, "-f", str(main), "-DFOREGROUND"], port, tmp_path / "a.log"):
        for index, value in enumerate(HOSTILE):
            assert _header(port, f"X-V{index}") == value
            assert _header(port, f"X-F{index}") == "found", value
        assert _header(port, "X-Missing") == "(null)"


@pytest.mark.parametrize("value", ["a\nInclude /tmp/evil.conf\n#", "cr\rx", "nul\x00", "bell\x07"])
def test_control_characters_are_refused_naming_the_value(value: str):
    with pytest.raises(UnsafeValue) as raised:
        arg(value, "the project folder")
    assert "the project folder" in str(raised.value) and repr(value) in str(raised.value)
    assert check("tab\tis fine") == "tab\tis fine"


def test_names_are_ascii_words():
    assert ascii_name("café-ñ") == "cafe-n"
    assert ascii_name("my site${HOME}") == "my_site__HOME"
    assert ascii_name("ßß") == "app"


def _directives(conf: str) -> list[str]:
    """Each directive's name (the first word of each logical line), comments and blanks aside."""
    logical = re.sub(r"\\\n\s*", " ", conf)
    return [
        line.split()[0]
        for line in logical.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("kind", ["standalone", "apache"])
def test_hostile_folder_names_render_exactly_the_plain_directives(tmp_path: Path, kind: str):
    def render(name: str) -> str:
        project = tmp_path / kind / name
        (project / "static").mkdir(parents=True)
        (project / "app.py").write_text(APP)
        done = subprocess.run(
            wsgidev_command(
                "config",
                kind,
                "app.py",
                "--static",
                f"/s={project / 'static'}",
                "--output",
                str(project / "out"),
            ),
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    plain = _directives(render("plain"))
    for name in HOSTILE:
        conf = render(name)
        assert _directives(conf) == plain, name
        assert (
            "/root" not in conf.replace(str(Path.home()), "") or "${" in name
        )  # ${HOME} never expanded by us


@pytest.mark.bad_input
def test_a_line_break_in_a_folder_name_is_one_line(tmp_path: Path, short_tmp: Path):
    project = tmp_path / "nl\nInclude evil.conf\n#"
    project.mkdir()
    (project / "app.py").write_text(APP)
    for args in (["start", "app.py", "--port", str(free_port())], ["config", "apache", "app.py"]):
        code, _, err = run_wsgidev(project, short_tmp, *args)
        assert_one_line_error(code, err, "line break", "rename it")


@pytest.mark.parametrize("name", ["dolbr${HOME}", "qu'o\"te\\", "café-ñ", "pct%{X} br[a]*"])
def test_hostile_project_and_tmp_folders_serve_reload_and_hand_over(
    tmp_path: Path, start_server, name: str
):
    project = tmp_path / name
    (project / "static").mkdir(parents=True)
    (project / "static" / "site.css").write_text("body { color: red }")
    (project / "app.py").write_text(APP)
    server = start_server(
        project,
        "app.py",
        "--static",
        f"/static={project / 'static'}",
        tmp_prefix=f"w{name[:6]}-",
    )
    assert versions(server) == {"v1"}
    assert server.get("/static/site.css") == (200, b"body { color: red }")
    # The hand-over: a standby group (named in ASCII) imports the edit, then takes the traffic.
    set_version(project / "app.py", "v2")
    wait_for(lambda: versions(server) == {"v2"}, 30, lambda: f"v2\n{server.log()}")
    wait_for(lambda: len(reload_lines(server)) == 1, 20, lambda: f"the reload line\n{server.log()}")
    assert "hand-over unavailable" not in server.log()
    assert "Reloaded in" in reload_lines(server)[0]


@pytest.mark.bad_input
def test_a_folder_name_that_is_not_utf8_is_one_line(tmp_path: Path, short_tmp: Path):
    project = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    project.mkdir()
    (project / "app.py").write_text(APP)
    code, _, err = run_wsgidev(
        project, short_tmp, "config", "standalone", "app.py", "--output", str(tmp_path / "out")
    )
    assert_one_line_error(code, err, "is not UTF-8", "rename it")


def test_an_ipv6_scope_is_an_interface_name_only():
    from wsgidev.errors import WsgidevError
    from wsgidev.options import Options

    assert Options(host="fe80::1%eth0").host == "fe80::1%eth0"
    with pytest.raises(WsgidevError, match="--host"):
        Options(host="fe80::1%${HOME} x")
