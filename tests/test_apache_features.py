"""What only a real Apache gives: another local server mounted under a path (its WebSocket too),
the user's own directives included (a broken one quoted in one line), HTTP/2."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from conftest import assert_one_line_error, free_port, run_wsgidev


@pytest.fixture
def upstream() -> Iterator[int]:
    """A small server on loopback, like a Vite dev server: HTTP answers and a WebSocket echo."""
    from websockets.sync.server import serve

    def echo(websocket: Any) -> None:
        for message in websocket:
            websocket.send(f"echo {message}")

    def http(connection: Any, request: Any) -> Any:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None  # the WebSocket handshake goes on
        return connection.respond(HTTPStatus.OK, f"upstream saw {request.path}\n")

    with serve(echo, "127.0.0.1", 0, process_request=http) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield int(server.socket.getsockname()[1])
        server.shutdown()
        thread.join(5)


def test_proxy_mounts_another_server_and_its_websocket(project: Path, upstream: int, start_server):
    from websockets.sync.client import connect

    server = start_server(project, "app.py", "--proxy", f"/vite=http://127.0.0.1:{upstream}/vite")
    assert server.get("/vite/src/main.js") == (200, b"upstream saw /vite/src/main.js\n")
    assert server.json("/")["version"] == "v1"  # the app still has the rest of the site
    with connect(f"ws://127.0.0.1:{server.port}/vite/hmr", open_timeout=10) as websocket:
        websocket.send("hello")
        assert websocket.recv(timeout=10) == "echo hello"


def test_proxy_values_are_checked(project: Path, short_tmp: Path):
    for value, words in (
        ("vite=http://127.0.0.1:5173", ["--proxy path", "below /"]),
        ("/=http://127.0.0.1:5173", ["--proxy path", "below /"]),
        ("/vite=127.0.0.1:5173", ["--proxy URL", "http://"]),
    ):
        code, _, err = run_wsgidev(project, short_tmp, "start", "app.py", "--proxy", value)
        assert_one_line_error(code, err, *words)


def test_include_adds_directives_and_a_broken_line_is_quoted(
    project: Path, tmp_path: Path, short_tmp: Path, start_server, busy_port: int
):
    extra = tmp_path / "extra.conf"
    extra.write_text('Header always set X-From-Include "yes"\n')
    server = start_server(project, "app.py", "--include", str(extra))
    with urllib.request.urlopen(server.url + "/", timeout=10) as response:
        assert response.headers["X-From-Include"] == "yes"
    broken = tmp_path / "broken.conf"
    broken.write_text("# a comment\nBogusDirective on\n")
    # Named even while the port is busy: the include's lines are the user's input.
    busy = str(busy_port)
    code, _, err = run_wsgidev(
        project, short_tmp, "start", "app.py", "--include", str(broken), "--port", busy
    )
    assert_one_line_error(code, err, "line 2", str(broken), "'BogusDirective on'")
    assert not any(short_tmp.iterdir())
    code, _, err = run_wsgidev(
        project, short_tmp, "start", "app.py", "--include", "nothere.conf", "--port", busy
    )
    assert_one_line_error(code, err, "--include", "nothere.conf", "not a file")


def test_http2_over_plain_http(project: Path, start_server):
    server = start_server(project, "app.py", "--http2")
    result = subprocess.run(
        ["curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_version}",
         server.url + "/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    body, _, version = result.stdout.rpartition("\n")
    assert version == "2" and json.loads(body)["version"] == "v1", result
    # HTTP/1.1 clients are served as before.
    assert server.json("/")["version"] == "v1"


# --- HTTPS with the local CA -------------------------------------------------------------------


def _ca_home(tmp_path: Path) -> dict[str, str]:
    """A data folder of its own for the local CA (platformdirs follows XDG_DATA_HOME)."""
    return {"XDG_DATA_HOME": str(tmp_path / "data")}


def test_https_with_the_local_ca_serves_http2_and_django_sees_it_secure(
    tmp_path: Path, django_project: Path, start_server
):
    import httpx

    site = django_project
    https_port = free_port()
    env = _ca_home(tmp_path)
    server = start_server(
        site, "--skip-checks", "--https", str(https_port), env=env, manage_py=True
    )
    ca = tmp_path / "data" / "wsgidev" / "ca" / "rootCA.pem"
    assert f"also at https://localhost:{https_port}/ (HTTP/2)" in server.log(), server.log()
    assert str(ca) in server.log()  # where the CA is, until it is trusted
    with httpx.Client(http2=True, verify=ssl.create_default_context(cafile=str(ca))) as client:
        response = client.get(f"https://localhost:{https_port}/secure", timeout=10)
    assert response.http_version == "HTTP/2"
    assert response.json() == {"secure": True, "host": f"localhost:{https_port}"}
    result = subprocess.run(
        ["curl", "-s", "--http2", "--cacert", str(ca), "-o", "/dev/null", "-w", "%{http_version}",
         f"https://127.0.0.1:{https_port}/secure"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.stdout == "2", result
    # Plain HTTP stays on --port, not secure.
    assert json.loads(server.get("/secure")[1])["secure"] is False


def _self_signed(folder: Path, days: int) -> tuple[Path, Path]:
    from wsgidev.certs import LocalCA

    ca = LocalCA(folder / "ca")
    pair = ca.issue([], folder / "leaf")
    if days >= 0:
        return pair.certificate, pair.key
    # An expired one: re-sign with dates in the past.
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    old = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    expired = folder / "expired.pem"
    expired.write_bytes(old.public_bytes(serialization.Encoding.PEM))
    return expired, pair.key


def test_a_wrong_or_expired_certificate_pair_gets_one_line(
    project: Path, tmp_path: Path, short_tmp: Path
):
    good_cert, good_key = _self_signed(tmp_path / "a", 1)
    _, other_key = _self_signed(tmp_path / "b", 1)
    expired, expired_key = _self_signed(tmp_path / "c", -1)
    for args, words in (
        (["--ssl-certificate", str(good_cert), "--ssl-key", str(other_key)], ["does not belong"]),
        (["--ssl-certificate", str(expired), "--ssl-key", str(expired_key)], ["expired on"]),
        (["--ssl-certificate", str(good_key), "--ssl-key", str(good_key)], ["not a readable PEM"]),
        (["--ssl-certificate", str(good_cert)], ["go together"]),
    ):
        code, _, err = run_wsgidev(project, short_tmp, "start", "app.py", "--https", *args)
        assert_one_line_error(code, err, *words)


def test_config_express_carries_https_and_the_snippet_says_what_it_leaves_out(
    project: Path, tmp_path: Path, short_tmp: Path
):
    env = _ca_home(tmp_path)
    code, out, err = run_wsgidev(
        project, short_tmp, "config", "express", "app.py", "--https", "8443",
        "--proxy", "/vite=http://127.0.0.1:5173/vite", env=env,
    )  # fmt: skip
    assert code == 0, err
    server = tmp_path / "data" / "wsgidev" / "ca" / "server"
    for expected in ("--https-port 8443", f"--ssl-certificate-file {server / 'server.pem'}",
                     "--http2", "--proxy-mount-point /vite http://127.0.0.1:5173/vite"):  # fmt: skip
        assert expected in out, out
    code, out, err = run_wsgidev(
        project, short_tmp, "config", "apache", "app.py", "--https", "--http2", env=env
    )
    assert code == 0, err
    assert "# --https is left out here" in out and "# --http2 is left out here" in out


def test_an_https_port_in_use_gets_one_line(project: Path, tmp_path: Path, short_tmp: Path):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code, _, err = run_wsgidev(
            project, short_tmp, "start", "app.py", "--https", str(port), env=_ca_home(tmp_path)
        )
    assert_one_line_error(code, err, f"port {port}", "in use")
    assert not any(short_tmp.iterdir())
