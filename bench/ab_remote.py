"""Remote steps against built-in ones, two builds compared interleaved on this noisy machine.

    python -m bench.ab_remote /path/to/other/checkout [--rounds 6] [--chunks 12] [--count 1200]
                              [--in-flight 200] [--sequential 0]

The other checkout needs its own `.venv` (`make .venv/.installed` there). Each round starts a
server of each build in turn (alternating which goes first), each with a worker process of its
own checkout (`bench/task_worker.py`), on a fresh SQLite file, and runs
diamond-5 of built-in steps and diamond-5 of remote steps against it, `--count` workflows of
each in `--chunks` chunks, the two kinds alternating chunk by chunk: the machine's slow and
fast spells then fall on both kinds alike, and their ratio (remote / built-in server CPU per
workflow, this server's own) is the figure to compare. Prints each round and the medians;
`--sequential N` also times N workflows of each kind one at a time; `--rate R` also runs
`--count` / 4 workflows of each kind started R a second (open loop, twice each, alternating),
the same load for both: their ratio is what a remote step costs beside a built-in one, apart
from the load (a server's CPU per workflow falls as its load rises).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import common, workload
from bench.scenarios import remote
from bench.server import ROOT, Server
from sluice.client import WorkflowClient

KINDS = ("builtin", "remote")


def _pythonpath(root: Path) -> str:
    return os.pathsep.join(str(root / p) for p in ("server", "generated", "clients/python", "."))


async def _measure(server: Server, args: argparse.Namespace) -> dict[str, float]:
    async with WorkflowClient(server.address) as client:
        templates = {
            "builtin": await workload.register(client, workload.diamond()),
            "remote": await workload.register(client, remote.remote_diamond()),
        }
        for _ in range(20):  # warm both paths up
            for kind in KINDS:
                await remote.run_one(client, templates[kind])
        cpu_ms = dict.fromkeys(KINDS, 0.0)
        seconds = dict.fromkeys(KINDS, 0.0)
        chunk = args.count // args.chunks
        for i in range(args.chunks):
            for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
                got = await remote.throughput(
                    client, templates[kind], chunk, args.in_flight, server.pid
                )
                cpu_ms[kind] += got["server_cpu_ms_per_workflow"] * chunk
                seconds[kind] += chunk / got["workflows_per_s"]
        done = chunk * args.chunks
        result = {f"{k}_cpu_ms": cpu_ms[k] / done for k in KINDS}
        result |= {f"{k}_workflows_per_s": done / seconds[k] for k in KINDS}
        result["ratio"] = result["remote_cpu_ms"] / result["builtin_cpu_ms"]
        for i in range(2 if args.rate else 0):  # both kinds at one rate, open loop
            for kind in KINDS if i % 2 == 0 else KINDS[::-1]:
                got = await remote.paced(
                    client, templates[kind], args.count // 4, args.rate, server.pid
                )
                key = f"{kind}_same_rate_cpu_ms"
                result[key] = result.get(key, 0.0) + got["server_cpu_ms_per_workflow"] / 2
        if args.rate:
            result["same_rate_ratio"] = (
                result["remote_same_rate_cpu_ms"] / result["builtin_same_rate_cpu_ms"]
            )
        for kind in KINDS if args.sequential else ():
            took = await remote.sequential(client, templates[kind], args.sequential)
            result[f"{kind}_sequential_ms"] = statistics.median(took)
        return result


def _round(root: Path, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(Path(workdir), root=root, env={"PYTHONPATH": _pythonpath(root)})
        server.start()
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.task_worker", "--address", server.address,
             "--task-type", remote.TASK_TYPE, "--in-flight", str(remote.IN_FLIGHT_TASKS)],
            stdout=subprocess.PIPE, text=True, cwd=root,
            env={**os.environ, "PYTHONPATH": _pythonpath(root)},
        )  # fmt: skip
        try:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "worker ready":
                common.fail("the bench worker did not start")
            return asyncio.run(_measure(server, args))
        finally:
            worker.terminate()
            worker.communicate(timeout=60)
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("other", type=Path, help="the other checkout (with its .venv)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--chunks", type=int, default=12)
    p.add_argument("--count", type=int, default=1200, help="workflows of each kind per round")
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--sequential", type=int, default=0, metavar="N")
    p.add_argument(
        "--rate", type=float, default=0, help="also run both kinds at this rate (workflows/s)"
    )
    args = p.parse_args()
    builds = {"this": ROOT, "other": args.other.resolve()}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in builds}
    for i in range(args.rounds):
        for name in builds if i % 2 == 0 else reversed(builds):
            rounds[name].append(_round(builds[name], args))
            figures = {k: round(v, 2) for k, v in rounds[name][-1].items()}
            print(f"round {i + 1} {name}: {json.dumps(figures)}", flush=True)
    print("medians:")
    medians = {
        name: {k: statistics.median(r[k] for r in got) for k in got[0]}
        for name, got in rounds.items()
    }
    for key in medians["this"]:
        this, other = medians["this"][key], medians["other"][key]
        print(f"  {key}: this {this:.3f}, other {other:.3f}, this / other {this / other:.3f}")


if __name__ == "__main__":
    main()
