"""Helpers shared by the scenario scripts: arguments, statistics, client CPU, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any


def scale_from_env(default: float = 1.0) -> float:
    return float(os.environ.get("SLUICE_BENCH_SCALE", default))


def scaled(n: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(n * scale))


def parser(description: str, *, address: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    if address:
        p.add_argument("--address", required=True, help="host:port of a running Sluice server")
        p.add_argument("--pid", type=int, default=0, help="the server's process id (for RSS)")
    p.add_argument("--scale", type=float, default=scale_from_env(), help="size factor (0.1: smoke)")
    return p


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class CpuMeter:
    """This process's CPU use (user + system) over a wall-clock interval, as % of one core."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = _cpu()

    def percent(self) -> float:
        wall = time.perf_counter() - self.wall
        return 100 * (_cpu() - self.cpu) / wall if wall > 0 else 0.0

    def seconds(self) -> float:
        return _cpu() - self.cpu


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of another process, from /proc/<pid>/stat."""
    return _proc_stat(pid)[0]


def _proc_stat(pid: int) -> tuple[float, int, float]:
    """(user + system CPU seconds, parent pid, CPU seconds of its children that have exited
    and been waited for) of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / ticks
    return own, int(fields[1]), (int(fields[13]) + int(fields[14])) / ticks


def parent_pid(pid: int) -> int:
    return _proc_stat(pid)[1]


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds spent so far by a process and its children, those alive (read one by one
    from /proc) and those that have exited (in the root's reaped-children time): for
    PostgreSQL's server process, the whole cluster, backends that came and went included."""
    own, _, reaped = _proc_stat(root)
    total = own + reaped
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cpu, parent, _ = _proc_stat(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile
        if parent == root:
            total += cpu
    return total


def rss_kb(pid: int) -> int:
    """Resident set size of a process in KB (VmRSS in /proc/<pid>/status)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def emit(result: dict[str, Any]) -> None:
    """The scenario's one line of output: the orchestrator parses the last line of stdout."""
    print(json.dumps(result), flush=True)


def fail(message: str) -> None:
    emit({"error": message})
    sys.exit(1)


class DatabaseCpu:
    """CPU seconds spent by the PostgreSQL backends that serve one database, sampled from /proc
    in a thread of its own: the cluster's other databases (others' tests on a shared server)
    are left out, which PostgreSQL's whole-tree figure cannot do. A backend's process title
    names its database ("postgres: 15/main: USER DATABASE HOST(PORT) STATE"). A backend that
    exits between two samples loses what it spent since the last one (a pool's overflow
    connection; at most `every` seconds of its CPU). The sampler's own CPU is `own_seconds`,
    for the caller to take out of its process's figure."""

    def __init__(self, postmaster: int, database: str, every: float = 0.2) -> None:
        self._postmaster = postmaster
        self._needle = f" {database} ".encode()
        self._every = every
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self.own_seconds = 0.0
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, name="database-cpu", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        begin = time.thread_time()
        while not self._stop.wait(self._every):
            self._sample(first=False)
        self.own_seconds = time.thread_time() - begin

    def _sample(self, *, first: bool) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    title = cmdline.read()
                if self._needle not in title + b" ":
                    continue
                cpu, parent, _ = _proc_stat(pid)
            except (OSError, ValueError, IndexError):
                continue  # exited meanwhile
            if parent != self._postmaster:
                continue
            # A backend that appears after the start spent all its CPU within the window.
            self._first.setdefault(pid, cpu if first else 0.0)
            self._last[pid] = cpu

    def stop(self) -> tuple[float, int]:
        """(CPU seconds the database's backends spent since the start, backends seen)."""
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        total = sum(self._last[pid] - start for pid, start in self._first.items())
        return total, len(self._first)


class RunQueue:
    """How busy the machine is while a scenario runs: the processes ready to run (procs_running
    in /proc/stat, this benchmark's own included) sampled every `every` seconds in a thread. On
    a 2-core machine anything much above 2 means the processes measured wait for a core."""

    def __init__(self, every: float = 0.5) -> None:
        self._every = every
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-queue", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            try:
                with open("/proc/stat", encoding="ascii") as stat:
                    for line in stat:
                        if line.startswith("procs_running"):
                            # Less this sampler itself, which is running as it reads.
                            self._samples.append(int(line.split()[1]) - 1)
                            break
            except OSError:
                return

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        if not self._samples:
            return {}
        return {
            "runnable_mean": sum(self._samples) / len(self._samples),
            "runnable_p90": percentile(self._samples, 90),
        }
