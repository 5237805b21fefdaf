"""Development PKI: a chain that verifies in a real TLS handshake on loopback, reuse and re-issue rules."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID

from opencomms.auth import DevCertPaths, make_dev_cert

NOW = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _san(path: Path) -> x509.SubjectAlternativeName:
    return _cert(path).extensions.get_extension_for_class(x509.SubjectAlternativeName).value


@pytest.fixture
def paths(tmp_path: Path) -> DevCertPaths:
    return make_dev_cert(tmp_path / "pki")


async def _handshake(paths: DevCertPaths, server_hostname: str) -> bytes:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(paths.cert, paths.key)
    client_ctx = ssl.create_default_context(cafile=str(paths.ca_cert))

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=server_hostname
        )
        try:
            writer.write(b"ping")
            await writer.drain()
            return await reader.readexactly(4)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ssl.SSLError, ConnectionError):
                pass


async def test_tls_handshake_verifies_for_localhost(paths: DevCertPaths) -> None:
    assert await _handshake(paths, "localhost") == b"ping"


async def test_tls_handshake_verifies_for_the_loopback_ip(paths: DevCertPaths) -> None:
    assert await _handshake(paths, "127.0.0.1") == b"ping"


async def test_tls_handshake_refuses_a_name_not_in_the_certificate(paths: DevCertPaths) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(paths, "example.com")


def test_certificate_contents(paths: DevCertPaths) -> None:
    ca, cert = _cert(paths.ca_cert), _cert(paths.cert)
    ca_constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_constraints.critical and ca_constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > timedelta(days=3600)

    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    cert.verify_directly_issued_by(ca)
    assert timedelta(days=360) < cert.not_valid_after_utc - cert.not_valid_before_utc < timedelta(days=370)

    san = _san(paths.cert)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips
    assert ipaddress.ip_address("::1") in ips


def test_private_keys_are_owner_only(paths: DevCertPaths) -> None:
    for key in (paths.key, paths.ca_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not list(paths.cert.parent.glob(".*.tmp"))


def test_second_call_reuses_everything(tmp_path: Path) -> None:
    first = make_dev_cert(tmp_path, now=NOW)
    contents = {p: p.read_bytes() for p in (first.ca_cert, first.ca_key, first.cert, first.key)}
    second = make_dev_cert(tmp_path, now=NOW + timedelta(days=10))
    assert second == first
    assert {p: p.read_bytes() for p in contents} == contents


def test_new_hostnames_reissue_the_server_cert_only(tmp_path: Path) -> None:
    first = make_dev_cert(tmp_path, now=NOW)
    ca_before, cert_before = first.ca_cert.read_bytes(), first.cert.read_bytes()
    make_dev_cert(tmp_path, ["LocalHost", "127.0.0.1", "::1", "bot.test", "[::1]"], now=NOW)
    assert first.ca_cert.read_bytes() == ca_before
    assert first.cert.read_bytes() != cert_before
    assert sorted(_san(first.cert).get_values_for_type(x509.DNSName)) == ["bot.test", "localhost"]
    _cert(first.cert).verify_directly_issued_by(_cert(first.ca_cert))


def test_same_hostnames_in_another_order_are_reused(tmp_path: Path) -> None:
    make_dev_cert(tmp_path, ["localhost", "127.0.0.1"], now=NOW)
    before = (tmp_path / "cert.pem").read_bytes()
    make_dev_cert(tmp_path, ["127.0.0.1", "localhost"], now=NOW)
    assert (tmp_path / "cert.pem").read_bytes() == before


def test_server_cert_near_expiry_is_reissued_with_the_same_ca(tmp_path: Path) -> None:
    paths = make_dev_cert(tmp_path, now=NOW)
    ca_before, cert_before = paths.ca_cert.read_bytes(), paths.cert.read_bytes()
    make_dev_cert(tmp_path, now=NOW + timedelta(days=340))
    assert paths.ca_cert.read_bytes() == ca_before
    assert paths.cert.read_bytes() != cert_before


def test_expired_ca_replaces_the_whole_chain(tmp_path: Path) -> None:
    paths = make_dev_cert(tmp_path, now=NOW)
    ca_before = paths.ca_cert.read_bytes()
    later = NOW + timedelta(days=3650)
    make_dev_cert(tmp_path, now=later)
    assert paths.ca_cert.read_bytes() != ca_before
    _cert(paths.cert).verify_directly_issued_by(_cert(paths.ca_cert))
    assert _cert(paths.cert).not_valid_after_utc > later


def test_damaged_or_mismatched_files_are_replaced(tmp_path: Path) -> None:
    paths = make_dev_cert(tmp_path, now=NOW)
    other = ec.generate_private_key(ec.SECP256R1())
    paths.key.write_bytes(other.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    make_dev_cert(tmp_path, now=NOW)
    cert_key = _cert(paths.cert).public_key()
    assert isinstance(cert_key, ec.EllipticCurvePublicKey)
    assert cert_key.public_numbers() != other.public_key().public_numbers()
    assert stat.S_IMODE(paths.key.stat().st_mode) == 0o600

    paths.cert.write_text("not a certificate")
    make_dev_cert(tmp_path, now=NOW)
    _cert(paths.cert).verify_directly_issued_by(_cert(paths.ca_cert))


def test_server_cert_from_another_ca_is_replaced(tmp_path: Path) -> None:
    mine = make_dev_cert(tmp_path / "a", now=NOW)
    theirs = make_dev_cert(tmp_path / "b", now=NOW)
    mine.cert.write_bytes(theirs.cert.read_bytes())
    mine.key.write_bytes(theirs.key.read_bytes())
    make_dev_cert(tmp_path / "a", now=NOW)
    _cert(mine.cert).verify_directly_issued_by(_cert(mine.ca_cert))


@pytest.mark.parametrize("hostnames", [[], "localhost", ["bad host"], ["émoji.test"], [""]])
def test_unusable_hostnames_are_rejected(tmp_path: Path, hostnames: list[str] | str) -> None:
    with pytest.raises(ValueError):
        make_dev_cert(tmp_path, hostnames)
