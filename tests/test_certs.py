"""The local certificate authority and the server certificates it signs (no Apache here)."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

from wsgidev.certs import LocalCA


def _verify(ca: LocalCA, certificate_path: Path, name: str) -> None:
    """A TLS handshake in memory (Python's ssl, OpenSSL): the client trusts the CA alone and
    checks the host name, as a browser would; any version of cryptography made the files."""
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(certificate_path, certificate_path.with_name("server-key.pem"))
    client_side = ssl.create_default_context(cafile=str(ca.certificate_path))
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client = client_side.wrap_bio(pipes[0], pipes[1], server_hostname=name)
    server = server_side.wrap_bio(pipes[2], pipes[3], server_side=True)
    done = {client: False, server: False}
    for _ in range(10):
        for end in (client, server):
            if not done[end]:
                try:
                    end.do_handshake()
                    done[end] = True
                except ssl.SSLWantReadError:
                    pass
        pipes[2].write(pipes[1].read())  # client -> server
        pipes[0].write(pipes[3].read())  # server -> client
        if all(done.values()):
            return
    raise AssertionError("the handshake did not finish")


def test_the_authority_is_made_once_with_a_private_key(tmp_path: Path):
    ca = LocalCA(tmp_path / "ca")
    ca.ensure()
    assert stat.S_IMODE(ca.key_path.stat().st_mode) == 0o600
    first = ca.certificate_path.read_bytes()
    ca.ensure()
    assert ca.certificate_path.read_bytes() == first


def test_server_certificates_verify_for_every_name_and_renew_when_names_change(tmp_path: Path):
    ca = LocalCA(tmp_path / "ca")
    pair = ca.issue(["dev.example.test"], tmp_path / "root")
    assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    for name in ("localhost", "dev.example.test"):
        _verify(ca, pair.certificate, name)
    same = pair.certificate.read_bytes()
    assert ca.issue(["dev.example.test"], tmp_path / "root").certificate.read_bytes() == same
    renewed = ca.issue(["other.example.test"], tmp_path / "root")
    assert renewed.certificate.read_bytes() != same
    _verify(ca, renewed.certificate, "other.example.test")
    # Signed by another authority (a new CA folder): made afresh, not served as it was.
    other = LocalCA(tmp_path / "ca2")
    again = other.issue(["other.example.test"], tmp_path / "root")
    _verify(other, again.certificate, "localhost")


def test_trust_installs_and_uninstalls_into_a_given_store(tmp_path: Path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    store = tmp_path / "store"
    command = [sys.executable, "-m", "wsgidev", "trust", "--system-store", str(store)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and f"installed in {store}" in done.stdout, done
    ca = tmp_path / "data" / "wsgidev" / "ca" / "rootCA.pem"
    assert (store / "wsgidev-rootCA.crt").read_bytes() == ca.read_bytes()
    undone = subprocess.run([*command, "--uninstall"], env=env, capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert undone.returncode == 0 and f"removed from {store}" in undone.stdout, undone
    assert not (store / "wsgidev-rootCA.crt").exists()
