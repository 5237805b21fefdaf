"""Local development PKI: a private CA and a loopback server certificate, so https-only clients (MSAL) work.

Owns creating, reusing and re-issuing these files; must not touch system trust stores
or be used in production.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["DevCertPaths", "make_dev_cert"]

_CA_VALIDITY = timedelta(days=3650)
_CERT_VALIDITY = timedelta(days=365)
_BACKDATE = timedelta(hours=1)  # tolerate small clock differences between processes and containers
_RENEW_BEFORE = timedelta(days=30)  # re-issue a certificate this close to its expiry
_ORGANIZATION = "opencomms development"


@dataclass(frozen=True)
class DevCertPaths:
    """Where the development CA and server certificate live (PEM files)."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


_Pair = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def make_dev_cert(
    directory: Path,
    hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    *,
    now: datetime | None = None,
) -> DevCertPaths:
    """Create or reuse ``ca.pem``/``ca-key.pem`` and ``cert.pem``/``key.pem`` in ``directory``.

    The server certificate is re-issued when missing, invalid, near expiry, not issued by the CA, or when its
    subject alternative names differ from ``hostnames``. Private keys are written with mode 0600.
    """
    names = _general_names(hostnames)
    moment = datetime.now(UTC) if now is None else now if now.tzinfo else now.replace(tzinfo=UTC)
    directory.mkdir(parents=True, exist_ok=True)
    paths = DevCertPaths(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca-key.pem",
        cert=directory / "cert.pem",
        key=directory / "key.pem",
    )
    ca = _load_pair(paths.ca_cert, paths.ca_key)
    if ca is None or not _is_current(ca[0], moment):
        ca = _new_ca(moment)
        _write_pair(ca, paths.ca_cert, paths.ca_key)
        server = None
    else:
        server = _load_pair(paths.cert, paths.key)
    if server is None or not _server_matches(server[0], ca[0], names, moment):
        _write_pair(_new_server_cert(ca, names, moment), paths.cert, paths.key)
    return paths


def _general_names(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    if isinstance(hostnames, str) or not hostnames:
        raise ValueError("hostnames must be a non-empty sequence of names or IP addresses")
    names: list[x509.GeneralName] = []
    for raw in hostnames:
        host = raw.strip().strip("[]")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
            continue
        except ValueError:
            pass
        if not host or not host.isascii() or any(c.isspace() for c in host):
            raise ValueError(f"not a usable DNS name or IP address: {raw!r}")
        names.append(x509.DNSName(host.lower()))
    return list(dict.fromkeys(names))


def _load_pair(cert_path: Path, key_path: Path) -> _Pair | None:
    """The certificate and its matching EC key, or None if either is missing, unreadable or mismatched."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or _spki(key.public_key()) != _spki(cert.public_key()):
        return None
    return cert, key


def _spki(public_key: object) -> bytes:
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return b""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_current(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + _RENEW_BEFORE < cert.not_valid_after_utc


def _server_matches(cert: x509.Certificate, ca: x509.Certificate, names: list[x509.GeneralName], now: datetime) -> bool:
    if not _is_current(cert, now):
        return False
    try:
        cert.verify_directly_issued_by(ca)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return set(san) == set(names)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _new_ca(now: datetime) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("opencomms development CA")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _new_server_cert(ca: _Pair, names: list[x509.GeneralName], now: datetime) -> _Pair:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0]
    common_name = str(first.value)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write_pair(pair: _Pair, cert_path: Path, key_path: Path) -> None:
    cert, key = pair
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_file(key_path, key_pem, 0o600)
    _write_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    """Write atomically; the temporary file gets ``mode`` before any byte is written."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        os.chmod(tmp, mode)  # O_CREAT's mode does not apply to a leftover temporary file
        file.write(data)
    os.replace(tmp, path)
