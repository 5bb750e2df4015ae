"""What the runtime reports about itself as it works, for whoever measures it (the Prometheus
metrics, when the server serves them).

The runtime calls these at the moments only it sees: a handler that finally runs, a task a
worker takes, runs taken over from a dead server, a batch of writes committed. Committed
events say the rest (`observability.metrics` counts those). `NO_PROBES` costs one empty call.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class Probes(Protocol):
    def step_began(self, step_type: str, started: datetime) -> None:
        """A built-in step's handler began now; its attempt was started at `started` (then
        came the commit and a free slot among the server's concurrent steps). The time is
        passed, not the wait: with no probe listening, no clock is read."""

    def task_taken(self, task_type: str, waited: float) -> None:
        """A worker took a task `waited` seconds after it was queued (schedule to start)."""

    def runs_taken_over(self, count: int) -> None:
        """This server claimed `count` runs that another server held before."""

    def batch_committed(self, writes: int, seconds: float) -> None:
        """The store committed `writes` writes in one transaction, in `seconds`."""


class _NoProbes:
    def step_began(self, step_type: str, started: datetime) -> None:
        pass

    def task_taken(self, task_type: str, waited: float) -> None:
        pass

    def runs_taken_over(self, count: int) -> None:
        pass

    def batch_committed(self, writes: int, seconds: float) -> None:
        pass


NO_PROBES: Probes = _NoProbes()
