"""Results reported on a task stream: a completion alone in its message is recorded with the
outcome it brings, without a task of its own, and answered when that commit is made; one that
commit could not take (its task moved on meanwhile) is recorded the slow way, and answered once
either way. The stream's end waits for both."""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.api.worker_servicer import _Outbox, _Reports
from sluice.engine.ports import TaskKey, TaskResult
from sluice.v1 import worker_service_pb2 as pb

KEY = TaskKey("run-1", "a", 1, 1)


class _Context:
    def __init__(self) -> None:
        self.sent: list[pb.StreamTasksResponse] = []

    async def write(self, message: pb.StreamTasksResponse) -> None:
        self.sent.append(message)


class _Session:
    def __init__(self) -> None:
        self.granted: list[tuple[int, bool]] = []
        self.recorded_count = 0

    def grant(self, credits: int, *, with_results: bool = False) -> None:
        self.granted.append((credits, with_results))

    def recorded(self) -> None:
        self.recorded_count += 1


class _Queue:
    def __init__(self) -> None:
        self.recording: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.results: list[TaskResult] = []

    def record_soon(self, result: TaskResult) -> asyncio.Future[bool]:
        self.results.append(result)
        return self.recording


def _completion(request: pb.CompleteTaskRequest) -> tuple[TaskKey, dict[str, Any]]:
    return KEY, dict(request.output)


def _message(token: str = "t1") -> pb.StreamTasksRequest:
    request = pb.StreamTasksRequest(credits=1)
    request.completed.add(task_token=token).output.update({"n": 1})
    return request


def _reports() -> tuple[_Reports, _Outbox, _Context, _Session, _Queue, list[dict[str, Any]]]:
    context, session, queue = _Context(), _Session(), _Queue()
    outbox = _Outbox(context)  # type: ignore[arg-type]
    slow: list[dict[str, Any]] = []

    async def report(request: Any, outbox: _Outbox, session: Any, *, in_commit: bool) -> None:
        slow.append({"tokens": [r.task_token for r in request.completed], "in_commit": in_commit})
        session.recorded()
        outbox.answer([pb.TaskReport(task_token=request.completed[0].task_token)])

    reports = _Reports(session, outbox, queue, _completion, report)  # type: ignore[arg-type]
    return reports, outbox, context, session, queue, slow


async def test_a_completion_recorded_with_its_outcome_is_answered_when_that_commit_is_made() -> (
    None
):
    reports, _, context, session, queue, slow = _reports()
    reports.take(_message())
    assert session.granted == [(1, True)]  # held back for the commit recording it
    assert [r.key for r in queue.results] == [KEY]
    await asyncio.sleep(0.01)
    assert context.sent == []  # not answered before it is stored

    queue.recording.set_result(True)
    await asyncio.wait_for(reports.settled(), 1)
    assert [[r.task_token for r in m.reports] for m in context.sent] == [["t1"]]
    assert session.recorded_count == 1 and slow == []


async def test_a_completion_that_commit_could_not_take_is_recorded_the_slow_way_once() -> None:
    reports, _, context, session, queue, slow = _reports()
    reports.take(_message())
    queue.recording.set_result(False)  # its task moved on meanwhile: nothing was written
    await asyncio.wait_for(reports.settled(), 1)
    assert slow == [{"tokens": ["t1"], "in_commit": False}]
    assert [[r.task_token for r in m.reports] for m in context.sent] == [["t1"]]
    assert session.recorded_count == 1


async def test_several_results_in_one_message_go_the_slow_way_together() -> None:
    reports, _, _, _, queue, slow = _reports()
    request = _message("t1")
    request.completed.add(task_token="t2")
    reports.take(request)
    await asyncio.wait_for(reports.settled(), 1)
    assert queue.results == [] and slow == [{"tokens": ["t1", "t2"], "in_commit": True}]


async def test_an_answer_goes_out_with_a_task_leaving_in_the_same_turn() -> None:
    reports, outbox, context, _, queue, _ = _reports()
    reports.take(_message())
    queue.recording.set_result(True)
    await asyncio.sleep(0)  # the answer is given...
    await outbox.task(pb.Task(step_id="next"))  # ...and a task leaves in this turn
    await asyncio.wait_for(reports.settled(), 1)
    assert len(context.sent) == 1
    assert context.sent[0].task.step_id == "next"
    assert [r.task_token for r in context.sent[0].reports] == ["t1"]
