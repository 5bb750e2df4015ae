"""Domain errors. The gRPC layer maps each to one status code."""

from __future__ import annotations

from dataclasses import dataclass


class SluiceError(Exception):
    """Base of every error the engine raises on purpose."""


class NotFound(SluiceError):
    """The run or template does not exist, or belongs to someone else (same answer)."""


class FailedPrecondition(SluiceError):
    """The run's current state does not allow the call."""


class IllegalTransition(FailedPrecondition):
    """A status change outside the state machine; a bug if the engine itself causes it."""


class Conflict(SluiceError):
    """Another writer changed the run first (compare-and-set lost)."""


class LeaseLost(Conflict):
    """This server no longer holds the run's lease (it expired and another server took the
    run): nothing was written, and this server must forget the run."""


class StaleTaskResult(SluiceError):
    """A commit carried a worker's result for a task no longer held under its key (it timed
    out, went to another worker or was reported meanwhile): nothing was written."""


class Unavailable(SluiceError):
    """The store cannot be reached or written right now (a lock held too long, a lost
    connection); nothing was written, and the same call may succeed later."""


class ResourceExhausted(SluiceError):
    """A configured limit is reached (active runs, watchers)."""


class AlreadyExists(SluiceError):
    """The id is taken (e.g. registering a template under a predefined template's id)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem of a request: the path of the field and a sentence a person understands."""

    field: str
    description: str


class InvalidArgument(SluiceError):
    """The request is malformed; carries every violation found, not just the first."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations[:5])
        more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
        super().__init__(f"invalid request: {summary}{more}")
