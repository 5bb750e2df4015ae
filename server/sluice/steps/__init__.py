"""The built-in step handlers, one module per step type.

Every handler does real, deterministic, offline work: the same context gives the same
output, time comes only from `ctx.now`, and nothing leaves the machine unless a step names a
webhook URL the operator has allowed. Each is replaceable: register another handler under
the same type name.
"""

from __future__ import annotations

from sluice.engine.handlers import HandlerRegistry
from sluice.steps.analyze import AnalyzeStep
from sluice.steps.errors import PermanentStepError, StepError
from sluice.steps.generate import GenerateStep
from sluice.steps.notify import NotifyStep
from sluice.steps.post import PostStep
from sluice.steps.review import ReviewStep
from sluice.steps.schedule import ScheduleStep
from sluice.steps.transform import TransformStep
from sluice.steps.webhook import WebhookAllowList, WebhookClient

BUILTIN_STEP_TYPES = ("generate", "review", "schedule", "post", "analyze", "transform", "notify")


def builtin_registry(webhooks: WebhookClient | None = None) -> HandlerRegistry:
    """A registry of the seven built-in handlers.

    Without `webhooks`, steps that name a webhook URL fail permanently with a message naming
    SLUICE_WEBHOOK_ALLOW: no allow-list means no outgoing calls.
    """
    client = webhooks or WebhookClient(WebhookAllowList())
    return HandlerRegistry(
        {
            "generate": GenerateStep(),
            "review": ReviewStep(),
            "schedule": ScheduleStep(),
            "post": PostStep(client),
            "analyze": AnalyzeStep(),
            "transform": TransformStep(),
            "notify": NotifyStep(client),
        }
    )


__all__ = [
    "BUILTIN_STEP_TYPES",
    "AnalyzeStep",
    "GenerateStep",
    "NotifyStep",
    "PermanentStepError",
    "PostStep",
    "ReviewStep",
    "ScheduleStep",
    "StepError",
    "TransformStep",
    "WebhookAllowList",
    "WebhookClient",
    "builtin_registry",
]
