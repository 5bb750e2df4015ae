"""A Sluice worker serving two task types: `echo` and `upper`.

Start a server (`make run`), then the worker:

    .venv/bin/python examples/worker.py                  # both types, 127.0.0.1:50051
    .venv/bin/python examples/worker.py --task-type echo --concurrency 4

and run a template whose steps are served by it:

    {"id": "a", "type": "task", "taskType": "echo", "config": {"text": "hi"}}
    {"id": "b", "type": "task", "taskType": "upper", "dependencies": ["a"],
     "config": {"text": "{{ steps.a.echo.text }}"}}

Ctrl-C (or SIGTERM) stops it gracefully: no new tasks, running ones finish within --grace
seconds; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from sluice.client import DEFAULT_TARGET, NonRetryableError, Task, Worker


async def echo(task: Task) -> dict[str, Any]:
    """The step's config and its dependencies' outputs, as they reached the worker."""
    return {"echo": task.config, "inputs": task.inputs, "attempt": task.attempt}


async def upper(task: Task) -> dict[str, Any]:
    """config.text in capitals."""
    text = task.config.get("text")
    if not isinstance(text, str):
        # Another attempt would get the same config: fail the step now.
        raise NonRetryableError(f"config.text must be a string, not {text!r}")
    return {"text": text.upper()}


HANDLERS = {"echo": echo, "upper": upper}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--address",
        default=None,
        help=f"host:port of the server, several separated by commas "
        f"(default: SLUICE_ADDRESS, else {DEFAULT_TARGET})",
    )
    parser.add_argument("--token", default=None, help="bearer token (default: SLUICE_TOKEN)")
    parser.add_argument("--token-file", type=Path, help="read the bearer token from this file")
    parser.add_argument("--ca-file", default=None, help="PEM roots: TLS (default: SLUICE_CA_FILE)")
    parser.add_argument(
        "--task-type",
        action="append",
        choices=sorted(HANDLERS),
        help="serve only this type (repeatable; default: all of them)",
    )
    parser.add_argument("--concurrency", type=int, default=8, help="most tasks at once")
    parser.add_argument("--worker-id", default=None, help="default: <hostname>-<pid>")
    parser.add_argument("--grace", type=float, default=30.0, help="seconds to finish on Ctrl-C")
    return parser.parse_args()


async def main() -> None:
    args = parse_args()
    token = args.token_file.read_text().strip() if args.token_file else args.token
    worker = Worker(
        args.address,
        token=token,
        ca_file=args.ca_file,
        concurrency=args.concurrency,
        worker_id=args.worker_id,
    )
    for task_type in args.task_type or sorted(HANDLERS):
        worker.register(task_type, HANDLERS[task_type])
    await worker.run(handle_signals=True, grace=args.grace)


if __name__ == "__main__":
    asyncio.run(main())
