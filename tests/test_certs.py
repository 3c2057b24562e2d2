"""The local certificate authority and the server certificates it signs (no Apache here)."""

from __future__ import annotations

import datetime
import stat
from pathlib import Path

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from wsgidev.certs import LocalCA


def _verify(ca: LocalCA, certificate_path: Path, name: str) -> None:
    root = x509.load_pem_x509_certificate(ca.certificate_path.read_bytes())
    leaf = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .time(datetime.datetime.now(datetime.timezone.utc))
        .build_server_verifier(x509.DNSName(name))
    )
    verifier.verify(leaf, [])


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
