"""ListWorkflows over a large history: 1,000,000 runs, and 10,000 to compare with.

For each size: a server makes one real diamond-5 run, stops; its rows (run, steps) are cloned
with sqlite3 into `size` finished runs of one owner, spread over 30 days and 10 template ids,
94 % COMPLETED, 4 % CANCELLED, 2 % FAILED (no events: lists do not read them). A new server on
that file then answers each kind of list call `--repeat` times from a client over gRPC: the
median and p99 per call, and the size of the reply. Built on an index per filter, a call costs
its page, whatever the history: the 1,000,000 / 10,000 ratio says how far that holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc

from bench import common, workload
from bench.server import Server
from sluice.client import WorkflowClient, WorkflowStatus
from sluice.v1 import workflow_service_pb2 as pb
from sluice.v1 import workflow_service_pb2_grpc as pb_grpc

START = datetime(2026, 10, 1, tzinfo=UTC)
DAYS = 30
TEMPLATES = 10
S = WorkflowStatus


def _day(request: pb.ListWorkflowsRequest) -> pb.ListWorkflowsRequest:
    request.create_time_start.FromDatetime(START + timedelta(days=10))
    request.create_time_end.FromDatetime(START + timedelta(days=11))
    return request


# name -> the request; statuses and templates as the fill makes them.
CALLS: dict[str, Callable[[], pb.ListWorkflowsRequest]] = {
    "first page (50), BASIC": lambda: pb.ListWorkflowsRequest(),
    "1,000 per page, BASIC": lambda: pb.ListWorkflowsRequest(page_size=1000),
    "1,000 per page, FULL": lambda: pb.ListWorkflowsRequest(
        page_size=1000, view=pb.WORKFLOW_VIEW_FULL
    ),
    "status matching nothing (PAUSED)": lambda: pb.ListWorkflowsRequest(
        statuses=[S.WORKFLOW_STATUS_PAUSED]
    ),
    "status FAILED (2 %)": lambda: pb.ListWorkflowsRequest(statuses=[S.WORKFLOW_STATUS_FAILED]),
    "statuses FAILED + CANCELLED": lambda: pb.ListWorkflowsRequest(
        statuses=[S.WORKFLOW_STATUS_FAILED, S.WORKFLOW_STATUS_CANCELLED]
    ),
    "template (10 %)": lambda: pb.ListWorkflowsRequest(template_id="bench-list-7"),
    "template + status FAILED": lambda: pb.ListWorkflowsRequest(
        template_id="bench-list-7", statuses=[S.WORKFLOW_STATUS_FAILED]
    ),
    "one day of create time": lambda: _day(pb.ListWorkflowsRequest()),
}
DEEP_PAGE = 200


async def main() -> None:
    p = common.parser(__doc__ or "", address=False)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args()
    sizes = (10_000, common.scaled(1_000_000, args.scale, minimum=20_000))
    root = args.workdir or Path(tempfile.mkdtemp(prefix="sluice-bench-lists-"))
    results: dict[str, Any] = {"sizes": list(sizes), "calls": {}}
    for size in sizes:
        workdir = root / str(size)
        workdir.mkdir(parents=True, exist_ok=True)
        fill_seconds = await fill(workdir, size)
        server = Server(workdir).start(timeout=600)
        try:
            figures = await measure(server.address, args.repeat)
        finally:
            server.kill()
        results[f"fill_seconds_{size}"] = fill_seconds
        results[f"db_mb_{size}"] = (workdir / "sluice.db").stat().st_size / 1e6
        for name, figure in figures.items():
            results["calls"].setdefault(name, {})[str(size)] = figure
    common.emit(results)


async def fill(workdir: Path, size: int) -> float:
    server = Server(workdir).start()
    try:
        async with WorkflowClient(server.address) as client:
            template = await workload.register(client, workload.diamond())
            run = await client.create_workflow(template)
            done = await client.execute_workflow(run.id, wait=True, timeout=60)
    finally:
        server.stop()
    begin = time.perf_counter()
    _clone(workdir / "sluice.db", done.id, size)
    return time.perf_counter() - begin


def _clone(database: Path, model_id: str, size: int) -> None:
    db = sqlite3.connect(database)
    db.row_factory = sqlite3.Row
    run = dict(db.execute("SELECT * FROM runs WHERE id = ?", (model_id,)).fetchone())
    steps = [dict(r) for r in db.execute("SELECT * FROM step_runs WHERE run_id = ?", (model_id,))]
    db.execute("PRAGMA synchronous = OFF")  # a fill, not a measurement
    for table in ("events", "step_runs", "gate_results", "outbox"):
        db.execute(f"DELETE FROM {table} WHERE run_id = ?", (model_id,))
    db.execute("DELETE FROM runs WHERE id = ?", (model_id,))
    run_sql = _insert("runs", run)
    step_sql = _insert("step_runs", steps[0])
    spacing = timedelta(days=DAYS) / size
    for first in range(0, size, 10_000):
        run_rows, step_rows = [], []
        for i in range(first, min(size, first + 10_000)):
            created = (START + i * spacing).strftime("%Y-%m-%d %H:%M:%S.%f")
            status = "FAILED" if i % 50 == 7 else "CANCELLED" if i % 25 == 3 else "COMPLETED"
            run_id = str(uuid.UUID(int=i + 1, version=4))
            run_rows.append(
                {**run, "id": run_id, "status": status, "template_id": f"bench-list-{i % TEMPLATES}",
                 "created_at": created, "started_at": created, "updated_at": created,
                 "ended_at": created}
            )  # fmt: skip
            step_rows += [{**s, "run_id": run_id} for s in steps]
        db.executemany(run_sql, run_rows)
        db.executemany(step_sql, step_rows)
        db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _insert(table: str, row: dict[str, Any]) -> str:
    return f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(':' + k for k in row)})"


async def measure(address: str, repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(
        address, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    ) as channel:
        api = pb_grpc.WorkflowServiceStub(channel)
        for name, make in CALLS.items():
            # Each kind in a block of its own, after two calls that warm its pages: the
            # figure is that call's, not the clean-up of a large reply before it.
            for _ in range(2):
                await api.ListWorkflows(make())
            values = []
            for _ in range(repeat):
                begin = time.perf_counter()
                reply = await api.ListWorkflows(make())
                values.append((time.perf_counter() - begin) * 1000)
            out[name] = _figure(values, len(reply.workflows), reply.ByteSize())
        out[f"page {DEEP_PAGE} of 50 (by page token)"] = await _deep_page(api, repeat)
    return out


async def _deep_page(api: pb_grpc.WorkflowServiceAsyncStub, repeat: int) -> dict[str, float]:
    token = ""
    for _ in range(DEEP_PAGE - 1):
        token = (await api.ListWorkflows(pb.ListWorkflowsRequest(page_token=token))).next_page_token
    values = []
    for _ in range(repeat):
        begin = time.perf_counter()
        reply = await api.ListWorkflows(pb.ListWorkflowsRequest(page_token=token))
        values.append((time.perf_counter() - begin) * 1000)
    return _figure(values, len(reply.workflows), reply.ByteSize())


def _figure(values: list[float], runs: int, size: int) -> dict[str, float]:
    return {
        "ms_median": common.percentile(values, 50),
        "ms_p99": common.percentile(values, 99),
        "runs": runs,
        "kb": size / 1024,
    }


if __name__ == "__main__":
    asyncio.run(main())
