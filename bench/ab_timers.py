"""The timers scenario against two builds of the server, interleaved on this noisy machine.

    python -m bench.ab_timers /path/to/other/checkout [rounds]

The other checkout needs its own `.venv` (`make .venv/.installed` there). Each round runs the
scenario (this checkout's client) against a server of each build on a fresh database, in
alternating order, and prints memory per sleeping run and wake lateness.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.server import ROOT, Server

MANY_RUNS = {"max_active_runs_per_user": "100000", "max_concurrent_steps": "2000"}


def main() -> None:
    other = Path(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    builds = (("this", ROOT), ("other", other))
    for r in range(rounds):
        for name, root in builds if r % 2 == 0 else builds[::-1]:
            with tempfile.TemporaryDirectory() as tmp:
                server = Server(Path(tmp), root=root, **MANY_RUNS).start()
                try:
                    out = subprocess.run(
                        [sys.executable, "-m", "bench.scenarios.timers",
                         "--address", server.address, "--pid", str(server.pid)],
                        capture_output=True, text=True, cwd=ROOT, timeout=900, check=True,
                    )  # fmt: skip
                finally:
                    server.stop()
            res = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{r} {name}: {res['kb_per_run']:.1f} KB per sleeping run; woke late p50 "
                f"{res['woke_late_ms_p50']:.0f} p99 {res['woke_late_ms_p99']:.0f} "
                f"max {res['woke_late_ms_max']:.0f} ms",
                flush=True,
            )


if __name__ == "__main__":
    main()
