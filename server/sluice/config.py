"""Server settings from flags and SLUICE_* environment variables (flags win).

Secrets (the JWT secret) are read from the environment or a file, never from a flag, so they do
not show up in process listings.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/sluice.db"


@dataclass(frozen=True, slots=True)
class Settings:
    listen: str = DEFAULT_LISTEN
    database_url: str = DEFAULT_DATABASE_URL
    webhook_allow: str = ""
    # Outgoing HTTP (webhooks, http steps). Connections: 0 means as many as
    # max_concurrent_steps, so every step that may run can have its own.
    http_max_connections: int = 0
    http_timeout: timedelta = timedelta(seconds=5)
    http_max_response_bytes: int = 64 * 1024
    max_parallel_steps_per_run: int = 8
    max_concurrent_steps: int = 256
    default_step_timeout: timedelta = timedelta(minutes=5)
    shutdown_grace: timedelta = timedelta(seconds=10)
    log_level: str = "INFO"
    # Upgrade an older database schema on start (an empty database is always set up).
    migrate: bool = False
    # "module:function" callables, each given the step registry to add step types to.
    plugins: tuple[str, ...] = field(default_factory=tuple)
    # Authentication: bearer JWTs, HS256 with a shared secret or RS256/ES256 with a public key.
    auth_jwt_secret: str = field(default="", repr=False)
    auth_jwt_public_key_file: str = ""
    auth_jwt_algorithms: tuple[str, ...] = field(default_factory=tuple)
    auth_jwt_audience: str = ""
    auth_jwt_issuer: str = ""
    # TLS: certificate and key of the server; a client CA turns on mutual TLS (required).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Without authentication the server only listens on loopback, unless this is set.
    insecure_listen_any: bool = False
    # Limits.
    max_active_runs_per_user: int = 1000
    max_watchers_per_run: int = 100
    max_message_bytes: int = 4 * 1024 * 1024
    max_step_output_bytes: int = 1024 * 1024
    # Tuning: allocations between two young-generation garbage collections (Python's is 700).
    gc_threshold: int = 50_000
    # Housekeeping: runs left PENDING this long are cancelled (0: never); runs that ended this
    # long ago are deleted with their events (0: kept forever); how often to look.
    pending_expiry: timedelta = timedelta(hours=24)
    retention: timedelta = timedelta(0)
    housekeeping_interval: timedelta = timedelta(minutes=1)

    @property
    def http_connections(self) -> int:
        return self.http_max_connections or self.max_concurrent_steps

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_jwt_secret or self.auth_jwt_public_key_file)

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls_cert_file)


@dataclass(frozen=True, slots=True)
class _Option:
    env: str
    help: str
    parse: Callable[[str], object] = str
    flag: bool = True  # False: environment (or a *_FILE variable) only
    switch: bool = False  # a flag without a value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


def _seconds(raw: str) -> timedelta:
    value = float(raw)
    if not value > 0:
        raise ValueError
    return timedelta(seconds=value)


def _hours(raw: str) -> timedelta:
    value = float(raw)
    if not 0 <= value < 1e6:
        raise ValueError
    return timedelta(hours=value)


def _days(raw: str) -> timedelta:
    value = float(raw)
    if not 0 <= value < 1e5:
        raise ValueError
    return timedelta(days=value)


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("1", "true", "yes", "0", "false", "no", ""):
        raise ValueError
    return lowered in ("1", "true", "yes")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_OPTIONS: dict[str, _Option] = {
    "listen": _Option("SLUICE_LISTEN", f"host:port to serve gRPC on (default {DEFAULT_LISTEN})"),
    "database_url": _Option("SLUICE_DATABASE_URL", f"SQLAlchemy async URL (default {DEFAULT_DATABASE_URL})"),
    "webhook_allow": _Option("SLUICE_WEBHOOK_ALLOW", "comma-separated hosts or host:port that webhooks and http steps may reach"),
    "http_max_connections": _Option("SLUICE_HTTP_MAX_CONNECTIONS", "connections for webhooks and http steps; more requests wait for one (default: SLUICE_MAX_CONCURRENT_STEPS)", _positive_int),
    "http_timeout": _Option("SLUICE_HTTP_TIMEOUT_SECONDS", "seconds one outgoing request may take once it has a connection (5)", _seconds),
    "http_max_response_bytes": _Option("SLUICE_HTTP_MAX_RESPONSE_BYTES", "response body kept in a step's output; longer is cut (65536)", _positive_int),
    "max_parallel_steps_per_run": _Option("SLUICE_MAX_PARALLEL_STEPS_PER_RUN", "steps of one run at once (8)", _positive_int),
    "max_concurrent_steps": _Option("SLUICE_MAX_CONCURRENT_STEPS", "step attempts at once, server-wide (256)", _positive_int),
    "default_step_timeout": _Option("SLUICE_DEFAULT_STEP_TIMEOUT_SECONDS", "seconds (300)", _seconds),
    "shutdown_grace": _Option("SLUICE_SHUTDOWN_GRACE_SECONDS", "seconds running steps and calls get on shutdown (10)", _seconds),
    "log_level": _Option("SLUICE_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR (INFO)"),
    "migrate": _Option("SLUICE_MIGRATE", "upgrade an older database schema on start", _bool, switch=True),
    "plugins": _Option("SLUICE_PLUGINS", "comma-separated module:function callables that register step types", _list, flag=False),
    "auth_jwt_secret": _Option("SLUICE_AUTH_JWT_SECRET", "HS256 secret", flag=False),
    "auth_jwt_public_key_file": _Option("SLUICE_AUTH_JWT_PUBLIC_KEY_FILE", "PEM public key for RS256/ES256 tokens"),
    "auth_jwt_algorithms": _Option("SLUICE_AUTH_JWT_ALGORITHMS", "accepted algorithms (HS256 with a secret; RS256,ES256 with a key)", _list),
    "auth_jwt_audience": _Option("SLUICE_AUTH_JWT_AUDIENCE", "required 'aud' claim, if set"),
    "auth_jwt_issuer": _Option("SLUICE_AUTH_JWT_ISSUER", "required 'iss' claim, if set"),
    "tls_cert_file": _Option("SLUICE_TLS_CERT_FILE", "PEM certificate chain of the server (turns TLS on)"),
    "tls_key_file": _Option("SLUICE_TLS_KEY_FILE", "PEM private key of the server"),
    "tls_client_ca_file": _Option("SLUICE_TLS_CLIENT_CA_FILE", "PEM CA bundle; clients must present a certificate it signed (mTLS)"),
    "insecure_listen_any": _Option("SLUICE_INSECURE_LISTEN_ANY", "allow a non-loopback address without authentication", _bool, switch=True),
    "max_active_runs_per_user": _Option("SLUICE_MAX_ACTIVE_RUNS_PER_USER", "PENDING, RUNNING or PAUSED runs one user may have (1000)", _positive_int),
    "max_watchers_per_run": _Option("SLUICE_MAX_WATCHERS_PER_RUN", "concurrent WatchWorkflow streams on one run (100)", _positive_int),
    "max_message_bytes": _Option("SLUICE_MAX_MESSAGE_BYTES", "largest request or response (4 MiB)", _positive_int),
    "max_step_output_bytes": _Option("SLUICE_MAX_STEP_OUTPUT_BYTES", "largest step output as JSON; larger fails the step (1 MiB)", _positive_int),
    "gc_threshold": _Option("SLUICE_GC_THRESHOLD", "allocations between young-generation garbage collections; 0 keeps Python's 700 (50000)", _non_negative_int),
    "pending_expiry": _Option("SLUICE_PENDING_EXPIRY_HOURS", "hours after which a run never executed is cancelled; 0 never (24)", _hours),
    "retention": _Option("SLUICE_RETENTION_DAYS", "days after which an ended run is deleted with its events; 0 keeps them (0)", _days),
    "housekeeping_interval": _Option("SLUICE_HOUSEKEEPING_INTERVAL_SECONDS", "seconds between expiry and retention sweeps (60)", _seconds),
}  # fmt: skip


class ConfigError(ValueError):
    """The settings do not make a server that can (or should) start."""


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="sluice-server", description="Run the Sluice workflow service."
    )
    for name, option in _OPTIONS.items():
        if not option.flag:
            continue
        flag = "--" + name.replace("_", "-")
        help_text = f"{option.help} [{option.env}]"
        if option.switch:
            parser.add_argument(flag, action="store_const", const="1", help=help_text)
        else:
            parser.add_argument(flag, help=help_text)
    parser.add_argument(
        "--plugin", action="append", dest="plugins",
        help=f"module:function that registers step types; repeatable [{_OPTIONS['plugins'].env}]",
    )  # fmt: skip
    args = vars(parser.parse_args(argv))
    if args.get("plugins"):
        args["plugins"] = ",".join(args["plugins"])

    values: dict[str, object] = {}
    for name, option in _OPTIONS.items():
        raw = args.get(name)
        if raw is None:
            raw = environment_value(option.env, env)
        if raw is None or raw == "":
            continue
        try:
            values[name] = option.parse(raw)
        except ValueError:
            parser.error(f"{option.env} / --{name.replace('_', '-')}: {raw!r} is not a valid value")
    settings = Settings(**values)  # type: ignore[arg-type]
    try:
        check(settings)
    except ConfigError as error:
        parser.error(str(error))
    return settings


def check(settings: Settings) -> None:
    """Refuse settings that would start an unsafe or broken server."""
    if settings.auth_jwt_secret and settings.auth_jwt_public_key_file:
        raise ConfigError(
            "set either SLUICE_AUTH_JWT_SECRET or SLUICE_AUTH_JWT_PUBLIC_KEY_FILE, not both"
        )
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("TLS needs both SLUICE_TLS_CERT_FILE and SLUICE_TLS_KEY_FILE")
    if settings.tls_client_ca_file and not settings.tls_enabled:
        raise ConfigError(
            "mutual TLS (SLUICE_TLS_CLIENT_CA_FILE) needs TLS: set the server certificate and key"
        )
    if (
        not settings.auth_enabled
        and not settings.insecure_listen_any
        and not _is_loopback(settings.listen)
    ):
        raise ConfigError(
            f"refusing to listen on {settings.listen} without authentication: anyone who can "
            "reach it could run and read every workflow. Configure SLUICE_AUTH_JWT_SECRET or "
            "SLUICE_AUTH_JWT_PUBLIC_KEY_FILE, listen on 127.0.0.1, or pass --insecure-listen-any"
        )


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or "0.0.0.0"-like wildcard) other than localhost


def environment_value(name: str, env: Mapping[str, str]) -> str | None:
    """A setting from the environment: NAME, else the contents of the file NAME_FILE names."""
    return env.get(name) or _from_file(env.get(name + "_FILE"))


def _from_file(path: str | None) -> str | None:
    return Path(path).read_text(encoding="utf-8").strip() if path else None
