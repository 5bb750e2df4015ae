"""External validator gates: the verdict on a step's output comes from outside, from a webhook
(POSTed the output) or from a worker serving a task type, as `{"passed": bool, "score": number,
"message": text}`.

The question is asked by a step of the run, one per such gate, with the gate's id: an `http`
step or a `task` step that depends on the gated step. So it is retried, timed out, followed
across restarts and shown (attempts, errors, the answer) like any step, and nothing new runs
anywhere. It is optional: a validator that fails for good fails the gate, and the gate's
action decides. Templates carry these steps from `with_validators` on; the API never shows
them as steps of the template.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from sluice.engine.gates import GateOutcome
from sluice.engine.model import TASK_STEP_TYPE, GateSpec, GateType, StepSpec, Template

WEBHOOK_STEP_TYPE = "http"
MAX_MESSAGE = 1000


def validator_step(gate: GateSpec) -> StepSpec:
    """The step that asks gate's validator for its verdict."""
    if gate.webhook_url:
        step_type = WEBHOOK_STEP_TYPE
        output = f"{{{{ steps.{gate.step_id} }}}}"
        body = {"gateId": gate.id, "stepId": gate.step_id, "output": output}
        config: dict[str, Any] = {"url": gate.webhook_url, "method": "POST", "body": body}
    else:
        step_type, config = TASK_STEP_TYPE, {}
    return StepSpec(
        id=gate.id,
        type=step_type,
        name=f"Validator of gate {gate.id}",
        description=f"Asks for the verdict of gate {gate.id} on the output of {gate.step_id}.",
        config=config,
        dependencies=(gate.step_id,),
        optional=True,
        retry=gate.validator_retry,
        timeout=gate.validator_timeout,
        task_type=gate.task_type,
        validates=gate.id,
    )


def with_validators(template: Template) -> Template:
    """`template` with a validator step for each external gate that has none yet."""
    have = {s.validates for s in template.steps if s.validates}
    missing = [
        validator_step(g)
        for g in template.gates
        if g.type is GateType.EXTERNAL and g.id not in have and g.step_id
    ]
    if not missing:
        return template
    return dataclasses.replace(template, steps=(*template.steps, *missing))


def verdict(gate: GateSpec, output: Mapping[str, Any] | None) -> GateOutcome:
    """The gate's outcome from its validator step's output."""
    answer: Any = output or {}
    if gate.webhook_url:
        answer = answer.get("body")
    if not isinstance(answer, Mapping) or not isinstance(answer.get("passed"), bool):
        return GateOutcome(
            False,
            'the validator\'s answer is not {"passed": true or false, "score": ..., '
            '"message": ...}',
        )
    score = answer.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score):
        score = None
    message = str(answer.get("message") or ("passed" if answer["passed"] else "failed"))
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return GateOutcome(answer["passed"], message, float(score) if score is not None else None)
