"""Wiring and process entry point: store + steps + engine + gRPC server, started and stopped
cleanly (SIGINT/SIGTERM)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
import structlog
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import propagate, trace

from sluice import config, listen, plugins
from sluice.api.auth import JwtVerifier
from sluice.api.guard import Guard
from sluice.api.schedule_servicer import ScheduleServicer
from sluice.api.servicer import WorkflowServicer
from sluice.api.tls import server_credentials
from sluice.api.watch_limit import WatchLimit, backlog_options
from sluice.api.worker_servicer import WorkerServicer
from sluice.engine.catalog import TemplateCatalog
from sluice.engine.handlers import HandlerRegistry
from sluice.engine.ports import Clock, SystemClock
from sluice.engine.schedule_service import Schedules
from sluice.engine.service import Workflows
from sluice.engine.validation import TemplateLimits
from sluice.observability import logs, metrics, run_log
from sluice.observability.otel_env import exporter_names
from sluice.runtime.analytics import fold_forever
from sluice.runtime.cluster import ATTEMPTS, COMMANDS, EVENTS, TASKS, Cluster, ClusterSettings
from sluice.runtime.driver import Engine, EngineSettings, Sleep
from sluice.runtime.idle_gc import collect_when_idle
from sluice.runtime.janitor import Housekeeping, Janitor
from sluice.runtime.probes import NO_PROBES
from sluice.runtime.schedules import ScheduleRunner
from sluice.runtime.tasks import TaskSettings
from sluice.steps import builtin_registry
from sluice.steps.http_client import HttpClient
from sluice.steps.webhook import WebhookAllowList
from sluice.store import urls
from sluice.store.base import SqlStore
from sluice.store.errors import StoreSetupError
from sluice.store.factory import open_store
from sluice.store.postgres import PostgresStore
from sluice.store.postgres_leases import PostgresLeases
from sluice.store.postgres_notify import PostgresNotifier, channel_name
from sluice.store.schedules import SqlScheduleStore
from sluice.store.sqlite_file import ServerLock
from sluice.store.urls import describe
from sluice.templates import load_predefined
from sluice.v1 import (
    schedule_service_pb2,
    schedule_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
    workflow_service_pb2,
    workflow_service_pb2_grpc,
)
from sluice.web import assets
from sluice.web.grpc_web import GrpcWebProxy, sluice_methods
from sluice.web.loopback import LoopbackSocket
from sluice.web.site import WebSite, tls_context

if TYPE_CHECKING:
    from sluice.observability.tracing import Tracing

log = structlog.get_logger("sluice.server")

# Start-up failures that are the operator's to fix: one line saying what to do, exit 2.
OPERATOR_ERRORS = (config.ConfigError, StoreSetupError)

SERVICE_NAME = workflow_service_pb2.DESCRIPTOR.services_by_name["WorkflowService"].full_name
WORKER_SERVICE_NAME = worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name
SCHEDULE_SERVICE_NAME = schedule_service_pb2.DESCRIPTOR.services_by_name[
    "ScheduleService"
].full_name


class SluiceServer:
    """One server process's parts. `start()` binds and recovers; `stop()` undoes it."""

    def __init__(
        self,
        settings: config.Settings,
        *,
        registry: HandlerRegistry | None = None,
        clock: Clock | None = None,
        sleep: Sleep = asyncio.sleep,
        tracing: Tracing | None = None,
    ) -> None:
        """`tracing`: spans of calls, runs and step attempts (None: not traced). The process's
        entry point makes it from the OTEL_* variables (and shuts it down); a test may give
        one with an in-memory exporter."""
        config.check(settings)
        self.settings = settings
        self.tracing = tracing
        self.verifier = JwtVerifier.from_settings(settings)
        self.credentials = server_credentials(settings)
        # One client for every outgoing request of the server's steps, closed by stop().
        self.http = HttpClient(
            _allow_list(settings),
            timeout_seconds=settings.http_timeout.total_seconds(),
            max_connections=settings.http_connections,
            max_response_bytes=settings.http_max_response_bytes,
            inject=propagate.inject if tracing is not None else None,
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
        self._idle_gc: asyncio.Task[None] | None = None
        self._analytics: asyncio.Task[None] | None = None
        self.metrics = metrics.Metrics()
        self._metrics_runner: web.AppRunner | None = None
        self.metrics_address = ""
        # The web view (SLUICE_HTTP_LISTEN): its HTTP server, and the private socket and
        # channel its gRPC-Web adapter forwards calls through.
        self._web: WebSite | None = None
        self._loopback: LoopbackSocket | None = None
        self._loopback_channel: grpc.aio.Channel | None = None
        self.http_address = ""
        self.schedule_runner: ScheduleRunner | None = None
        self._schedules_task: asyncio.Task[None] | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._stopped = False
        self._sqlite_lock: ServerLock | None = None

    async def start(self) -> int:
        # The port first: a server that cannot listen must not touch (or migrate) a database.
        server = self._server = self._bind()
        self.store = await open_store(self.settings.database_url, migrate=self.settings.migrate)
        sqlite = urls.sqlite_path(urls.normalize(self.settings.database_url))
        if sqlite is not None:
            self._sqlite_lock = ServerLock(sqlite)
            self._sqlite_lock.acquire()
        metered = bool(self.settings.metrics_listen)
        if metered:
            self.store.probe_commits(self.metrics.batch_committed)
        self.engine = Engine(
            self.store,
            self.registry,
            settings=EngineSettings(
                max_parallel_steps_per_run=self.settings.max_parallel_steps_per_run,
                max_concurrent_steps=self.settings.max_concurrent_steps,
                default_step_timeout=self.settings.default_step_timeout,
                max_watchers_per_run=self.settings.max_watchers_per_run,
                max_output_bytes=self.settings.max_step_output_bytes,
                tasks=TaskSettings(
                    schedule_to_start=self.settings.task_schedule_to_start,
                    ack_window=self.settings.task_ack_timeout,
                    default_timeout=self.settings.default_step_timeout,
                    max_input_bytes=self.settings.max_message_bytes - 64 * 1024,
                ),
            ),
            clock=self.clock,
            sleep=self._sleep,
            # Metrics are counted only when something serves them, and spans made only when
            # traced: no work on every commit else.
            on_committed=[run_log.committed]
            + ([self.metrics.committed] if metered else [])
            + ([self.tracing.committed] if self.tracing is not None else []),
            cluster=self._cluster(self.store) if sqlite is None else None,
            probes=self.metrics if metered else NO_PROBES,
            tracing=self.tracing,
        )
        catalog = TemplateCatalog(
            self.store,
            load_predefined(),
            self.registry,
            self.clock,
            TemplateLimits(max_steps=self.settings.max_template_steps),
            shared=sqlite is None,
        )
        workflows = Workflows(
            catalog, self.engine, max_active_runs_per_user=self.settings.max_active_runs_per_user
        )
        watch_limit = WatchLimit(self.settings.max_watchers)
        servicer = WorkflowServicer(
            workflows,
            self.clock,
            max_message_bytes=self.settings.max_message_bytes,
            watch_limit=watch_limit,
        )
        if metered:
            queues = self.engine.task_queue
            self.metrics.follow(
                self.engine.driven_runs,
                lambda: queues.stats(None),
                lambda: watch_limit.open,
                self.clock.now,
            )
        workflow_service_pb2_grpc.add_WorkflowServiceServicer_to_server(servicer, server)
        worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
            WorkerServicer(
                self.engine.task_queue,
                self.clock,
                max_output_bytes=self.settings.max_step_output_bytes,
            ),
            server,
        )
        schedule_service_pb2_grpc.add_ScheduleServiceServicer_to_server(
            ScheduleServicer(self._schedules(workflows, shared=sqlite is None)), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (
                SERVICE_NAME,
                WORKER_SERVICE_NAME,
                SCHEDULE_SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        await server.start()
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
        self._idle_gc = asyncio.create_task(collect_when_idle(), name="idle-gc")
        self._analytics = asyncio.create_task(fold_forever(self.store), name="analytics-fold")
        if self.settings.metrics_listen:
            self._metrics_runner, self.metrics_address = await metrics.serve(
                self.metrics, self.settings.metrics_listen
            )
            log.info(f"metrics on http://{self.metrics_address}/metrics")
        if self._loopback is not None:
            await self._serve_web(self._loopback)
        assert self.schedule_runner is not None
        self._schedules_task = asyncio.create_task(self.schedule_runner.run(), name="schedules")
        for name in ("", SERVICE_NAME, WORKER_SERVICE_NAME, SCHEDULE_SERVICE_NAME):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            f"sluice serving on {self.address}",
            address=self.address,
            database=describe(self.settings.database_url),
            transport="mutual TLS"
            if self.settings.tls_client_ca_file
            else "TLS"
            if self.credentials
            else "plaintext",
            authentication="JWT" if self.verifier else "none: single local user",
        )
        return self.port

    async def _serve_web(self, loopback: LoopbackSocket) -> None:
        limit = self.settings.max_message_bytes
        self._loopback_channel = loopback.channel(limit)
        self._web = WebSite(
            GrpcWebProxy(self._loopback_channel, sluice_methods()),
            assets.Assets(),
            max_message_bytes=limit,
        )
        tls = tls_context(self.settings)
        self.http_address = await self._web.start(self.settings.http_listen, tls)
        scheme = "https" if tls else "http"
        log.info(f"web view on {scheme}://{self.http_address}/", address=self.http_address)
        if not assets.built():
            log.warning(assets.NOT_BUILT)

    def _schedules(self, workflows: Workflows, *, shared: bool) -> Schedules:
        """The schedules and this server's loop over them. Shared (PostgreSQL): the loop
        looks again at every lease renewal (another server may have created or resumed a
        schedule) and takes over slots another server claimed and left PENDING for a lease's
        lifetime. Alone: a slot left PENDING at start is this server's own, from before a
        crash; one left later (the store failed as it was recorded) is taken after 60 s."""
        assert self.store is not None
        store = SqlScheduleStore(self.store.executor)
        self.schedule_runner = ScheduleRunner(
            store,
            workflows,
            self.clock,
            sleep=self._sleep,
            recheck=self.settings.lease_renew if shared else timedelta(seconds=60),
            stale_after=self.settings.lease_ttl if shared else timedelta(seconds=60),
            alone=not shared,
        )
        return Schedules(store, workflows, self.schedule_runner, self.clock)

    def _cluster(self, store: SqlStore) -> Cluster:
        """Leases and notices: several servers may share this database (PostgreSQL)."""
        assert isinstance(store, PostgresStore), "only PostgreSQL is shared by servers"
        settings = ClusterSettings(
            lease_ttl=self.settings.lease_ttl,
            renew_every=self.settings.lease_renew,
            max_runs=self.settings.max_runs_per_server,
        )
        server_id = uuid.uuid4().hex[:16]
        notifier = PostgresNotifier(
            urls.normalize(self.settings.database_url),
            server_id,
            (EVENTS, COMMANDS, TASKS, ATTEMPTS),
        )
        leases = PostgresLeases(store, urls.normalize(self.settings.database_url))
        # In each commit's transaction, not one more each.
        store.carry_notices(channel_name(EVENTS), server_id)
        return Cluster(leases, notifier, settings, server_id, commits_notify=True)

    def _bind(self) -> grpc.aio.Server:
        """A gRPC server bound to the configured address, not yet started; ConfigError
        saying why when the address cannot be listened on (in use, not this machine's)."""
        listen.check_free(self.settings.listen)
        limit = self.settings.max_message_bytes
        # The gRPC metrics first: they count the calls the Guard refuses too; then the span of
        # the call, so a call the guard refuses is traced too.
        metered = [self.metrics.grpc] if self.settings.metrics_listen else []
        traced = [self.tracing.rpc_interceptor()] if self.tracing is not None else []
        server = grpc.aio.server(
            interceptors=[*metered, *traced, Guard(self.verifier)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                *backlog_options(self.settings.max_watchers),
                *listen.GRPC_OPTIONS,
                *KEEPALIVE_OPTIONS,
            ],
        )
        address = self.settings.listen
        try:
            self.port = (
                server.add_secure_port(address, self.credentials)
                if self.credentials is not None
                else server.add_insecure_port(address)
            )
        except RuntimeError:  # taken since check_free looked
            self.port = 0
        if self.port == 0:
            raise config.ConfigError(listen.cannot_listen(address, None))
        if self.settings.http_listen:
            self._loopback = LoopbackSocket()
            server.add_insecure_port(self._loopback.address)
        return server

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
        for task in (self._housekeeping, self._schedules_task, self._idle_gc, self._analytics):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()
        if self._web is not None:
            await self._web.stop()
        if self._loopback_channel is not None:
            await self._loopback_channel.close()
        await self._health.enter_graceful_shutdown()
        if self.engine is not None:
            self.engine.task_queue.close_sessions()  # their workers go on elsewhere, at once
        grace = self.settings.shutdown_grace.total_seconds()
        # New calls are refused at once; in-flight calls and running steps share the grace.
        server_stopped = (
            asyncio.ensure_future(self._server.stop(grace)) if self._server is not None else None
        )
        if self.engine is not None:
            await self.engine.drain(grace)
        if server_stopped is not None:
            await server_stopped
        if self._loopback is not None:
            self._loopback.remove()
        await self.http.aclose()
        if self.store is not None:
            await self.store.close()
        if self._sqlite_lock is not None:
            self._sqlite_lock.release()


async def serve(settings: config.Settings, tracing: Tracing | None = None) -> None:
    server = SluiceServer(settings, tracing=tracing)
    try:
        await server.start()
    except BaseException:
        await server.stop()
        raise
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    if tracing is not None:
        await asyncio.to_thread(tracing.shutdown)  # the spans still queued are exported
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    """`sluice-server`: settings from flags and the environment, then `run`. A setting the
    operator must fix ends the process with one line and exit code 2."""
    try:
        settings = config.parse(argv)
    except config.ConfigError as error:
        print(f"error: {error}", file=sys.stderr)  # logging is not set up yet
        raise SystemExit(2) from None
    run(settings)


# Clients ping while their calls are in flight, to notice a server that stopped answering
# (the Python client every 20 s). gRPC servers answer a client pinging more often than every 5
# minutes with GOAWAY ("too_many_pings"); a ping a second costs nothing worth refusing.
KEEPALIVE_OPTIONS = (("grpc.http2.min_ping_interval_without_data_ms", 1_000),)


def run(settings: config.Settings) -> None:
    """Serve until SIGINT or SIGTERM (`sluice-server` and `sluice serve`). A start-up problem
    the operator must fix (the database, the address, a file) ends the process with one line
    and exit code 2."""
    traced = bool(exporter_names(os.environ))
    logs.configure(settings.log_level, settings.log_format, trace_ids=traced)
    _tune_gc(settings.gc_threshold)
    try:
        tracing = _tracing() if traced else None
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, tracing))
    except OPERATOR_ERRORS as error:
        log.error(str(error))
        raise SystemExit(2) from None


def _tracing() -> Tracing | None:
    """The server's tracing from the OTEL_* variables. Its provider becomes the process's
    too: a plugin's spans (`trace.get_tracer(...)`) go where the server's go, as children of
    the step attempt they run in. Imported here: a server that does not trace never loads the
    SDK."""
    from sluice.observability import tracing

    made = tracing.from_environment()
    if made is not None:
        trace.set_tracer_provider(made.provider)
    return made


def _tune_gc(threshold: int) -> None:
    """The cyclic garbage collector took about 15 % of the server's time under load (py-spy),
    most of it in full collections walking every object loaded at import (SQLAlchemy, gRPC,
    protobuf descriptors). Freezing those leaves them out of every collection, and a larger
    young generation makes collections rarer; cyclic garbage (tasks, tracebacks) is still
    collected, only in larger batches. Measured in bench/README.md's throughput scenario."""
    gc.freeze()
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])


def _allow_list(settings: config.Settings) -> WebhookAllowList:
    try:
        return WebhookAllowList.parse(settings.webhook_allow)
    except ValueError as error:
        raise config.ConfigError(str(error)) from None


if __name__ == "__main__":
    main()
