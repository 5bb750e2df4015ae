"""The server's TLS credentials, from the PEM files the operator configured.

The files are read and parsed here, at start: gRPC only finds a bad file when it binds, and
then says "failed to bind" without naming the file.
"""

from __future__ import annotations

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from sluice.config import ConfigError, Settings, read_file


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """None when TLS is off; ConfigError naming the file and the problem when a file is
    missing, unreadable, not PEM, or the key is not the certificate's."""
    if not settings.tls_enabled:
        return None
    chain = read_file("SLUICE_TLS_CERT_FILE", settings.tls_cert_file)
    key = read_file("SLUICE_TLS_KEY_FILE", settings.tls_key_file)
    certificate = _certificates("SLUICE_TLS_CERT_FILE", settings.tls_cert_file, chain)[0]
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"SLUICE_TLS_KEY_FILE {settings.tls_key_file} is not an unencrypted PEM private key"
        ) from None
    if _public(private_key.public_key()) != _public(certificate.public_key()):
        raise ConfigError(
            f"SLUICE_TLS_KEY_FILE {settings.tls_key_file} is not the key of the first "
            f"certificate in SLUICE_TLS_CERT_FILE {settings.tls_cert_file}"
        )
    client_ca = None
    if settings.tls_client_ca_file:
        client_ca = read_file("SLUICE_TLS_CLIENT_CA_FILE", settings.tls_client_ca_file)
        _certificates("SLUICE_TLS_CLIENT_CA_FILE", settings.tls_client_ca_file, client_ca)
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _certificates(variable: str, path: str, pem: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise ConfigError(f"{variable} {path} holds no PEM certificate") from None


def _public(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
