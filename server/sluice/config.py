"""Server settings from flags and SLUICE_* environment variables (flags win)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/sluice.db"


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
    # Upgrade an older database schema on start (an empty database is always set up).
    migrate: bool = False
    # "module:function" callables, each given the step registry to add step types to.
    plugins: tuple[str, ...] = field(default_factory=tuple)


_ENV = {
    "listen": "SLUICE_LISTEN",
    "database_url": "SLUICE_DATABASE_URL",
    "webhook_allow": "SLUICE_WEBHOOK_ALLOW",
    "max_parallel_steps_per_run": "SLUICE_MAX_PARALLEL_STEPS_PER_RUN",
    "max_concurrent_steps": "SLUICE_MAX_CONCURRENT_STEPS",
    "default_step_timeout": "SLUICE_DEFAULT_STEP_TIMEOUT_SECONDS",
    "shutdown_grace": "SLUICE_SHUTDOWN_GRACE_SECONDS",
    "log_level": "SLUICE_LOG_LEVEL",
    "migrate": "SLUICE_MIGRATE",
    "plugins": "SLUICE_PLUGINS",
}


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="sluice-server", description="Run the Sluice workflow service."
    )
    add = parser.add_argument
    add("--listen", help=f"host:port to serve gRPC on [{_ENV['listen']}, {DEFAULT_LISTEN}]")
    add(
        "--database-url",
        help=f"SQLAlchemy async URL [{_ENV['database_url']}, {DEFAULT_DATABASE_URL}]",
    )
    add(
        "--webhook-allow",
        help=f"comma-separated hosts or host:port webhooks may reach [{_ENV['webhook_allow']}]",
    )
    add("--max-parallel-steps-per-run", type=int, help=f"[{_ENV['max_parallel_steps_per_run']}, 8]")
    add(
        "--max-concurrent-steps",
        type=int,
        help=f"steps running at once, server-wide [{_ENV['max_concurrent_steps']}, 256]",
    )
    add("--default-step-timeout", type=float, help=f"seconds [{_ENV['default_step_timeout']}, 300]")
    add(
        "--shutdown-grace",
        type=float,
        help=f"seconds in-flight calls get on shutdown [{_ENV['shutdown_grace']}, 10]",
    )
    add("--log-level", help=f"[{_ENV['log_level']}, INFO]")
    add(
        "--migrate",
        action="store_const",
        const="1",
        help=f"upgrade an older database schema on start [{_ENV['migrate']}=1]",
    )
    add("--plugin", action="append", dest="plugins", help=f"module:function registering step types [{_ENV['plugins']}, comma-separated]")  # fmt: skip
    args = vars(parser.parse_args(argv))

    values: dict[str, object] = {}
    for name, var in _ENV.items():
        raw = args.get(name)
        if raw is None and var in env and env[var] != "":
            raw = env[var].split(",") if name == "plugins" else env[var]
        if raw is None:
            continue
        try:
            values[name] = _coerce(name, raw)
        except ValueError:
            parser.error(f"{name.replace('_', '-')} / {var}: {raw!r} is not a valid value")
    return Settings(**values)  # type: ignore[arg-type]


def _coerce(name: str, raw: object) -> object:
    if name in ("max_parallel_steps_per_run", "max_concurrent_steps"):
        number = int(str(raw))
        if number < 1:
            raise ValueError
        return number
    if name in ("default_step_timeout", "shutdown_grace"):
        seconds = float(str(raw))
        if seconds <= 0:
            raise ValueError
        return timedelta(seconds=seconds)
    if name == "migrate":
        if str(raw).lower() not in ("1", "true", "yes", "0", "false", "no"):
            raise ValueError
        return str(raw).lower() in ("1", "true", "yes")
    if name == "plugins":
        return tuple(p.strip() for p in raw if p.strip()) if isinstance(raw, list) else ()
    return str(raw)
