"""Where a client connects and how: arguments first, then SLUICE_* variables, as the CLI does."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from sluice.client import _targets
from sluice.client._targets import Addresses, Target
from sluice.client.errors import SluiceError, from_rpc_error
from sluice.client.tls_probe import explain_unavailable

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


@dataclass(frozen=True, slots=True)
class Connection:
    """A channel with what every call on it sends, shared by WorkflowClient and Worker so both
    connect the same way (addresses, TLS, token, keepalive)."""

    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]
    # Plaintext only: the addresses to probe for TLS when a call fails UNAVAILABLE.
    probe_addresses: tuple[str, ...] = ()

    async def error(self, exc: grpc.RpcError) -> SluiceError:
        """The typed error for a failed call; a plaintext call that reached a TLS server says so."""
        error = from_rpc_error(exc)
        if not self.probe_addresses:
            return error
        return await explain_unavailable(error, self.probe_addresses)


def connect(
    target: Addresses | None,
    *,
    token: str | None,
    ca_file: str | None,
    cert_file: str | None,
    key_file: str | None,
    tls: bool,
    server_name: str | None,
    channel: grpc.aio.Channel | None,
    credentials: grpc.ChannelCredentials | None,
    metadata: Sequence[tuple[str, str]],
    keepalive: float | None,
) -> Connection:
    """The connection the clients' constructor arguments describe (see WorkflowClient)."""
    endpoint = Endpoint.resolve(target, token, ca_file)
    probe: tuple[str, ...] = ()
    if channel is None:
        where = _targets.parse(endpoint.addresses)
        if not endpoint.uses_tls(cert_file=cert_file, tls=tls, credentials=credentials):
            probe = where.addresses
        channel = endpoint.channel(
            where,
            cert_file=cert_file,
            key_file=key_file,
            tls=tls,
            credentials=credentials,
            server_name=server_name,
            keepalive=keepalive,
        )
    return Connection(channel, endpoint.metadata(metadata), probe)


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as file:
        return file.read()
