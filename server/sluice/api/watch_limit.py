"""How many WatchWorkflow streams one server holds open, and the gRPC backlog that lets a burst
of them in.

Past the limit a new stream is refused with RESOURCE_EXHAUSTED before it reads anything. Below
it, every stream must get that far: grpc.aio takes calls from gRPC's core one at a time on the
event loop, and the core refuses calls that queue up meanwhile once more than 1,000 wait (at
random, all of them past 3,000), which a client sees as a bare CANCELLED. Thousands of watchers
that connect at once (a restarted server, a dashboard opening) queued that deep: about 4,000 of
10,000 streams opened on 2 cores, the rest were cancelled before their first event
(bench/README.md, "watchers"). `backlog_options` makes room in that queue for every watcher the
limit allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sluice.engine.errors import ResourceExhausted

# gRPC core's own bounds on calls waiting to be taken (src/core/server/server.h): up to the
# first none is refused, between the two a growing share, past the second all.
_GRPC_PENDING_SOFT = 1000
_GRPC_PENDING_HARD = 3000
# gRPC's other bound, how long a call may wait to be taken (30 s), is left alone: a burst of
# 10,000 streams is taken in 9 to 15 s on a loaded 2-core machine, and at 120 s a stopping
# server held on (tests/e2e/test_client.py's restart test then failed now and then).


class WatchLimit:
    """Counts open WatchWorkflow streams (on the event loop's thread: no lock needed)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one of the server's stream slots for the block; ResourceExhausted when none
        is free."""
        if self.open >= self.limit:
            raise ResourceExhausted(
                f"the server already has {self.limit} WatchWorkflow streams open, its limit "
                "(SLUICE_MAX_WATCHERS): try again once others have ended, or watch fewer runs "
                "at once"
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1


def backlog_options(max_watchers: int) -> list[tuple[str, int]]:
    """gRPC server options: room for calls waiting to be taken, gRPC's own margins plus every
    watcher the limit allows, so that a burst of watchers up to the limit waits its turn
    instead of being cancelled (and the next ones get this module's RESOURCE_EXHAUSTED)."""
    return [
        ("grpc.server.max_pending_requests", _GRPC_PENDING_SOFT + max_watchers),
        ("grpc.server.max_pending_requests_hard_limit", _GRPC_PENDING_HARD + max_watchers),
    ]
