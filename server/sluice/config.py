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
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
# RFC 7518 section 3.2: an HMAC key at least as long as the hash's output.
_HMAC_KEY_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


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
    # "json" lines, readable "console" lines, or "auto": console on a terminal, else JSON.
    log_format: str = "auto"
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
    # How far past its `exp` (or before its `nbf`) a token is still accepted: clock skew.
    auth_jwt_leeway: timedelta = timedelta(seconds=30)
    # TLS: certificate and key of the server; a client CA turns on mutual TLS (required).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    # Without authentication the server only listens on loopback, unless this is set.
    insecure_listen_any: bool = False
    # Limits.
    max_active_runs_per_user: int = 1000
    max_watchers_per_run: int = 100
    max_watchers: int = 20_000
    max_message_bytes: int = 4 * 1024 * 1024
    max_step_output_bytes: int = 1024 * 1024
    # Steps one template may have (the web view draws graphs of several hundred).
    max_template_steps: int = 100
    # Tuning: allocations between two young-generation garbage collections (Python's is 700).
    gc_threshold: int = 50_000
    # host:port of the HTTP endpoint serving Prometheus metrics at /metrics ("": none).
    metrics_listen: str = ""
    # host:port of the web view and the browser's gRPC-Web API ("": none).
    http_listen: str = ""
    # Housekeeping: runs left PENDING this long are cancelled (0: never); runs that ended this
    # long ago are deleted with their events (0: kept forever); how often to look.
    pending_expiry: timedelta = timedelta(hours=24)
    retention: timedelta = timedelta(0)
    housekeeping_interval: timedelta = timedelta(minutes=1)
    # Several servers on one PostgreSQL database: how long a server's lease on a run lasts
    # without renewal (a dead server's runs move on after it), how often leases are renewed,
    # and how many runs one server drives at most (past it, new runs go to the others).
    lease_ttl: timedelta = timedelta(seconds=30)
    lease_renew: timedelta = timedelta(seconds=5)
    max_runs_per_server: int = 10_000
    # Task steps (WorkerService): how soon a worker must acknowledge a task it took (a
    # heartbeat or its result), and how long an attempt waits for a worker when its step does
    # not say (schedule to start).
    task_ack_timeout: timedelta = timedelta(seconds=30)
    task_schedule_to_start: timedelta = timedelta(hours=1)

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
    # A flag given once per value under this name (`--plugin a --plugin b`), where the
    # environment variable holds them comma-separated.
    repeat: str = ""

    def flag_name(self, name: str) -> str | None:
        if not self.flag:
            return None
        return self.repeat or "--" + name.replace("_", "-")


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


def _non_negative_seconds(raw: str) -> timedelta:
    value = float(raw)
    if not value >= 0:
        raise ValueError
    return timedelta(seconds=value)


