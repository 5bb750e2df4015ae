"""Telling a plaintext client that it reached a TLS server.

gRPC reports a plaintext call to a TLS port as UNAVAILABLE "Socket closed", which reads like a
server that is down. After such a failure the client tries a TLS handshake with the address (no
certificate checks: it only asks whether the other end speaks TLS) and, if it does, says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Sequence

from sluice.client.errors import SluiceError, UnavailableError

# Long enough for a handshake with a server across a network, short enough not to add much to
# an error the caller is already waiting for.
PROBE_TIMEOUT_SECONDS = 1.0
_HOST_PORT = re.compile(
    r"^(?:dns:(?://[^/]*/)?)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d{1,5})$"
)


class ServerSpeaksTlsError(UnavailableError):
    """A plaintext call reached a server that expects TLS."""


async def explain_unavailable(error: SluiceError, addresses: Sequence[str]) -> SluiceError:
    """`error`, or a ServerSpeaksTlsError when it is UNAVAILABLE and one of `addresses` (probed
    at once, in parallel) speaks TLS."""
    if type(error) is not UnavailableError:
        return error
    answers = await asyncio.gather(*(speaks_tls(address) for address in addresses))
    tls = [address for address, speaks in zip(addresses, answers, strict=True) if speaks]
    if not tls:
        return error
    return ServerSpeaksTlsError(
        f"the server at {tls[0]} speaks TLS: pass --ca-file / SLUICE_CA_FILE (or tls=True)"
    )


async def speaks_tls(target: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> bool:
    """Whether a TLS handshake with `target` (host:port, [v6]:port, dns:host:port) gets a TLS
    answer. Other target forms (unix:, ipv4: lists) are not probed."""
    match = _HOST_PORT.match(target.strip())
    if match is None:
        return False
    host = match["v6"] or match["host"]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, int(match["port"]), ssl=context), timeout
        )
    except ssl.SSLError as error:
        # An alert is a TLS answer (a server that wants a client certificate sends one); a
        # plaintext server's bytes fail as WRONG_VERSION_NUMBER or the like instead.
        return "ALERT" in (error.reason or "")
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True
