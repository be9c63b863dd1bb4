"""Development TLS material: a local certificate authority and a server certificate it signs.

``make_dev_certs`` writes four PEM files into one directory: ``ca.pem`` (give it to clients:
the SDKs' CA bundle option, ``REQUESTS_CA_BUNDLE``), ``ca-key.pem``, ``server.pem`` and
``server-key.pem`` (``keyturn serve --tls-cert/--tls-key``, or a database server's TLS files).
Keys are EC P-256, written with mode 0600 from the start (never world-readable, not even for a
moment) and replaced atomically. An existing CA in the directory is reused, so clients that
already trust it keep working when the server certificate is renewed. The server certificate
names each host as a subjectAltName (IP address or DNS name) and allows server and client
authentication, so the same pair can serve for mutual TLS in tests. This is for development
only: a production deployment brings certificates from its own CA. Imports: cryptography and
the standard library.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: Final = ("127.0.0.1", "localhost", "::1")
CA_DAYS: Final = 3650
#: Below the 825 days some TLS clients accept for a server certificate.
SERVER_DAYS: Final = 825
_ORG: Final = "keyturn development"
#: Clock skew allowance: a certificate is valid from a little before it was made.
_BACKDATE: Final = dt.timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class DevCerts:
    """Where the files are, and whether the CA was made now or reused."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path
    ca_created: bool


def make_dev_certs(
    directory: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    *,
    days: int = SERVER_DAYS,
    new_ca: bool = False,
) -> DevCerts:
    """Write (or reuse) the CA and issue a server certificate for ``hosts`` into ``directory``."""
    if not hosts:
        raise ValueError("at least one host is needed")
    if days < 1:
        raise ValueError("--days must be at least 1")
    names = [_general_name(host) for host in hosts]
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = DevCerts(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
        cert=directory / "server.pem",
        key=directory / "server-key.pem",
        ca_created=False,
    )
    ca = None if new_ca else _load_ca(files.ca_cert, files.ca_key)
    if ca is None:
        ca = _new_ca()
        _write(files.ca_key, _key_pem(ca[1]), private=True)
        _write(files.ca_cert, ca[0].public_bytes(serialization.Encoding.PEM), private=False)
        files = replace(files, ca_created=True)
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"keyturn server {hosts[0]}"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(files.key, _key_pem(key), private=True)
    _write(files.cert, cert.public_bytes(serialization.Encoding.PEM), private=False)
    return files


def _new_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    # The machine's name tells two developers' CAs apart in a trust store.
    name = _name(f"keyturn development CA ({socket.gethostname()})")
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _load_ca(
    cert_path: Path, key_path: Path
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The CA already in the directory, if both files are there and belong together."""
    if not (cert_path.is_file() and key_path.is_file()):
        return None
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC private key made by keyturn")
    if cert.public_key() != key.public_key():
        raise ValueError(f"{cert_path} and {key_path} do not belong together")
    return cert, key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not ca,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not host or any(c.isspace() or c in "/@:" for c in host):
        raise ValueError(f"{host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, *, private: bool) -> None:
    """Replace ``path`` atomically; a private key is 0600 from its first byte."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
