from __future__ import annotations

from datetime import UTC, datetime

from sluice.engine.handlers import HandlerRegistry, StepContext, StepResult
from sluice.engine.model import GateAction, GateSpec, GateType, Operator, Run, StepSpec, Template

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class NoOp:
    """A handler that declares no config schema."""

    async def run(self, ctx: StepContext) -> StepResult:
        return StepResult({})


def step_types(*names: str) -> HandlerRegistry:
    """A registry of schema-less no-op step types, for validating templates."""
    return HandlerRegistry(dict.fromkeys(names, NoOp()))


def make_template(*steps: StepSpec, gates: tuple[GateSpec, ...] = ()) -> Template:
    return Template(id="t", steps=steps, gates=gates)


def make_run(template: Template) -> Run:
    return Run.new(id="r", owner="u", template=template, params={}, now=T0)


def threshold(gate_id: str, step_id: str, action: GateAction, value: float = 0.8) -> GateSpec:
    return GateSpec(gate_id, GateType.THRESHOLD, step_id, action, metric="score",
                    operator=Operator.GTE, threshold=value)  # fmt: skip
