"""The TLS material of embedded.tls: what the certificates say, that they chain (or, for the rogue
client, do not) to the CA, and that a real mutual-TLS handshake accepts ours and refuses the rogue."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from embedded import tls


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "tls"
    tls.ensure_tls(path)
    return path


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_files_and_key_modes(tls_dir: Path) -> None:
    for name in ("ca.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem"):
        assert (tls_dir / name).is_file(), name
    for name in ("ca.pem", "cert.pem", "key.pem"):
        assert (tls_dir / "rogue" / name).is_file(), name
    keys = [*tls_dir.glob("*key.pem"), *(tls_dir / "rogue").glob("*key.pem")]
    assert len(keys) == 5  # ca-key, server-key, key; rogue ca-key, key
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_ca(tls_dir: Path) -> None:
    ca = load(tls_dir / "ca.pem")
    assert cn(ca) == "eru-ca"
    assert ca.issuer == ca.subject
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical
    assert usage.value.key_cert_sign
    assert usage.value.crl_sign
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days == tls.VALID_DAYS
    ca.verify_directly_issued_by(ca)


def test_server_certificate_chains_to_the_ca_with_san_and_eku(tls_dir: Path) -> None:
    ca, server = load(tls_dir / "ca.pem"), load(tls_dir / "server-cert.pem")
    server.verify_directly_issued_by(ca)
    assert cn(server) == "localhost"
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    public = server.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert (server.not_valid_after_utc - server.not_valid_before_utc).days == tls.VALID_DAYS


def test_client_certificate_chains_to_the_ca_with_client_auth(tls_dir: Path) -> None:
    ca, client = load(tls_dir / "ca.pem"), load(tls_dir / "cert.pem")
    client.verify_directly_issued_by(ca)
    assert cn(client) == "eru-client"
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_rogue_client_is_not_signed_by_the_ca(tls_dir: Path) -> None:
    ca, rogue = load(tls_dir / "ca.pem"), load(tls_dir / "rogue" / "cert.pem")
    assert cn(load(tls_dir / "rogue" / "ca.pem")) == "rogue-ca"
    rogue.verify_directly_issued_by(load(tls_dir / "rogue" / "ca.pem"))
    with pytest.raises((ValueError, InvalidSignature)):
        rogue.verify_directly_issued_by(ca)
    assert not (tls_dir / "rogue" / "server-cert.pem").exists()


def handshake(tls_dir: Path, cert: Path, key: Path) -> tuple[bool, bytes]:
    """A server like dockerd --tlsverify (client certificate required, our CA) on a loopback port;
    returns whether the server accepted the client and what the client read."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tls_dir / "server-cert.pem", tls_dir / "server-key.pem")
    server_ctx.load_verify_locations(tls_dir / "ca.pem")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(tls_dir / "ca.pem"))
    client_ctx.load_cert_chain(cert, key)
    accepted: list[bool] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]

        def serve() -> None:
            conn, _ = listener.accept()
            try:
                with server_ctx.wrap_socket(conn, server_side=True) as tls_conn:
                    tls_conn.sendall(b"ok")
                    accepted.append(True)
            except (ssl.SSLError, OSError):
                accepted.append(False)

        thread = threading.Thread(target=serve)
        thread.start()
        data = b""
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname="localhost") as conn,
            ):
                data = conn.recv(2)
        except (ssl.SSLError, OSError):
            pass
        thread.join(10)
    return accepted == [True], data


def test_mutual_tls_accepts_our_client_and_refuses_the_rogue(tls_dir: Path) -> None:
    assert handshake(tls_dir, tls_dir / "cert.pem", tls_dir / "key.pem") == (True, b"ok")
    ok, data = handshake(tls_dir, tls_dir / "rogue" / "cert.pem", tls_dir / "rogue" / "key.pem")
    assert not ok
    assert data == b""


def test_ensure_tls_makes_each_set_once(tmp_path: Path) -> None:
    target = tmp_path / "tls"
    tls.ensure_tls(target)
    ca, rogue_ca = (target / "ca.pem").read_bytes(), (target / "rogue" / "ca.pem").read_bytes()
    tls.ensure_tls(target)
    assert (target / "ca.pem").read_bytes() == ca
    (target / "rogue" / "key.pem").unlink()  # only the rogue set is made again
    tls.ensure_tls(target)
    assert (target / "ca.pem").read_bytes() == ca
    assert (target / "rogue" / "ca.pem").read_bytes() != rogue_ca
    (target / "key.pem").unlink()  # a new CA: everything is made again
    tls.ensure_tls(target)
    assert (target / "ca.pem").read_bytes() != ca
    assert (target / "rogue" / "key.pem").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["tls"]  # no temporary directory left
