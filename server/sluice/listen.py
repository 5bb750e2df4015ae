"""The server's own address: refused when something already listens there.

gRPC sets SO_REUSEPORT on its listening sockets by default, so a second server on a port in
use binds too and the kernel splits the calls between the two. The server turns that off
(`GRPC_OPTIONS`), which makes gRPC's bind fail; but gRPC only says that it failed (and logs a
line of its own), so the address is first tried here with a plain socket, which says why.
"""

from __future__ import annotations

import errno
import socket

from sluice.config import ConfigError

# A second server on a port in use must fail to bind, not share the port's calls.
GRPC_OPTIONS = [("grpc.so_reuseport", 0)]

_WHAT_TO_DO = "choose another address with --listen / SLUICE_LISTEN"


def check_free(listen: str) -> None:
    """Raise ConfigError saying why `listen` (host:port) cannot be listened on, if it cannot.
    Port 0 asks for any free port, which is always possible."""
    host, _, port_text = listen.rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except ValueError:
        raise ConfigError(f"cannot listen on {listen}: the address must be host:port") from None
    except socket.gaierror as error:
        raise ConfigError(f"cannot listen on {listen}: {error.strerror}; {_WHAT_TO_DO}") from None
    if port == 0:
        return
    failures: list[OSError] = []
    for family, kind, protocol, _, address in addresses:
        with socket.socket(family, kind, protocol) as probe:
            # As gRPC does: connections a stopped server left in TIME_WAIT do not count.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as error:
                failures.append(error)
    # A name may resolve to several addresses (localhost: 127.0.0.1 and ::1); gRPC serves on
    # those it can bind, so only a port in use on one of them, or all failing, refuses.
    in_use = [f for f in failures if f.errno == errno.EADDRINUSE]
    if in_use or (failures and len(failures) == len(addresses)):
        raise ConfigError(cannot_listen(listen, (in_use or failures)[0]))


def cannot_listen(listen: str, error: OSError | None) -> str:
    """Why the server cannot listen on `listen` and what to do; `error` is the bind's, or None
    when only gRPC failed to bind (it does not say why)."""
    code = error.errno if error is not None else None
    what_to_do = _WHAT_TO_DO
    if code == errno.EADDRINUSE:
        reason = "another process is already listening there (another Sluice server?)"
        what_to_do = f"stop it, or {_WHAT_TO_DO}"
    elif code == errno.EADDRNOTAVAIL:
        reason = "it is not an address of this machine"
    elif code == errno.EACCES:
        reason = "permission denied (ports below 1024 need privileges)"
    elif error is not None:
        reason = error.strerror or str(error)
    else:
        reason = "gRPC could not bind it (is another process listening there?)"
    return f"cannot listen on {listen}: {reason}; {what_to_do}"
