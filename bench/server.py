"""A Sluice server in its own process, for the benchmarks: a fresh SQLite file in its working
directory, or the database a `database_url` names (PostgreSQL)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_SERVING = re.compile(r"serving on (127\.0\.0\.1:\d+)")


class Server:
    """`python -m sluice.server` with SLUICE_* settings; stderr goes to `log` (a file, so a
    busy server never blocks on a full pipe)."""

    def __init__(
        self,
        workdir: Path,
        *,
        plugin: str = "bench.noop:register",
        listen: str = "127.0.0.1:0",
        database_url: str | None = None,
        name: str = "server",
        root: Path = ROOT,
        env: Mapping[str, str] | None = None,
        **settings: str,
    ) -> None:
        """`root`: the checkout whose server to run (with its own .venv), to compare builds.
        `env`: more variables (OTEL_*, or a PYTHONPATH of more than `root`)."""
        self.workdir = workdir
        self.database = workdir / "sluice.db"
        self.database_url = database_url or f"sqlite+aiosqlite:///{self.database}"
        self.name = name  # the log's name: several servers may share a working directory
        self.plugin = plugin
        self.listen = listen
        self.settings = settings
        self.root = root
        self.env = dict(env or {})
        self.address = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0  # time.time() just before the process was spawned
        self.ready_after = 0.0  # seconds from spawn to "serving on" in the log
        self._spawned = 0.0  # time.perf_counter() at the spawn
        self._starts = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}-{self._starts}.log"

    def start(self, timeout: float = 120) -> Server:
        return self.spawn().ready(timeout)

    def spawn(self) -> Server:
        """Start the process without waiting for it to serve (several servers start at once:
        they take turns at the schema themselves)."""
        self._starts += 1
        env = {
            **os.environ,
            "PYTHONPATH": str(self.root),
            "SLUICE_LISTEN": self.listen,
            "SLUICE_DATABASE_URL": self.database_url,
            "SLUICE_PLUGINS": self.plugin,
            **self.env,
            **{f"SLUICE_{k.upper()}": v for k, v in self.settings.items()},
        }
        log = self.log.open("wb")
        self.started_at = time.time()
        begin = time.perf_counter()
        python = sys.executable if self.root == ROOT else str(self.root / ".venv/bin/python")
        self.process = subprocess.Popen(
            [python, "-m", "sluice.server"], env=env, cwd=self.root, stderr=log
        )
        log.close()
        self._spawned = begin
        return self

    def ready(self, timeout: float = 120) -> Server:
        """Wait until the process serves (its address then known)."""
        assert self.process is not None
        begin = self._spawned
        deadline = begin + timeout
        while time.perf_counter() < deadline:
            if match := _SERVING.search(self.log.read_text(errors="replace")):
                self.address = match.group(1)
                self.ready_after = time.perf_counter() - begin
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.01)
        raise RuntimeError(f"server not serving after {timeout}s")

    def kill(self) -> None:
        """SIGKILL, as in a crash."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    """A port free right now, so a restarted server can come back at the same address."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
