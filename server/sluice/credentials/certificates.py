"""Development certificates: a private CA and a server certificate it signs, for TLS on loopback.

The CA's key is not kept: it signs the one server certificate and is gone, so the CA file that
clients trust can vouch for nothing else.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sluice.config import ConfigError

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "server.pem", "server-key.pem"
_HOST_NAME = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
# Clocks a little behind the machine that made the certificate still accept it.
_BACKDATE = dt.timedelta(minutes=5)

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and the key it certifies."""

    key: Key
    certificate: x509.Certificate

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True, slots=True)
class DevelopmentCertificates:
    """The files written, and what the server certificate is good for."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    hosts: tuple[str, ...]
    not_after: dt.datetime


def new_ca(common_name: str, valid_for: dt.timedelta) -> Issued:
    """A self-signed CA certificate (P-256) that may sign leaf certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name)
    certificate = (
        _builder(name, name, key, valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, certificate)


def new_leaf(
    common_name: str,
    ca: Issued,
    *,
    usage: x509.ObjectIdentifier,
    hosts: Sequence[str] = (),
    valid_for: dt.timedelta,
) -> Issued:
    """A certificate signed by `ca` for a server (`hosts` as subject alternative names) or a
    client (`usage` CLIENT_AUTH)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(common_name), ca.certificate.subject, key, valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if hosts:
        names = [_general_name(host) for host in hosts]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def write_development_certificates(
    directory: Path, *, extra_hosts: Sequence[str] = (), days: int = 365, overwrite: bool = False
) -> DevelopmentCertificates:
    """Write ca.pem, server.pem and server-key.pem (readable by the owner only) to `directory`."""
    if not 1 <= days <= 3650:
        raise ConfigError(f"--days {days}: must be 1-3650")
    hosts = tuple(dict.fromkeys([*DEFAULT_HOSTS, *(h.strip().lower() for h in extra_hosts)]))
    for host in hosts:
        _general_name(host)  # refuse a bad --host before writing anything
    paths = [directory / name for name in (CA_FILE, CERT_FILE, KEY_FILE)]
    existing = [str(path) for path in paths if path.exists()]
    if existing and not overwrite:
        raise ConfigError(f"{', '.join(existing)} already exist: pass --force to replace them")
    valid_for = dt.timedelta(days=days)
    ca = new_ca("Sluice development CA", valid_for)
    server = new_leaf(
        hosts[0], ca, usage=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts, valid_for=valid_for
    )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths[0].write_bytes(ca.certificate_pem())
        paths[1].write_bytes(server.certificate_pem())
        _write_private(paths[2], server.key_pem())
    except OSError as error:
        raise ConfigError(f"cannot write to {directory}: {error.strerror}") from None
    ca_file, cert_file, key_file = (path.resolve() for path in paths)
    return DevelopmentCertificates(
        ca_file, cert_file, key_file, hosts, server.certificate.not_valid_after_utc
    )


def _write_private(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)  # an existing file would keep its (maybe wider) mode
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: Key, valid_for: dt.timedelta
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + valid_for)
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.match(host) or len(host) > 253:
        raise ConfigError(f"--host {host!r} is neither an IP address nor a host name")
    return x509.DNSName(host)
