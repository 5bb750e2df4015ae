"""Python client for Sluice: `WorkflowClient` (async) and `SyncWorkflowClient` (blocking), and
`Worker`, which serves "task" steps with async Python functions."""

from sluice.client._async import OnReconnect, WorkflowClient
from sluice.client._connect import DEFAULT_TARGET
from sluice.client._outcome import NonRetryableError, TaskError
from sluice.client._sync import SyncWorkflowClient
from sluice.client._targets import Addresses
from sluice.client._task import Task
from sluice.client._values import EventTypeLike, StatusLike, TemplateLike, ViewLike
from sluice.client._worker import Worker
from sluice.client.errors import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SluiceError,
    UnauthenticatedError,
    UnavailableError,
)
from sluice.v1.event_pb2 import EventType, WorkflowEvent
from sluice.v1.template_pb2 import Template
from sluice.v1.workflow_pb2 import (
    GateStatus,
    GateType,
    StepStatus,
    Workflow,
    WorkflowStatus,
)
from sluice.v1.workflow_service_pb2 import WorkflowView

__all__ = [
    "DEFAULT_TARGET",
    "AbortedError",
    "Addresses",
    "AlreadyExistsError",
    "DeadlineExceededError",
    "EventType",
    "EventTypeLike",
    "FailedPreconditionError",
    "FieldViolation",
    "GateStatus",
    "GateType",
    "InvalidArgumentError",
    "NonRetryableError",
    "NotFoundError",
    "OnReconnect",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SluiceError",
    "StatusLike",
    "StepStatus",
    "SyncWorkflowClient",
    "Task",
    "TaskError",
    "Template",
    "TemplateLike",
    "UnauthenticatedError",
    "UnavailableError",
    "ViewLike",
    "Worker",
    "Workflow",
    "WorkflowClient",
    "WorkflowEvent",
    "WorkflowStatus",
    "WorkflowView",
]