def _one_of(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError
        return value

    return parse


def _log_level(raw: str) -> str:
    return _one_of(*LOG_LEVELS)(raw).upper()


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered not in ("1", "true", "yes", "0", "false", "no", ""):
        raise ValueError
    return lowered in ("1", "true", "yes")


def _list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


_OPTIONS: dict[str, _Option] = {
    "listen": _Option("SLUICE_LISTEN", "host:port to serve gRPC on (:0 picks a free port)"),
    "database_url": _Option("SLUICE_DATABASE_URL", "SQLAlchemy async URL of the store"),
    "webhook_allow": _Option("SLUICE_WEBHOOK_ALLOW", "comma-separated hosts or host:port that webhooks and http steps may reach"),
    "http_max_connections": _Option("SLUICE_HTTP_MAX_CONNECTIONS", "connections for webhooks and http steps; more requests wait for one (default: SLUICE_MAX_CONCURRENT_STEPS)", _positive_int),
    "http_timeout": _Option("SLUICE_HTTP_TIMEOUT_SECONDS", "seconds one outgoing request may take once it has a connection", _seconds),
    "http_max_response_bytes": _Option("SLUICE_HTTP_MAX_RESPONSE_BYTES", "response body kept in a step's output, in bytes; longer is cut", _positive_int),
    "max_parallel_steps_per_run": _Option("SLUICE_MAX_PARALLEL_STEPS_PER_RUN", "steps of one run at once", _positive_int),
    "max_concurrent_steps": _Option("SLUICE_MAX_CONCURRENT_STEPS", "step attempts at once, server-wide", _positive_int),
    "default_step_timeout": _Option("SLUICE_DEFAULT_STEP_TIMEOUT_SECONDS", "seconds an attempt of a step that sets no timeout may take", _seconds),
    "shutdown_grace": _Option("SLUICE_SHUTDOWN_GRACE_SECONDS", "seconds running steps and calls get on shutdown", _seconds),
    "log_level": _Option("SLUICE_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR", _log_level),
    "log_format": _Option("SLUICE_LOG_FORMAT", "json, console, or auto: console on a terminal, else JSON lines", _one_of(*LOG_FORMATS)),
    "migrate": _Option("SLUICE_MIGRATE", "upgrade an older database schema on start", _bool, switch=True),
    "plugins": _Option("SLUICE_PLUGINS", "module:function that registers step types; repeatable (comma-separated in the variable)", _list, repeat="--plugin"),
    "auth_jwt_secret": _Option("SLUICE_AUTH_JWT_SECRET", "HS256 secret; turns authentication on", flag=False),
    "auth_jwt_public_key_file": _Option("SLUICE_AUTH_JWT_PUBLIC_KEY_FILE", "PEM public key for RS256/ES256 tokens"),
    "auth_jwt_algorithms": _Option("SLUICE_AUTH_JWT_ALGORITHMS", "accepted algorithms (default HS256 with a secret; RS256,ES256 with a key)", _list),
    "auth_jwt_audience": _Option("SLUICE_AUTH_JWT_AUDIENCE", "required 'aud' claim, if set"),
    "auth_jwt_issuer": _Option("SLUICE_AUTH_JWT_ISSUER", "required 'iss' claim, if set"),
    "auth_jwt_leeway": _Option("SLUICE_AUTH_JWT_LEEWAY_SECONDS", "seconds a token is accepted past its expiry, for clock skew", _non_negative_seconds),
    "tls_cert_file": _Option("SLUICE_TLS_CERT_FILE", "PEM certificate chain of the server (turns TLS on)"),
    "tls_key_file": _Option("SLUICE_TLS_KEY_FILE", "PEM private key of the server"),
    "tls_client_ca_file": _Option("SLUICE_TLS_CLIENT_CA_FILE", "PEM CA bundle; clients must present a certificate it signed (mTLS)"),
    "insecure_listen_any": _Option("SLUICE_INSECURE_LISTEN_ANY", "allow a non-loopback address without authentication", _bool, switch=True),
    "max_active_runs_per_user": _Option("SLUICE_MAX_ACTIVE_RUNS_PER_USER", "PENDING, RUNNING or PAUSED runs one user may have", _positive_int),
    "max_watchers_per_run": _Option("SLUICE_MAX_WATCHERS_PER_RUN", "concurrent WatchWorkflow streams on one run", _positive_int),
    "max_watchers": _Option("SLUICE_MAX_WATCHERS", "concurrent WatchWorkflow streams on the server; more is RESOURCE_EXHAUSTED", _positive_int),
    "max_message_bytes": _Option("SLUICE_MAX_MESSAGE_BYTES", "largest request or response, in bytes", _positive_int),
    "max_step_output_bytes": _Option("SLUICE_MAX_STEP_OUTPUT_BYTES", "largest step output as JSON, in bytes; larger fails the step", _positive_int),
    "max_template_steps": _Option("SLUICE_MAX_TEMPLATE_STEPS", "steps one template may have; more is INVALID_ARGUMENT", _positive_int),
    "gc_threshold": _Option("SLUICE_GC_THRESHOLD", "allocations between young-generation garbage collections; 0 keeps Python's 700", _non_negative_int),
    "metrics_listen": _Option("SLUICE_METRICS_LISTEN", "host:port to serve Prometheus metrics on, at /metrics (:0 picks a free port); empty: none"),
    "http_listen": _Option("SLUICE_HTTP_LISTEN", "host:port to serve the web view and its gRPC-Web API on (:0 picks a free port); empty: none"),
    "pending_expiry": _Option("SLUICE_PENDING_EXPIRY_HOURS", "hours after which a run never executed is cancelled; 0 never", _hours),
    "retention": _Option("SLUICE_RETENTION_DAYS", "days after which an ended run is deleted with its events; 0 keeps them", _days),
    "housekeeping_interval": _Option("SLUICE_HOUSEKEEPING_INTERVAL_SECONDS", "seconds between expiry and retention sweeps", _seconds),
    "lease_ttl": _Option("SLUICE_LEASE_TTL_SECONDS", "seconds a server's lease on a run lasts unrenewed (PostgreSQL, several servers)", _seconds),
    "lease_renew": _Option("SLUICE_LEASE_RENEW_SECONDS", "seconds between lease renewals and claims of other servers' expired runs", _seconds),
    "max_runs_per_server": _Option("SLUICE_MAX_RUNS_PER_SERVER", "runs one server drives at once; past it, new runs are left to the other servers", _positive_int),
    "task_ack_timeout": _Option("SLUICE_TASK_ACK_TIMEOUT_SECONDS", "seconds a worker has to acknowledge a task it took (a heartbeat or its result) before the attempt times out", _seconds),
    "task_schedule_to_start": _Option("SLUICE_TASK_SCHEDULE_TO_START_SECONDS", "seconds a task step's attempt waits for a worker when its step sets no schedule_to_start_timeout", _seconds),
}  # fmt: skip


class ConfigError(ValueError):
    """The settings do not make a server that can (or should) start."""


@dataclass(frozen=True, slots=True)
class OptionHelp:
    """One setting as a command line shows it (`sluice serve --help`, `sluice-server --help`)."""

    name: str  # the Settings field
    env: str
    help: str
    flag: str | None  # None: environment (or a *_FILE variable) only
    switch: bool
    repeatable: bool
    default: str | None  # as it would be written; None when unset


def option_help() -> list[OptionHelp]:
    return [
        OptionHelp(
            name=name,
            env=option.env,
            help=option.help,
            flag=option.flag_name(name),
            switch=option.switch,
            repeatable=bool(option.repeat),
            default=_default_text(name, option),
        )
        for name, option in _OPTIONS.items()
    ]


def _default_text(name: str, option: _Option) -> str | None:
    """The default as a user would write it; None when unset, or when the option could not take
    it (a 0 that means "derived from another setting": its help says so)."""
    value = Settings.__dataclass_fields__[name].default
    if isinstance(value, timedelta):
        # In the option's own unit: what parse("1") means.
        unit = option.parse("1")
        assert isinstance(unit, timedelta)
        text = f"{value / unit:g}"
    elif isinstance(value, bool) or value in ("", ()) or not isinstance(value, str | int):
        return None
    else:
        text = str(value)
    try:
        option.parse(text)
    except ValueError:
        return None
    return text


def resolve(given: Mapping[str, str], env: Mapping[str, str] | None = None) -> Settings:
    """Settings from command-line values (by Settings field, as typed) over the environment.

    Raises ConfigError naming the variable and flag of a value that does not parse, or saying
    why settings that parse do not fit together.
    """
    env = os.environ if env is None else env
    values: dict[str, object] = {}
    for name, option in _OPTIONS.items():
        raw = given.get(name)
        if raw is None:
            raw = environment_value(option.env, env)
        if raw is None or raw == "":
            continue
        try:
            values[name] = option.parse(raw)
        except ValueError:
            flag = option.flag_name(name)
            where = f"{option.env} / {flag}" if flag else option.env
            raise ConfigError(f"{where}: {raw!r} is not a valid value: {option.help}") from None
    settings = Settings(**values)  # type: ignore[arg-type]
    check(settings)
    return settings


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """`sluice-server`'s flags (`sluice serve` is the same options in the CLI's style). A
    mistyped flag is a usage error (argparse exits 2 with the usage); a bad value or an
    inconsistent combination raises ConfigError, which the entry point reports as one line."""
    parser = argparse.ArgumentParser(
        prog="sluice-server", description="Run the Sluice workflow service."
    )
    for option in option_help():
        if option.flag is None:
            continue
        default = f"; default {option.default}" if option.default else ""
        help_text = f"{option.help} [{option.env}{default}]"
        if option.switch:
            parser.add_argument(option.flag, action="store_const", const="1", help=help_text)
        elif option.repeatable:
            parser.add_argument(option.flag, action="append", dest=option.name, help=help_text)
        else:
            parser.add_argument(option.flag, dest=option.name, help=help_text)
    args = vars(parser.parse_args(argv))
    given = {
        name: ",".join(value) if isinstance(value, list) else value
        for name, value in args.items()
        if value is not None
    }
    return resolve(given, env)


def check(settings: Settings) -> None:
    """Refuse settings that would start an unsafe or broken server."""
    if settings.lease_renew >= settings.lease_ttl:
        raise ConfigError(
            f"SLUICE_LEASE_RENEW_SECONDS ({settings.lease_renew.total_seconds():g}) must be "
            f"shorter than SLUICE_LEASE_TTL_SECONDS ({settings.lease_ttl.total_seconds():g}), "
            "or leases expire between renewals"
        )
    if settings.auth_jwt_secret and settings.auth_jwt_public_key_file:
        raise ConfigError(
            "set either SLUICE_AUTH_JWT_SECRET or SLUICE_AUTH_JWT_PUBLIC_KEY_FILE, not both"
        )
    if settings.auth_jwt_secret:
        check_hmac_secret(settings.auth_jwt_secret, settings.auth_jwt_algorithms)
    if bool(settings.tls_cert_file) != bool(settings.tls_key_file):
        raise ConfigError("TLS needs both SLUICE_TLS_CERT_FILE and SLUICE_TLS_KEY_FILE")
    if settings.tls_client_ca_file and not settings.tls_enabled:
        raise ConfigError(
            "mutual TLS (SLUICE_TLS_CLIENT_CA_FILE) needs TLS: set the server certificate and key"
        )
    # The web view's gRPC-Web API is the same service: the same rule for its address.
    for address, variable in ((settings.listen, ""), (settings.http_listen, "SLUICE_HTTP_LISTEN ")):
        if (
            address
            and not settings.auth_enabled
            and not settings.insecure_listen_any
            and not _is_loopback(address)
        ):
            raise ConfigError(
                f"refusing to listen on {variable}{address} without authentication: anyone who "
                "can reach it could run and read every workflow. Configure "
                "SLUICE_AUTH_JWT_SECRET or SLUICE_AUTH_JWT_PUBLIC_KEY_FILE, listen on "
                "127.0.0.1, or pass --insecure-listen-any"
            )


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or "0.0.0.0"-like wildcard) other than localhost


