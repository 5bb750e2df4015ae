"""Test credentials made on the spot: JWTs, and a CA with server and client certificates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from sluice.credentials.certificates import new_ca, new_leaf

SECRET = "test-only-hs256-secret-of-32-bytes!"


def token(
    sub: str, *, key: Any = SECRET, algorithm: str = "HS256", expires_in: float = 300, **claims: Any
) -> str:
    now = dt.datetime.now(dt.UTC)
    payload = {"sub": sub, "iat": now, "exp": now + dt.timedelta(seconds=expires_in), **claims}
    return jwt.encode(payload, key, algorithm=algorithm)


def rsa_key_pair(directory: Path) -> tuple[rsa.RSAPrivateKey, Path]:
    """A private key and the path of its PEM public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = directory / "jwt-public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return key, path


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing of ours


def make_pki(directory: Path) -> Pki:
    valid_for = dt.timedelta(days=1)
    ca = new_ca("Sluice test CA", valid_for)
    other = new_ca("Unrelated CA", valid_for)
    server = new_leaf(
        "127.0.0.1", ca, usage=ExtendedKeyUsageOID.SERVER_AUTH,
        hosts=["127.0.0.1", "localhost"], valid_for=valid_for,
    )  # fmt: skip
    client = new_leaf("alice", ca, usage=ExtendedKeyUsageOID.CLIENT_AUTH, valid_for=valid_for)
    files = {
        "ca": ca.certificate_pem(), "server_cert": server.certificate_pem(),
        "server_key": server.key_pem(), "client_cert": client.certificate_pem(),
        "client_key": client.key_pem(), "other_ca": other.certificate_pem(),
    }  # fmt: skip
    paths = {}
    for name, data in files.items():
        paths[name] = directory / f"{name}.pem"
        paths[name].write_bytes(data)
    return Pki(**paths)


def tls_settings(pki: Pki, *, mutual: bool = False) -> dict[str, Any]:
    """Server settings for TLS with the PKI's server certificate; `mutual` also requires client
    certificates signed by its CA."""
    settings: dict[str, Any] = {
        "tls_cert_file": str(pki.server_cert),
        "tls_key_file": str(pki.server_key),
    }
    if mutual:
        settings["tls_client_ca_file"] = str(pki.ca)
    return settings
