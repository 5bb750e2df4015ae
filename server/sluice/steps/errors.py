"""The two ways a step attempt fails.

`StepError` is transient: the engine retries it under the step's retry policy (a webhook that
timed out or answered 5xx may answer next time). `PermanentStepError` (from the handler seam)
fails the step at once: bad config or a 4xx answer will not improve by trying again.
"""

from __future__ import annotations

from sluice.engine.handlers import PermanentStepError


class StepError(Exception):
    """A failure another attempt may fix; the engine retries it."""


__all__ = ["PermanentStepError", "StepError"]
