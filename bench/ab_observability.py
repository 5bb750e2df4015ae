"""What observability costs on the hot path: one build's server in several configurations,
compared interleaved on this noisy machine.

    python -m bench.ab_observability [--rounds 3] [--scale 1] [--only off,tracing]

`CONFIGS` names each configuration: environment variables for the server on top of the
benchmark's defaults. Every round runs the sequential and throughput scenarios (SQLite, one
server, this checkout's client) against a server of each configuration, each on a fresh
database, in an order that turns by one each round; then prints each figure per round, the
medians, and each configuration's median against the first's.

Traced servers export to an exporter in their own process (`bench/otel_exporters.py`): the
spans are made, batched and handed over as with any exporter, and go nowhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench.ab import FIGURES, _figure, _scenario
from bench.server import ROOT, Server

# The benchmark's span exporters are entry points of a distribution whose metadata lies in
# bench/otel: on a traced server's path, OTEL_TRACES_EXPORTER finds them by name.
_TRACED = {"PYTHONPATH": os.pathsep.join((str(ROOT), str(ROOT / "bench" / "otel")))}

CONFIGS: list[tuple[str, dict[str, str]]] = [
    ("off", {}),
    # Prometheus metrics counted and served (nothing scrapes them here: a scrape's cost is
    # the scraper's to pay, once per interval).
    ("metrics", {"SLUICE_METRICS_LISTEN": "127.0.0.1:0"}),
    # Spans of calls, runs and step attempts made and batched; the exporter drops them.
    ("tracing", {**_TRACED, "OTEL_TRACES_EXPORTER": "bench_noop"}),
    # The same, each batch also encoded as the OTLP exporter encodes it before sending.
    ("tracing-otlp-encoded", {**_TRACED, "OTEL_TRACES_EXPORTER": "bench_encode"}),
]


def _traced(server: Server) -> bool:
    """Whether the server's run log names traces: a configuration that meant to trace and
    did not would measure nothing."""
    return '"trace_id"' in server.log.read_text(errors="replace")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--only", default="", help="comma-separated configuration names")
    args = p.parse_args()
    wanted = {n for n in args.only.split(",") if n}
    configs = [(name, env) for name, env in CONFIGS if not wanted or name in wanted]
    figures: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        turn = round_ % len(configs)
        for name, env in configs[turn:] + configs[:turn]:
            with tempfile.TemporaryDirectory() as workdir:
                server = Server(Path(workdir), env=env).start()
                try:
                    results = {
                        n: _scenario(n, server, args.scale) for n in ("sequential", "throughput")
                    }
                finally:
                    server.stop()
                if _traced(server) != ("OTEL_TRACES_EXPORTER" in env):
                    raise SystemExit(f"{name}: the server's tracing is not as configured")
            for scenario, key, label in FIGURES:
                value = _figure(results[scenario], key)
                figures.setdefault((name, label), []).append(value)
                print(f"round {round_ + 1} {name:22} {label}: {value:.2f}", flush=True)
    print()
    base = configs[0][0]
    for _, _, label in FIGURES:
        first = statistics.median(figures[(base, label)])
        for name, _ in configs:
            median = statistics.median(figures[(name, label)])
            print(f"{label}: {name} {median:.2f} ({median / first:.3f} of {base})")


if __name__ == "__main__":
    main()
