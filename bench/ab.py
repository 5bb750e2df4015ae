"""Two builds of the server, compared interleaved on this noisy machine.

    python -m bench.ab /path/to/other/checkout [--rounds 3] [--scale 1] [--watchers]

Each round runs the sequential and throughput scenarios (SQLite, one server, the same client
code: this checkout's) against a server of this checkout and one of the other checkout (which
needs its own `.venv`: `make .venv/.installed` there), in alternating order, each on a fresh
database; then prints each figure per round and the medians' ratio (this / other). With
`--watchers`, each round also runs the 10,000-watcher scenario on a server of each (a minute
each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.server import ROOT, Server

FIGURES = (
    ("sequential", "ms_mean", "sequential ms (mean)"),
    ("throughput", "workflows_per_s", "throughput workflows/s"),
    ("throughput", "cpu_ms_per_workflow", "server CPU ms per workflow"),
)
WATCHER_FIGURES = (
    ("watchers", "latency_ms_p50", "watchers latency ms p50"),
    ("watchers", "latency_ms_p99", "watchers latency ms p99"),
    ("watchers", "server_cpu_s", "watchers server CPU s"),
)
# As bench.run's watchers scenario: 1,000 runs active at once, 8,000 steps in flight.
MANY_RUNS = {"max_active_runs_per_user": "100000", "max_concurrent_steps": "2000"}


def _scenario(name: str, server: Server, scale: float) -> dict[str, Any]:
    args = [sys.executable, "-m", f"bench.scenarios.{name}", "--address", server.address]
    args += ["--scale", str(scale)]
    if name in ("throughput", "watchers"):
        args += ["--pid", str(server.pid)]
    out = subprocess.run(args, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _figure(result: dict[str, Any], key: str) -> float:
    value = result[key]
    return float(value["servers"][0]) if isinstance(value, dict) else float(value)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("other", type=Path, help="the other checkout (with its .venv)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--watchers", action="store_true", help="the 10,000-watcher scenario too")
    args = p.parse_args()
    measured = FIGURES + (WATCHER_FIGURES if args.watchers else ())
    builds = {"this": ROOT, "other": args.other.resolve()}
    figures: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        order = list(builds) if round_ % 2 == 0 else list(reversed(builds))
        for build in order:
            with tempfile.TemporaryDirectory() as workdir:
                server = Server(Path(workdir), root=builds[build]).start()
                try:
                    results = {
                        n: _scenario(n, server, args.scale) for n in ("sequential", "throughput")
                    }
                finally:
                    server.stop()
            if args.watchers:
                with tempfile.TemporaryDirectory() as workdir:
                    server = Server(Path(workdir), root=builds[build], **MANY_RUNS).start()
                    try:
                        results["watchers"] = _scenario("watchers", server, args.scale)
                    finally:
                        server.stop()
            for scenario, key, label in measured:
                value = _figure(results[scenario], key)
                figures.setdefault((build, label), []).append(value)
                print(f"round {round_ + 1} {build:5} {label}: {value:.2f}", flush=True)
    print()
    for _, _, label in measured:
        this = statistics.median(figures[("this", label)])
        other = statistics.median(figures[("other", label)])
        print(f"{label}: this {this:.2f}, other {other:.2f}, this/other {this / other:.3f}")


if __name__ == "__main__":
    main()
