"""Task tokens: what a worker sends back to name one delivery of one attempt of a step.

Opaque to workers (base64url), not secret: every call with a token also checks that the task
belongs to the caller, and its delivery (the task's lease epoch) makes an old one stale.
"""

from __future__ import annotations

import base64
import binascii

from sluice.engine.ports import TaskKey

_VERSION = "t1"


def encode(key: TaskKey) -> str:
    text = f"{_VERSION}/{key.run_id}/{key.step_id}/{key.attempt}/{key.delivery}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(token: str) -> TaskKey | None:
    """The key a token names; None when it is not a task token."""
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, run_id, step_id, attempt, delivery = text.split("/")
        if version != _VERSION or not run_id or not step_id:
            return None
        return TaskKey(run_id, step_id, int(attempt), int(delivery))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
