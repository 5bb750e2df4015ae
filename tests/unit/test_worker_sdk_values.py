"""The worker SDK's pure parts: tasks as Python values, outcomes as requests, registration."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import json_format

from sluice.client import NonRetryableError, Task, TaskError, Worker
from sluice.client._outcome import MAX_ERROR_CHARS, Completed, Failed, raised, returned
from sluice.client._worker import default_worker_id, next_backoff
from sluice.v1 import worker_service_pb2 as pb


def test_a_task_arrives_as_plain_values() -> None:
    message = json_format.ParseDict(
        {
            "taskToken": "tok",
            "taskType": "images.resize",
            "workflowId": "run-1",
            "stepId": "b",
            "attempt": 2,
            "idempotencyKey": "run-1/b",
            "config": {"width": 640, "ratio": 1.5, "tags": ["a", 3], "nested": {"n": 2}},
            "params": {"topic": "x"},
            "inputs": {"a": {"url": "u", "size": 10}},
            "upstream": {"a": {"url": "u", "size": 10}, "root": {}},
            "heartbeatDeadline": "2026-11-30T12:00:10Z",
            "deadline": "2026-11-30T13:00:00Z",
            "retriesLeft": 1,
            "queueTime": "2026-11-30T11:59:59.500Z",
            "templateId": "t",
        },
        pb.Task(),
    )
    task = Task.from_proto(message)
    assert task.token == "tok" and task.task_type == "images.resize"
    assert (task.workflow_id, task.step_id, task.attempt) == ("run-1", "b", 2)
    assert task.idempotency_key == "run-1/b" and task.template_id == "t"
    # Whole numbers come back as int (a Struct holds doubles), others stay float.
    assert task.config == {"width": 640, "ratio": 1.5, "tags": ["a", 3], "nested": {"n": 2}}
    assert type(task.config["width"]) is int and type(task.config["tags"][1]) is int
    assert task.params == {"topic": "x"}
    assert task.inputs == {"a": {"url": "u", "size": 10}}
    assert task.upstream == {"a": {"url": "u", "size": 10}, "root": {}}
    assert task.deadline == datetime(2026, 11, 30, 13, tzinfo=UTC)
    assert task.queue_time == datetime(2026, 11, 30, 11, 59, 59, 500_000, tzinfo=UTC)
    assert task.retries_left == 1


def test_unset_times_are_none_and_huge_numbers_stay_float() -> None:
    message = pb.Task(task_token="t")
    message.config.update({"big": 2.0**60})
    task = Task.from_proto(message)
    assert task.deadline is None and task.queue_time is None
    assert task.config == {"big": 2.0**60} and type(task.config["big"]) is float
    assert task.inputs == {} and task.params == {}


def test_a_returned_dict_completes_the_step() -> None:
    outcome = returned({"url": "u", "n": 3, "items": [1, None, True]})
    assert isinstance(outcome, Completed)
    request = outcome.request("tok")
    assert request.task_token == "tok"
    assert json_format.MessageToDict(request.output) == {
        "url": "u",
        "n": 3,
        "items": [1, None, True],
    }


@pytest.mark.parametrize(
    ("value", "named"), [(None, "None"), ([1, 2], "list"), ("done", "str"), (3, "int")]
)
def test_anything_but_a_dict_fails_the_step_without_retry(value: object, named: str) -> None:
    outcome = returned(value)
    assert isinstance(outcome, Failed) and outcome.non_retryable
    assert f"returned {named}, not a JSON object" in outcome.error


def test_an_output_that_is_not_json_fails_the_step_without_retry() -> None:
    outcome = returned({"when": datetime.now(UTC)})
    assert isinstance(outcome, Failed) and outcome.non_retryable
    assert outcome.error.startswith("the handler's output is not a JSON object")


def test_a_plain_exception_is_retryable_and_names_its_type() -> None:
    assert raised(ValueError("bad input")) == Failed("ValueError: bad input")
    assert raised(TimeoutError()) == Failed("TimeoutError()")


def test_task_errors_say_how_to_fail() -> None:
    assert raised(NonRetryableError("card declined")) == Failed("card declined", True)
    later = raised(TaskError("rate limited", retry_after=30))
    assert later == Failed("rate limited", False, timedelta(seconds=30))
    request = later.request("tok")
    assert request.retry_after.ToTimedelta() == timedelta(seconds=30)
    assert not request.non_retryable and request.error == "rate limited"
    assert not raised(ValueError("x")).request("tok").HasField("retry_after")
    both = raised(TaskError("gone", non_retryable=True, retry_after=timedelta(minutes=1)))
    assert both.non_retryable and both.retry_after == timedelta(minutes=1)


def test_error_text_is_never_empty_nor_longer_than_the_server_takes() -> None:
    assert raised(TaskError("")).error == "TaskError"
    long = raised(RuntimeError("x" * 20_000)).error
    assert len(long) == MAX_ERROR_CHARS and long.endswith("…")


@pytest.mark.parametrize("delay", [-1, timedelta(hours=25)])
def test_retry_after_is_0_to_24_hours(delay: float | timedelta) -> None:
    with pytest.raises(ValueError, match="retry_after must be 0 to 24 hours"):
        TaskError("x", retry_after=delay)


def test_backoff_doubles_up_to_its_maximum() -> None:
    delays = [0.1]
    for _ in range(8):
        delays.append(next_backoff(delays[-1], 5.0))
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_the_default_worker_id_is_host_and_pid() -> None:
    assert re.fullmatch(r".+-\d+", default_worker_id())


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    worker = Worker("127.0.0.1:1", token="", worker_id="w")
    yield worker
    await worker.close()


async def handler(task: Task) -> dict[str, Any]:
    return {}


async def test_handlers_register_by_decorator_or_call(worker: Worker) -> None:
    @worker.task("images.resize")
    async def resize(task: Task) -> dict[str, Any]:
        return {"ok": True}

    worker.register("a:b/c-d_e", handler)
    assert worker.task_types == ["images.resize", "a:b/c-d_e"]
    assert resize.__name__ == "resize"  # the decorator gives the function back


async def test_bad_registrations_are_refused(worker: Worker) -> None:
    worker.register("echo", handler)
    with pytest.raises(ValueError, match="has a handler already"):
        worker.register("echo", handler)
    for bad in ("", "1abc", "has space", "x" * 101):
        with pytest.raises(ValueError, match="starting with a letter"):
            worker.register(bad, handler)

    def blocking(task: Task) -> dict[str, Any]:
        return {}

    with pytest.raises(TypeError, match="must be an async function"):
        worker.register("sync", blocking)  # type: ignore[arg-type]

    class Callable:
        async def __call__(self, task: Task) -> dict[str, Any]:
            return {}

    worker.register("object", Callable())


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ({"concurrency": 0}, "concurrency must be 1 to 1000"),
        ({"concurrency": 1001}, "concurrency must be 1 to 1000"),
        ({"heartbeat_interval": 0}, "heartbeat_interval must be positive"),
        ({"initial_backoff": 2, "max_backoff": 1}, "initial_backoff <= max_backoff"),
    ],
)
def test_bad_settings_are_refused(arguments: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Worker("127.0.0.1:1", **arguments)


async def test_a_worker_without_handlers_does_not_run(worker: Worker) -> None:
    with pytest.raises(ValueError, match="no handler registered"):
        await worker.run()
