"""The web view's HTTP server: POST is gRPC-Web (the adapter), GET the app's files."""

from __future__ import annotations

import ssl

from aiohttp import web

from sluice import config
from sluice.web.assets import Assets
from sluice.web.grpc_web import GrpcWebProxy


class WebSite:
    """The HTTP server on SLUICE_HTTP_LISTEN; `address` is where it listens once started."""

    def __init__(self, proxy: GrpcWebProxy, assets: Assets, *, max_message_bytes: int) -> None:
        self._proxy = proxy
        # A request body is one message and its 5-byte frame header.
        app = web.Application(client_max_size=max_message_bytes + 5)
        app.router.add_post("/{path:.*}", proxy.handle)
        app.router.add_get("/{path:.*}", assets.handle)
        # handler_cancellation: a browser that goes away cancels its handler, and with it
        # the upstream call (a watch would otherwise stay open until its run ends).
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        self.address = ""

    async def start(self, listen: str, tls: ssl.SSLContext | None) -> str:
        await self._runner.setup()
        host, port = listen.rsplit(":", 1)
        site = web.TCPSite(self._runner, host.strip("[]"), int(port), ssl_context=tls)
        try:
            await site.start()
        except OSError as error:
            await self._runner.cleanup()
            raise config.ConfigError(
                f"cannot listen on {listen} (SLUICE_HTTP_LISTEN): {error.strerror}"
            ) from None
        bound = self._runner.addresses[0][1] if self._runner.addresses else int(port)
        self.address = f"{host}:{bound}"
        return self.address

    async def stop(self) -> None:
        self._proxy.close()  # open watches end now rather than at the shutdown timeout
        await self._runner.cleanup()


def tls_context(settings: config.Settings) -> ssl.SSLContext | None:
    """HTTPS with the gRPC server's certificate when TLS is on (and the same client CA for
    mutual TLS): the browser's token must not cross the network in the clear either."""
    if not settings.tls_enabled:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    if settings.tls_client_ca_file:
        context.load_verify_locations(settings.tls_client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
