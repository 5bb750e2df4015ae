"""The two ways a step attempt fails.

`StepError` is transient: the engine retries it under the step's retry policy (a webhook that
timed out or answered 5xx may answer next time), unless the policy lists its `error_type` as
not retryable. `PermanentStepError` fails the step at once: bad config or a 4xx answer will not
improve by trying again. Both come from the handler seam (`sluice.engine.handlers`).
"""

from __future__ import annotations

from sluice.engine.handlers import PermanentStepError, StepError

__all__ = ["PermanentStepError", "StepError"]
