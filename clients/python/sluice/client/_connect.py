"""Where a client connects and how: arguments first, then SLUICE_* variables, as the CLI does."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from sluice.client._targets import Addresses, Target

DEFAULT_TARGET = "127.0.0.1:50051"
ADDRESS_ENV = "SLUICE_ADDRESS"
TOKEN_ENV = "SLUICE_TOKEN"
CA_FILE_ENV = "SLUICE_CA_FILE"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The servers to call (one address, several, or a DNS name), the TLS roots to trust
    (None: plaintext) and the token."""

    addresses: Addresses
    token: str
    ca_file: str

    @classmethod
    def resolve(
        cls,
        target: Addresses | None,
        token: str | None,
        ca_file: str | None,
        env: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """None takes the environment's value; an explicit value, even "", wins over it."""
        env = os.environ if env is None else env
        return cls(
            target if target is not None else env.get(ADDRESS_ENV) or DEFAULT_TARGET,
            token if token is not None else env.get(TOKEN_ENV, ""),
            ca_file if ca_file is not None else env.get(CA_FILE_ENV, ""),
        )

    def metadata(self, extra: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        auth = (("authorization", f"Bearer {self.token}"),) if self.token else ()
        return (*auth, *extra)

    def uses_tls(
        self, *, cert_file: str | None, tls: bool, credentials: grpc.ChannelCredentials | None
    ) -> bool:
        return credentials is not None or tls or bool(self.ca_file or cert_file)

    def channel(
        self,
        target: Target,
        *,
        cert_file: str | None,
        key_file: str | None,
        tls: bool,
        credentials: grpc.ChannelCredentials | None,
        server_name: str | None,
        keepalive: float | None,
    ) -> grpc.aio.Channel:
        options = target.channel_options(server_name, keepalive)
        if credentials is None and self.uses_tls(cert_file=cert_file, tls=tls, credentials=None):
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(self.ca_file),
                private_key=_read(key_file),
                certificate_chain=_read(cert_file),
            )
        if credentials is None:
            return grpc.aio.insecure_channel(target.uri, options=options)
        return grpc.aio.secure_channel(target.uri, credentials, options=options)


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()
