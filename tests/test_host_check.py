"""The Host check: only names that reach this server are answered (DNS rebinding).

A web page can point a name of its own at 127.0.0.1 and read a dev server through it; Apache
answers localhost, IP addresses, --host, --allow-host and Django's ALLOWED_HOSTS, and a 400 page
naming --allow-host for the rest, on every path: the app, Apache's static files, the event stream.
"""

from __future__ import annotations

import http.client
import re
import warnings
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_wsgidev

from wsgidev import apachequote
from wsgidev.errors import WsgidevError

# -- the pattern ---------------------------------------------------------------------------------


def _python_regex(names: list[str]) -> re.Pattern[str]:
    # The ap_expr regex m#...#i is a PCRE that Python's re reads the same way (it only warns
    # that "[[]" may one day mean a nested set; PCRE reads it as the class of "[").
    found = re.fullmatch(r"m#(.*)#i", apachequote.host_regex(names))
    assert found is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return re.compile(found.group(1), re.IGNORECASE)


@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("localhost", True),
        ("LOCALHOST:8000", True),
        ("app.localhost:8000", True),
        ("localhost.", True),
        ("127.0.0.1:8000", True),
        ("192.168.1.20", True),
        ("[::1]:8000", True),
        ("myapp.test:8000", True),
        ("api.wild.test", True),
        ("wild.test", True),
        ("evil.example", False),
        ("myapp.test.evil.example", False),
        ("notlocalhost", False),
        ("localhost.evil.example", False),
        ("myapp.test:80:80", False),
        ("sub.myapp.test", False),
    ],
)
def test_which_hosts_are_answered(host: str, answered: bool) -> None:
    assert bool(_python_regex(["myapp.test", ".wild.test"]).match(host)) is answered


@pytest.mark.parametrize("name", ["a b", "evil.test)|(.*", "x#y", "a${HOME}", "a\nInclude /x"])
def test_a_name_that_is_no_host_name_never_reaches_the_config(name: str) -> None:
    with pytest.raises(WsgidevError):
        apachequote.host_regex([name])


@pytest.mark.bad_input
def test_allow_host_refuses_what_is_no_host_name(project: Path, tmp_path: Path) -> None:
    code, _, err = run_wsgidev(project, tmp_path, "start", "app:application", "--allow-host", "a b")
    assert_one_line_error(code, err, "--allow-host 'a b' is not a host name", "myapp.test")


# -- served ----------------------------------------------------------------------------------------


def get(server, path: str, host: str) -> tuple[int, str]:
    """Status and body of a GET with this Host header (the stream: its status alone)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", host)
        connection.endheaders()
        response = connection.getresponse()
        body = b"" if path.endswith("/events") else response.read()
        return response.status, body.decode("utf-8", "replace")
    finally:
        connection.close()


def test_only_known_names_are_answered_on_every_path(
    project: Path, tmp_path: Path, start_server
) -> None:
    static = tmp_path / "assets"
    static.mkdir()
    (static / "site.css").write_text("body {}")
    server = start_server(
        project,
        "app:application",
        "--static",
        f"/static={static}",
        "--live-reload",
        "--allow-host",
        "myapp.test",
        "--allow-host",
        ".wild.test",
    )
    port = server.port
    paths = ("/", "/static/site.css", "/__wsgidev__/events")
    for host in (
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"[::1]:{port}",
        "myapp.test",
        "a.wild.test",
    ):
        for path in paths:
            assert get(server, path, host)[0] == 200, (host, path)
    for host in ("evil.example", f"evil.example:{port}", "sub.myapp.test"):
        for path in paths:
            status, body = get(server, path, host)
            assert status == 400, (host, path, status)
            if not path.endswith("/events"):
                assert "--allow-host NAME" in body, body
    assert "also answers Host names myapp.test, .wild.test" in server.log()


def test_allow_host_star_answers_any_name(project: Path, start_server) -> None:
    server = start_server(project, "app:application", "--allow-host", "*")
    assert get(server, "/", "evil.example")[0] == 200
    assert "any Host name is answered" in server.log()


def test_django_allowed_hosts_are_answered_and_star_is_not_any(
    django_project: Path, start_server
) -> None:
    settings = django_project / "testsite" / "settings.py"
    text = settings.read_text()
    settings.write_text(
        text.replace(
            'ALLOWED_HOSTS = ["127.0.0.1", "localhost"]',
            # From the environment, as django-environ settings have it: --env-file's value
            # must be there when wsgidev reads the settings at start.
            'ALLOWED_HOSTS = ["127.0.0.1", "localhost", os.environ.get("SHOP_HOST", "unset.test"), "*"]',
        )
    )
    assert "SHOP_HOST" in settings.read_text()
    (django_project / "shop.env").write_text("SHOP_HOST=shop.test\n")
    server = start_server(django_project, "--env-file", "shop.env")
    assert get(server, "/static/testapp/app.css", "shop.test")[0] == 200
    assert get(server, "/static/testapp/app.css", "evil.example")[0] == 400
    assert get(server, "/", "evil.example")[0] == 400  # Django's "*" would have answered it
    log = server.log()
    assert "also answers Host names shop.test " in log, log
    assert "ALLOWED_HOSTS '*' is not taken for any Host" in log, log
