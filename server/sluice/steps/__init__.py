"""The built-in step handlers, one module per step type.

Every handler does real, deterministic, offline work: the same context gives the same
output, time comes only from `ctx.now`, and nothing leaves the machine unless a step names a
URL the operator has allowed (a webhook of `post` or `notify`, an `http` step). Each is
replaceable: register another handler under the same type name.
"""

from __future__ import annotations

from sluice.engine.handlers import HandlerRegistry
from sluice.steps.analyze import AnalyzeStep
from sluice.steps.errors import PermanentStepError, StepError
from sluice.steps.generate import GenerateStep
from sluice.steps.http import HttpStep
from sluice.steps.http_client import HttpClient
from sluice.steps.notify import NotifyStep
from sluice.steps.post import PostStep
from sluice.steps.review import ReviewStep
from sluice.steps.schedule import ScheduleStep
from sluice.steps.task import TaskStep
from sluice.steps.transform import TransformStep
from sluice.steps.wait import WaitStep
from sluice.steps.webhook import WebhookAllowList

BUILTIN_STEP_TYPES = (
    "generate", "review", "schedule", "post", "analyze", "transform", "notify", "http", "wait",
)  # fmt: skip


def builtin_registry(http: HttpClient | None = None) -> HandlerRegistry:
    """A registry of the built-in handlers (and the worker-served "task" and engine-kept
    "wait" types), sharing `http` for their requests.

    Without `http`, steps that name a URL (a webhook, an `http` step) fail permanently with a
    message naming SLUICE_WEBHOOK_ALLOW: no allow-list means no outgoing calls.
    """
    client = http or HttpClient(WebhookAllowList())
    return HandlerRegistry(
        {
            "generate": GenerateStep(),
            "review": ReviewStep(),
            "schedule": ScheduleStep(),
            "post": PostStep(client),
            "analyze": AnalyzeStep(),
            "transform": TransformStep(),
            "notify": NotifyStep(client),
            "http": HttpStep(client),
            "task": TaskStep(),
            "wait": WaitStep(),
        }
    )


__all__ = [
    "BUILTIN_STEP_TYPES",
    "AnalyzeStep",
    "GenerateStep",
    "HttpClient",
    "HttpStep",
    "NotifyStep",
    "PermanentStepError",
    "PostStep",
    "ReviewStep",
    "ScheduleStep",
    "StepError",
    "TaskStep",
    "TransformStep",
    "WaitStep",
    "WebhookAllowList",
    "builtin_registry",
]