def check_hmac_secret(secret: str, algorithms: Sequence[str] = ()) -> None:
    """Refuse a secret too short for the HMAC algorithms it signs with (HS256 when none are
    named): one shorter than the hash can be guessed from any token it signed. The message
    never shows the secret. (`sluice token` applies the same rule.)"""
    size = len(secret.encode())
    for algorithm in algorithms or ("HS256",):
        needed = _HMAC_KEY_BYTES.get(algorithm.upper(), 0)
        if size < needed:
            raise ConfigError(
                f"SLUICE_AUTH_JWT_SECRET is {size} bytes; {algorithm} needs at least {needed} "
                "bytes (RFC 7518 section 3.2: a shorter one can be guessed from any token it "
                "signed); generate one with `openssl rand -base64 48`"
            )


def environment_value(name: str, env: Mapping[str, str]) -> str | None:
    """A setting from the environment: NAME, else the contents of the file NAME_FILE names."""
    return env.get(name) or _from_file(name + "_FILE", env)


def _from_file(variable: str, env: Mapping[str, str]) -> str | None:
    path = env.get(variable)
    if not path:
        return None
    try:
        return read_file(variable, path).decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{variable} {path} is not UTF-8 text") from None


def read_file(variable: str, path: str) -> bytes:
    """The bytes of the file a setting names, or ConfigError naming the setting, the file and
    why it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {variable} {path}: {error.strerror}") from None
