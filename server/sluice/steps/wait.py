"""`wait`: waits, durably, for a duration or until a time (see `sluice.engine.waits`).

The engine keeps a wait as a timer and never calls this handler; it is registered so that
"wait" is a known step type whose config validation checks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from sluice.engine import waits
from sluice.engine.handlers import PermanentStepError, StepContext, StepResult
from sluice.steps import _schema

CONFIG_SCHEMA = _schema.obj(
    {
        "duration": {
            "type": ["string", "number"],
            "description": "how long to wait: '90s', '15m', '1h30m', '2d' or a number of seconds",
        },
        "until": _schema.string(
            "when to wake: an ISO 8601 time with its UTC offset, usually a substitution such "
            "as '{{ steps.schedule-post.scheduledTime }}'"
        ),
    }
)


class WaitStep:
    config_schema: ClassVar[Mapping[str, Any]] = CONFIG_SCHEMA

    def check_config(self, config: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        return waits.problems(config)

    async def run(self, ctx: StepContext) -> StepResult:
        raise PermanentStepError("a wait step is a timer the engine keeps, not a handler")
