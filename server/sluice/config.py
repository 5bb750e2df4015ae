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
    max_message_bytes: int = 4 * 1024 * 1024
    max_step_output_bytes: int = 1024 * 1024
    # Tuning: allocations between two young-generation garbage collections (Python's is 700).
    gc_threshold: int = 50_000

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
    "listen": _Option("SLUICE_LISTEN", f"host:port to serve gRPC on (default {DEFAULT_LISTEN})"),
    "database_url": _Option("SLUICE_DATABASE_URL", f"SQLAlchemy async URL (default {DEFAULT_DATABASE_URL})"),
    "webhook_allow": _Option("SLUICE_WEBHOOK_ALLOW", "comma-separated hosts or host:port webhooks may reach"),
    "max_parallel_steps_per_run": _Option("SLUICE_MAX_PARALLEL_STEPS_PER_RUN", "steps of one run at once (8)", _positive_int),
    "max_concurrent_steps": _Option("SLUICE_MAX_CONCURRENT_STEPS", "step attempts at once, server-wide (256)", _positive_int),
    "default_step_timeout": _Option("SLUICE_DEFAULT_STEP_TIMEOUT_SECONDS", "seconds (300)", _seconds),
    "shutdown_grace": _Option("SLUICE_SHUTDOWN_GRACE_SECONDS", "seconds running steps and calls get on shutdown (10)", _seconds),
    "log_level": _Option("SLUICE_LOG_LEVEL", "DEBUG, INFO, WARNING or ERROR (INFO)", _log_level),
    "log_format": _Option("SLUICE_LOG_FORMAT", "json, console, or auto: console on a terminal, else JSON lines (auto)", _one_of(*LOG_FORMATS)),
    "migrate": _Option("SLUICE_MIGRATE", "upgrade an older database schema on start", _bool, switch=True),
    "plugins": _Option("SLUICE_PLUGINS", "comma-separated module:function callables that register step types", _list, flag=False),
    "auth_jwt_secret": _Option("SLUICE_AUTH_JWT_SECRET", "HS256 secret", flag=False),
    "auth_jwt_public_key_file": _Option("SLUICE_AUTH_JWT_PUBLIC_KEY_FILE", "PEM public key for RS256/ES256 tokens"),
    "auth_jwt_algorithms": _Option("SLUICE_AUTH_JWT_ALGORITHMS", "accepted algorithms (HS256 with a secret; RS256,ES256 with a key)", _list),
    "auth_jwt_audience": _Option("SLUICE_AUTH_JWT_AUDIENCE", "required 'aud' claim, if set"),
    "auth_jwt_issuer": _Option("SLUICE_AUTH_JWT_ISSUER", "required 'iss' claim, if set"),
    "auth_jwt_leeway": _Option("SLUICE_AUTH_JWT_LEEWAY_SECONDS", "seconds a token is accepted past its expiry, for clock skew (30)", _non_negative_seconds),
    "tls_cert_file": _Option("SLUICE_TLS_CERT_FILE", "PEM certificate chain of the server (turns TLS on)"),
    "tls_key_file": _Option("SLUICE_TLS_KEY_FILE", "PEM private key of the server"),
    "tls_client_ca_file": _Option("SLUICE_TLS_CLIENT_CA_FILE", "PEM CA bundle; clients must present a certificate it signed (mTLS)"),
    "insecure_listen_any": _Option("SLUICE_INSECURE_LISTEN_ANY", "allow a non-loopback address without authentication", _bool, switch=True),
    "max_active_runs_per_user": _Option("SLUICE_MAX_ACTIVE_RUNS_PER_USER", "PENDING, RUNNING or PAUSED runs one user may have (1000)", _positive_int),
    "max_watchers_per_run": _Option("SLUICE_MAX_WATCHERS_PER_RUN", "concurrent WatchWorkflow streams on one run (100)", _positive_int),
    "max_message_bytes": _Option("SLUICE_MAX_MESSAGE_BYTES", "largest request or response (4 MiB)", _positive_int),
    "max_step_output_bytes": _Option("SLUICE_MAX_STEP_OUTPUT_BYTES", "largest step output as JSON; larger fails the step (1 MiB)", _positive_int),
    "gc_threshold": _Option("SLUICE_GC_THRESHOLD", "allocations between young-generation garbage collections; 0 keeps Python's 700 (50000)", _non_negative_int),
}  # fmt: skip


class ConfigError(ValueError):
    """The settings do not make a server that can (or should) start."""


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from flags and the environment. A mistyped flag is a usage error (argparse
    exits 2 with the usage); a bad value or an inconsistent combination raises ConfigError,
    which the entry point reports as one line."""
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="sluice-server", description="Run the Sluice workflow service."
    )
    for name, option in _OPTIONS.items():
        if not option.flag:
            continue
        flag = "--" + _flag(name)
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
            raw = env.get(option.env) or _from_file(option.env + "_FILE", env)
        if raw is None or raw == "":
            continue
        try:
            values[name] = option.parse(raw)
        except ValueError:
            raise ConfigError(
                f"{option.env} / --{_flag(name)}: {raw!r} is not a valid value: {option.help}"
            ) from None
    settings = Settings(**values)  # type: ignore[arg-type]
    check(settings)
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
    if settings.auth_jwt_secret:
        _check_secret_length(settings)
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


def _check_secret_length(settings: Settings) -> None:
    size = len(settings.auth_jwt_secret.encode())
    for algorithm in settings.auth_jwt_algorithms or ("HS256",):
        needed = _HMAC_KEY_BYTES.get(algorithm.upper(), 0)
        if size < needed:
            raise ConfigError(
                f"SLUICE_AUTH_JWT_SECRET is {size} bytes; {algorithm} needs at least {needed} "
                "(RFC 7518 section 3.2: a shorter one can be guessed from any token it signed); "
                "generate one with `openssl rand -base64 48`"
            )


def _is_loopback(listen: str) -> bool:
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name (or "0.0.0.0"-like wildcard) other than localhost


def _flag(name: str) -> str:
    return name.replace("_", "-")


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
