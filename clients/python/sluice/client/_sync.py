"""A blocking client for scripts: the async client driven on a private event-loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar

from sluice.client._async import DEFAULT_TARGET, WorkflowClient
from sluice.v1 import event_pb2

T = TypeVar("T")


class SyncWorkflowClient:
    """The same verbs as WorkflowClient, blocking. `with SyncWorkflowClient(target) as c: ...`"""

    def __init__(self, target: str = DEFAULT_TARGET, **options: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="sluice-client"
        )
        self._thread.start()
        self._client: WorkflowClient = self._run(_make(target, options))

    def _run(self, awaitable: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(_await(awaitable), self._loop).result()

    def close(self) -> None:
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncWorkflowClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name in ("watch", "iter_workflows"):
            return lambda *a, **k: self._iterate(method(*a, **k))
        return lambda *a, **k: self._run(method(*a, **k))

    def _iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self._run(anext(iterator))
            except StopAsyncIteration:
                return

    # Typed signatures for the two verbs used most from scripts; the rest go through __getattr__.
    def watch(
        self, workflow_id: str, *, after_sequence: int = 0, follow: bool = False
    ) -> Iterator[event_pb2.WorkflowEvent]:
        return self._iterate(
            self._client.watch(workflow_id, after_sequence=after_sequence, follow=follow)
        )


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _make(target: str, options: dict[str, Any]) -> WorkflowClient:
    return WorkflowClient(target, **options)  # the channel must be created on the client's loop
