"""The benchmark workloads as Sluice templates, registered once per server with CreateTemplate.

diamond-5: five no-op steps a -> (b, c in parallel) -> d -> e.
webhook: one step of a notify type that POSTs to a webhook URL.
"""

from __future__ import annotations

import itertools
from typing import Any

from sluice.client import WorkflowClient

DIAMOND = "bench-diamond-5"
STEPS_PER_DIAMOND = 5


def _step(step_id: str, step_type: str, *deps: str, **config: Any) -> dict[str, Any]:
    return {"id": step_id, "type": step_type, "dependencies": list(deps), "config": config}


def diamond() -> dict[str, Any]:
    return {
        "id": DIAMOND,
        "name": "diamond-5",
        "steps": [
            _step("a", "noop"),
            _step("b", "noop", "a"),
            _step("c", "noop", "a"),
            _step("d", "noop", "b", "c"),
            _step("e", "noop", "d"),
        ],
    }


def chain(length: int, hold: float = 0.0) -> dict[str, Any]:
    """A line of `length` steps: a run that keeps emitting events for a while. Each step is a
    no-op, or with `hold` a step that takes that many seconds on average (+/- 50 %, uniform,
    so that runs started together do not move in lockstep)."""
    ids = [f"s{i}" for i in range(length)]
    kind, config = ("hold", {"seconds": hold, "jitter": 0.5}) if hold else ("noop", {})
    steps = [_step(ids[0], kind, **config)] + [
        _step(s, kind, p, **config) for p, s in itertools.pairwise(ids)
    ]
    suffix = f"-hold-{round(hold * 1000)}ms" if hold else ""
    return {"id": f"bench-chain-{length}{suffix}", "name": f"chain of {length}", "steps": steps}


def waiting() -> dict[str, Any]:
    """One wait step until the time in param `at`: a run that sleeps, durably, then ends."""
    return {
        "id": "bench-waiting",
        "name": "wait until a time",
        "params": [{"name": "at", "required": True}],
        "steps": [_step("wait", "wait", until="{{ params.at }}")],
    }


def gated() -> dict[str, Any]:
    """One no-op step followed by an approval gate and a second step: a run that pauses."""
    return {
        "id": "bench-gated",
        "name": "step then approval",
        "steps": [_step("a", "noop"), _step("b", "noop", "a")],
        "qualityGates": [
            {"id": "approve", "stepId": "a", "action": "GATE_ACTION_PAUSE", "approval": {}}
        ],
    }


def holding(seconds: float) -> dict[str, Any]:
    """One step that sleeps (plugin type `hold`), then a no-op: a run with a step in flight."""
    return {
        "id": "bench-hold",
        "name": "hold then noop",
        "steps": [_step("h", "hold", seconds=seconds), _step("z", "noop", "h")],
    }


def webhook(step_type: str, url: str) -> dict[str, Any]:
    """One `step_type` step (notify, or legacy-notify from bench/legacy_webhook.py) that POSTs
    its notification to `url`."""
    return {
        "id": f"bench-webhook-{step_type}",
        "name": f"{step_type} to a webhook",
        "steps": [_step("tell", step_type, message="bench", webhookUrl=url)],
    }


async def register(client: WorkflowClient, template: dict[str, Any]) -> str:
    """Register `template` (once: a second registration would only add a version)."""
    created = await client.create_template(template)
    return created.id
