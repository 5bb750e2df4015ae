"""`task`: a step served by workers (sluice.v1.WorkerService), not by this process.

The step's `task_type` names the workers that take it; its config (substitutions resolved), the
run's params and the upstream outputs travel in the task. The engine never calls this handler:
the driver hands such steps to the remote dispatcher (`runtime.tasks`). It is registered so that
"task" is a known step type (a typo of a built-in type is still caught) with free-form config.
"""

from __future__ import annotations

from sluice.engine.handlers import PermanentStepError, StepContext, StepResult


class TaskStep:
    async def run(self, ctx: StepContext) -> StepResult:
        raise PermanentStepError("a task step is served by workers, not by the server")
