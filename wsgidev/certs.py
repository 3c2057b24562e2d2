"""A local certificate authority for HTTPS in development, and the server certificates it signs.

Its libraries are wsgidev's `https` extra: callers check them first with
requirements.require("https"), so a missing one is one line naming `pip install 'wsgidev[https]'`.

The authority is created once per user, in the user's data folder (platformdirs: on Linux
$XDG_DATA_HOME/wsgidev/ca, i.e. ~/.local/share/wsgidev/ca), its key readable by the user alone.
Browsers and clients trust it once it is installed (`wsgidev trust`); until then the banner
says where its certificate is. Each `wsgidev start --https` gets a server certificate for
localhost, 127.0.0.1, ::1 and every host name it serves, made afresh when the names change or it
is near its end. Built on `cryptography` (the library pyca keeps), as mkcert does in Go.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from wsgidev.apachequote import bare_host

CA_NAME = "wsgidev local development CA"
CA_DAYS = 3650
# Browsers refuse server certificates valid for more than 398 days.
LEAF_DAYS = 397
RENEW_BEFORE_DAYS = 30
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


def default_ca_dir() -> Path:
    """Where the authority lives: the user's data folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("wsgidev", appauthor=False)) / "ca"


@dataclass(frozen=True)
class ServerCertificate:
    """A certificate and key pair Apache can serve (mod_ssl's SSLCertificateFile/KeyFile)."""

    certificate: Path
    key: Path


class LocalCA:
    """The user's development certificate authority (created on first use)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder or default_ca_dir()
        self.certificate_path = self.folder / "rootCA.pem"
        self.key_path = self.folder / "rootCA-key.pem"

    def exists(self) -> bool:
        """Whether the authority has been created."""
        return self.certificate_path.is_file() and self.key_path.is_file()

    def ensure(self) -> None:
        """Create the authority if there is none yet."""
        if self.exists():
            return
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wsgidev"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_NAME} ({_who()})"),
            ]
        )
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _key_pem(key))
        self.certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, names: Iterable[str], folder: Path) -> ServerCertificate:
        """A server certificate for names (and the loopback defaults) in folder, made afresh
        only when the names changed, it is near its end, or this authority did not sign it."""
        self.ensure()
        wanted = sorted(set(DEFAULT_NAMES) | {bare_host(n) for n in names if n})
        pair = ServerCertificate(folder / "server.pem", folder / "server-key.pem")
        if self._still_good(pair, wanted):
            return pair
        ca_key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_certificate = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "wsgidev development"),
                        x509.NameAttribute(NameOID.COMMON_NAME, wanted[0]),
                    ]
                )
            )
            .issuer_name(ca_certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
            .add_extension(x509.SubjectAlternativeName(_alt_names(wanted)), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_private(pair.key, _key_pem(key))
        pair.certificate.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return pair

    def _still_good(self, pair: ServerCertificate, wanted: list[str]) -> bool:
        try:
            certificate = x509.load_pem_x509_certificate(pair.certificate.read_bytes())
            ca_certificate = x509.load_pem_x509_certificate(self.certificate_path.read_bytes())
        except (OSError, ValueError):
            return False
        if not pair.key.is_file():
            return False
        if not _signed_by(certificate, ca_certificate):
            return False
        left = _not_after(certificate) - _now()
        try:
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            return False
        have = sorted(
            [str(n) for n in names.value.get_values_for_type(x509.DNSName)]
            + [str(n) for n in names.value.get_values_for_type(x509.IPAddress)]
        )
        return have == wanted and left > datetime.timedelta(days=RENEW_BEFORE_DAYS)


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether issuer (an EC authority, as ours) signed certificate. By hand rather than
    cryptography 40's verify_directly_issued_by: wsgidev[https] supports cryptography 3.4."""
    public_key = issuer.public_key()
    algorithm = certificate.signature_hash_algorithm
    if certificate.issuer != issuer.subject or algorithm is None:
        return False
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return False
    try:
        public_key.verify(
            certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(algorithm)
        )
    except InvalidSignature:
        return False
    return True


def _not_after(certificate: x509.Certificate) -> datetime.datetime:
    """The end of validity, aware (not_valid_after_utc from cryptography 42 on)."""
    value = getattr(certificate, "not_valid_after_utc", None)
    if isinstance(value, datetime.datetime):
        return value
    return certificate.not_valid_after.replace(tzinfo=datetime.timezone.utc)


def _not_before(certificate: x509.Certificate) -> datetime.datetime:
    """The start of validity, aware (not_valid_before_utc from cryptography 42 on)."""
    value = getattr(certificate, "not_valid_before_utc", None)
    if isinstance(value, datetime.datetime):
        return value
    return certificate.not_valid_before.replace(tzinfo=datetime.timezone.utc)


def _alt_names(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by its owner alone (0600 from the start, not chmod after)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    os.chmod(path, 0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _who() -> str:
    try:
        import getpass
        import socket

        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:
        return "this user"


def check_pair(certificate_path: str, key_path: str) -> None:
    """A user's own certificate and key: readable PEM, belonging together, in date; else a
    WsgidevError naming the problem."""
    from wsgidev.errors import WsgidevError

    try:
        certificate = x509.load_pem_x509_certificate(Path(certificate_path).read_bytes())
    except (OSError, ValueError) as exc:
        raise WsgidevError(
            f"--ssl-certificate {certificate_path} is not a readable PEM certificate ({exc})",
            "pass the server certificate file (PEM), or drop it to use wsgidev's local CA",
        ) from None
    try:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise WsgidevError(
            f"--ssl-key {key_path} is not a readable, unencrypted PEM key ({exc})",
            "pass the certificate's private key (PEM, no passphrase)",
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(serialization.Encoding.PEM, public) != (
        certificate.public_key().public_bytes(serialization.Encoding.PEM, public)
    ):
        raise WsgidevError(
            f"--ssl-key {key_path} does not belong to --ssl-certificate {certificate_path}",
            "pass the key the certificate was made for",
        )
    now = _now()
    if _not_after(certificate) < now:
        raise WsgidevError(
            f"--ssl-certificate {certificate_path} expired on {_not_after(certificate):%Y-%m-%d}",
            "renew it, or drop --ssl-certificate/--ssl-key to use wsgidev's local CA",
        )
    if _not_before(certificate) > now:
        raise WsgidevError(
            f"--ssl-certificate {certificate_path} is not valid before "
            f"{_not_before(certificate):%Y-%m-%d}",
            "check the machine's clock, or the certificate",
        )
