"""Wiring and process entry point: store + steps + engine + gRPC server, started and stopped
cleanly (SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sluice import config, plugins
from sluice.api.auth import JwtVerifier
from sluice.api.guard import Guard
from sluice.api.servicer import WorkflowServicer
from sluice.engine.catalog import TemplateCatalog
from sluice.engine.handlers import HandlerRegistry
from sluice.engine.ports import Clock, SystemClock
from sluice.engine.runner import Engine, EngineSettings, Sleep
from sluice.engine.service import Workflows
from sluice.runtime.janitor import Housekeeping, Janitor
from sluice.steps import builtin_registry
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList
from sluice.store.migrate import SchemaError
from sluice.store.sql_store import SqlStore
from sluice.templates import load_predefined
from sluice.v1 import workflow_service_pb2, workflow_service_pb2_grpc

log = logging.getLogger("sluice")

SERVICE_NAME = workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name


class SluiceServer:
    """One server process's parts. `start()` binds and recovers; `stop()` undoes it."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        registry: HandlerRegistry | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        config.check(settings)
        self.settings = settings
        self.verifier = JwtVerifier.from_settings(
            secret=settings.auth_jwt_secret,
            public_key_file=settings.auth_jwt_public_key_file,
            algorithms=settings.auth_jwt_algorithms,
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
        )
        # One client for every outgoing request of the server's steps, closed by stop().
        self.http = HttpClient(
            WebhookAllowList.parse(settings.webhook_allow),
            timeout_seconds=settings.http_timeout.total_seconds(),
            max_connections=settings.http_connections,
            max_response_bytes=settings.http_max_response_bytes,
        )
        self.registry = registry or builtin_registry(self.http)
        plugins.load(settings.plugins, self.registry)
        self.clock = clock or SystemClock()
        self._sleep = sleep
        self.port = 0
        self.store: SqlStore | None = None
        self.engine: Engine | None = None
        self.janitor: Janitor | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._stopped = False

    async def start(self) -> int:
        self.store = await SqlStore.open(self.settings.database_url, migrate=self.settings.migrate)
        self.engine = Engine(
            self.store,
            self.registry,
            settings=EngineSettings(
                max_parallel_steps_per_run=self.settings.max_parallel_steps_per_run,
                max_concurrent_steps=self.settings.max_concurrent_steps,
                default_step_timeout=self.settings.default_step_timeout,
                max_watchers_per_run=self.settings.max_watchers_per_run,
                max_output_bytes=self.settings.max_step_output_bytes,
            ),
            clock=self.clock,
            sleep=self._sleep,
        )
        catalog = TemplateCatalog(self.store, load_predefined(), self.registry, self.clock)
        workflows = Workflows(
            catalog, self.engine, max_active_runs_per_user=self.settings.max_active_runs_per_user
        )
        servicer = WorkflowServicer(
            workflows, self.clock, max_message_bytes=self.settings.max_message_bytes
        )

        limit = self.settings.max_message_bytes
        server = grpc.aio.server(
            interceptors=[Guard(self.verifier)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ],
        )
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        credentials = _server_credentials(self.settings)
        self.port = (
            server.add_secure_port(self.settings.listen, credentials)
            if credentials is not None
            else server.add_insecure_port(self.settings.listen)
        )
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.listen}")
        await server.start()
        self._server = server
        await self.engine.recover()
        self.janitor = Janitor(
            self.store,
            self.engine,
            self.clock,
            Housekeeping(
                pending_expiry=self.settings.pending_expiry,
                retention=self.settings.retention,
                interval=self.settings.housekeeping_interval,
            ),
        )
        if self.janitor.settings.enabled:
            self._housekeeping = asyncio.create_task(self.janitor.run(), name="housekeeping")
        for name in ("", SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "sluice serving on %s (store %s, %s, %s)",
            self.address,
            _redact(self.settings.database_url),
            "mutual TLS"
            if self.settings.tls_client_ca_file
            else "TLS"
            if credentials
            else "plaintext",
            "JWT authentication" if self.verifier else "no authentication: single local user",
        )
        return self.port

    @property
    def address(self) -> str:
        host = self.settings.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    async def stop(self) -> None:
        """Stop taking calls, let in-flight ones finish within the grace period, stop steps
        (a restart resumes them), close the store. Calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        await self._health.enter_graceful_shutdown()
        grace = self.settings.shutdown_grace.total_seconds()
        # New calls are refused at once; in-flight calls and running steps share the grace.
        server_stopped = (
            asyncio.ensure_future(self._server.stop(grace)) if self._server is not None else None
        )
        if self.engine is not None:
            await self.engine.drain(grace)
        if server_stopped is not None:
            await server_stopped
        await self.http.aclose()
        if self.store is not None:
            await self.store.close()


async def serve(settings: config.Settings) -> None:
    server = SluiceServer(settings)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """`sluice-server`: settings from flags and the environment, then `run`."""
    run(config.parse(argv))


def run(settings: config.Settings) -> None:
    """Serve until SIGINT or SIGTERM (`sluice-server` and `sluice serve`)."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _tune_gc(settings.gc_threshold)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings))
    except SchemaError as error:
        log.error("%s", error)
        raise SystemExit(2) from None


def _tune_gc(threshold: int) -> None:
    """The cyclic garbage collector took about 15 % of the server's time under load (py-spy),
    most of it in full collections walking every object loaded at import (SQLAlchemy, gRPC,
    protobuf descriptors). Freezing those leaves them out of every collection, and a larger
    young generation makes collections rarer; cyclic garbage (tasks, tracebacks) is still
    collected, only in larger batches. Measured in bench/README.md's throughput scenario."""
    gc.freeze()
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])


def _server_credentials(settings: config.Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_enabled:
        return None
    key = Path(settings.tls_key_file).read_bytes()
    chain = Path(settings.tls_cert_file).read_bytes()
    client_ca = (
        Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    main()
