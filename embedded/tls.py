"""The cluster's TLS material: a CA, a server certificate for dockerd and a client certificate, plus a
"rogue" CA and client that the nodes must refuse. EC P-256, valid 10 years, keys mode 0600."""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from embedded.procs import log

VALID_DAYS = 3650
_NO_USAGE = dict(
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca(directory: Path, cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """ca.pem and ca-key.pem: CA:TRUE (critical), keyCertSign and cRLSign (critical)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **_NO_USAGE)
    cert = (
        _builder(_name(cn), _name(cn), key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(directory / "ca-key.pem", key)
    _write_cert(directory / "ca.pem", cert)
    return cert, key


def sign_cert(
    directory: Path,
    stem: str,
    cn: str,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> None:
    """<stem>-cert.pem and <stem>-key.pem for cn, signed by ca, with one extended key usage."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    digital_signature = x509.KeyUsage(
        digital_signature=True, key_cert_sign=False, crl_sign=False, **_NO_USAGE
    )
    builder = (
        _builder(_name(cn), ca_cert.subject, key)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(digital_signature, critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    _write_key(directory / f"{stem}-key.pem", key)
    _write_cert(directory / f"{stem}-cert.pem", builder.sign(ca_key, hashes.SHA256()))


def make_tls_set(directory: Path, ca_cn: str, *, server: bool) -> None:
    """A CA (ca.pem, ca-key.pem), a client certificate (cert.pem, key.pem, CN eru-client, clientAuth)
    and, with server, server-cert.pem/server-key.pem (CN localhost, SAN localhost and 127.0.0.1)."""
    ca = make_ca(directory, ca_cn)
    if server:
        san = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        )
        sign_cert(directory, "server", "localhost", ca, ExtendedKeyUsageOID.SERVER_AUTH, san)
    sign_cert(directory, "client", "eru-client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    (directory / "client-cert.pem").replace(directory / "cert.pem")
    (directory / "client-key.pem").replace(directory / "key.pem")


def _make_into(target: Path, ca_cn: str, *, server: bool) -> None:
    """Made in a temporary directory next to target, then renamed: a killed run never leaves half a set."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
    try:
        make_tls_set(tmp, ca_cn, server=server)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_tls(tls_dir: Path) -> None:
    """DIR/tls (CA eru-ca, server and client) and DIR/tls/rogue (CA rogue-ca and a client), each made
    once."""
    if not (tls_dir / "key.pem").is_file():
        _make_into(tls_dir, "eru-ca", server=True)
        log(f"tls: made CA, server and client certificates in {tls_dir}")
    if not (tls_dir / "rogue" / "key.pem").is_file():
        _make_into(tls_dir / "rogue", "rogue-ca", server=False)
