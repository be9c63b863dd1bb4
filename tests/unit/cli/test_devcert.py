"""Unit tests of ``keyturn.cli.devcert`` (the x509 behind ``keyturn tls dev-cert``): the files
and their modes, the certificate's names and usages, a real in-memory TLS handshake that trusts
only the dev CA, and CA reuse across renewals."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from keyturn.cli.devcert import DEFAULT_HOSTS, DevCerts, make_dev_certs


def handshake(certs: DevCerts, hostname: str, ca: Path | None = None) -> str:
    """Run client and server TLS over memory BIOs; the negotiated version."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.cert, certs.key)
    client_ctx = ssl.create_default_context(cafile=str(ca or certs.ca_cert))
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return str(client.version())
    raise AssertionError("the handshake did not finish")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> DevCerts:
    return make_dev_certs(tmp_path_factory.mktemp("tls") / "dev")


def test_files_and_modes(certs: DevCerts) -> None:
    assert certs.ca_created
    for path in (certs.ca_key, certs.key):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    for path in (certs.ca_cert, certs.cert):
        assert path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert stat.S_IMODE(certs.cert.parent.stat().st_mode) == 0o700
    assert not list(certs.cert.parent.glob(".*.tmp"))


def test_certificate_names_and_usages(certs: DevCerts) -> None:
    cert = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH in usages
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_ca_accepts_the_server(certs: DevCerts, hostname: str) -> None:
    assert handshake(certs, hostname) in ("TLSv1.2", "TLSv1.3")


def test_a_wrong_name_or_another_ca_is_refused(certs: DevCerts, tmp_path: Path) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certs, "example.com")
    other = make_dev_certs(tmp_path / "other", ["127.0.0.1"])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(certs, "127.0.0.1", ca=other.ca_cert)


def test_the_ca_is_reused_unless_asked(tmp_path: Path) -> None:
    first = make_dev_certs(tmp_path, ["127.0.0.1"])
    ca_pem = first.ca_cert.read_bytes()
    second = make_dev_certs(tmp_path, ["127.0.0.1", "keyturn.internal"], days=30)
    assert not second.ca_created and second.ca_cert.read_bytes() == ca_pem
    cert = x509.load_pem_x509_certificate(second.cert.read_bytes())
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 30
    handshake(second, "keyturn.internal")
    third = make_dev_certs(tmp_path, ["127.0.0.1"], new_ca=True)
    assert third.ca_created and third.ca_cert.read_bytes() != ca_pem


@pytest.mark.parametrize(
    ("hosts", "days"), [([], 825), (["bad host"], 825), (["a/b"], 825), (["127.0.0.1"], 0)]
)
def test_bad_input(tmp_path: Path, hosts: list[str], days: int) -> None:
    with pytest.raises(ValueError):
        make_dev_certs(tmp_path, hosts, days=days)
    assert not (tmp_path / "ca.pem").exists()


def test_default_hosts() -> None:
    assert DEFAULT_HOSTS == ("127.0.0.1", "localhost", "::1")
