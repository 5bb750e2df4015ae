"""Following a run's events until it rests, shown live, as log lines or as JSON lines."""

from __future__ import annotations

import contextlib
import copy
import sys
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from sluice.cli import render
from sluice.cli.state import RunView
from sluice.client import (
    EventType,
    SluiceError,
    Workflow,
    WorkflowClient,
    WorkflowEvent,
    WorkflowStatus,
)


class Sink(Protocol):
    """Where a followed run's events and its resting state go; `reconnecting` says the stream
    broke (a restarting server) and is reopened after `delay` seconds; the next event means it
    is back."""

    def event(self, event: WorkflowEvent, view: RunView) -> None: ...
    def reconnecting(self, error: SluiceError, delay: float) -> None: ...
    def finish(self, workflow: Workflow) -> None: ...


async def follow_run(
    client: WorkflowClient,
    workflow: Workflow,
    sink: Sink,
    *,
    after: int = 0,
    follow: bool = False,
    stop_when_paused: bool = False,
) -> Workflow:
    """Feed the run's events to `sink` until the run ends (or, with `stop_when_paused`, rests
    paused with no step running), then give it the final Workflow and return that."""
    view = initial_view(workflow, after)
    watch = client.watch(
        workflow.id, after_sequence=after, follow=follow, reconnect=True,
        on_reconnect=sink.reconnecting,
    )  # fmt: skip
    # aclosing: leaving the loop early must cancel the stream now, not when the GC runs.
    async with contextlib.aclosing(watch) as events:
        async for event in events:
            view.apply(event)
            sink.event(event, view)
            if stop_when_paused and await _rests_paused(client, view):
                break
    final = await client.get_workflow(workflow.id)
    sink.finish(final)
    return final


def initial_view(workflow: Workflow, after: int) -> RunView:
    # From the start, the events rebuild everything, so the view starts blank rather than from a
    # snapshot that replayed events would briefly walk backwards; after N, the snapshot is best.
    return RunView.of(workflow) if after else RunView.blank(workflow)


async def _rests_paused(client: WorkflowClient, view: RunView) -> bool:
    if view.status != WorkflowStatus.WORKFLOW_STATUS_PAUSED or view.active:
        return False
    # Replayed events may show a pause the run has since left; only the server knows it rests.
    current = RunView.of(await client.get_workflow(view.id))
    return current.status == WorkflowStatus.WORKFLOW_STATUS_PAUSED and not current.active


class _StderrNotice:
    """For output that may be a pipe: a line on stderr when the stream breaks and another when
    events flow again (stdout keeps only the run's output)."""

    def __init__(self) -> None:
        self._broken = False

    def reconnecting(self, error: SluiceError, delay: float) -> None:
        if not self._broken:  # once per break, not once per try
            print(render.reconnecting_notice(error, delay), file=sys.stderr, flush=True)
        self._broken = True

    def _events_flow(self) -> None:
        if self._broken:
            print("reconnected: events flow again", file=sys.stderr, flush=True)
        self._broken = False


class PlainSink(_StderrNotice):
    """One line per event, then the outcome: for logs and pipes.

    With `hint_on_pause` (a watch that waits through pauses), a pause is followed by the command
    that continues the run, since nothing else will be printed until someone runs it.
    """

    def __init__(self, *, hint_on_pause: bool = False) -> None:
        super().__init__()
        self._hint_on_pause = hint_on_pause

    def event(self, event: WorkflowEvent, view: RunView) -> None:
        self._events_flow()
        print(render.event_line(event), flush=True)
        if self._hint_on_pause and event.type == EventType.EVENT_TYPE_WORKFLOW_PAUSED:
            for line in render.pause_hint(view.id, view.paused_gate_id, view.pause_reason):
                print(f"  {line}", flush=True)

    def finish(self, workflow: Workflow) -> None:
        _print_outcome(workflow)


class JsonLinesSink(_StderrNotice):
    """One compact proto-JSON object per event (`watch --json`)."""

    def event(self, event: WorkflowEvent, view: RunView) -> None:
        self._events_flow()
        print(render.to_json(event, compact=True), flush=True)

    def finish(self, workflow: Workflow) -> None:
        pass


class FinalJsonSink(_StderrNotice):
    """Nothing while the run goes, then the final Workflow (`run --json`)."""

    def event(self, event: WorkflowEvent, view: RunView) -> None:
        self._events_flow()

    def finish(self, workflow: Workflow) -> None:
        print(render.to_json(workflow), flush=True)


class LiveSink:
    """A rich Live view: steps, gates and progress redrawn as events arrive.

    Use as a context manager around `follow_run`, so the terminal is restored on any exit.
    """

    def __init__(self, workflow: Workflow, console: Console, *, after: int = 0) -> None:
        self._view = initial_view(workflow, after)
        self._waiting = True  # until finish(): show how to continue a pause inside the frame
        self._notice = ""  # while the stream is broken: a line in the frame
        self._console = console
        self._live = Live(self, console=console, refresh_per_second=4, transient=False)

    def __enter__(self) -> LiveSink:
        self._live.start(refresh=True)
        return self

    def __exit__(self, *_: object) -> None:
        self._live.stop()

    def __rich__(self) -> RenderableType:
        # Rendered on every refresh, so running steps' durations keep counting between events.
        frame = render.run_view(self._view, hint=self._waiting)
        return Group(frame, "", Text(self._notice, style="yellow")) if self._notice else frame

    def event(self, event: WorkflowEvent, view: RunView) -> None:
        # A copy: Live redraws from its own thread while the loop goes on changing `view`.
        self._view, self._notice = copy.deepcopy(view), ""
        self._live.refresh()

    def reconnecting(self, error: SluiceError, delay: float) -> None:
        self._notice = render.reconnecting_notice(error, delay)
        self._live.refresh()

    def finish(self, workflow: Workflow) -> None:
        self._view, self._waiting = RunView.of(workflow), False
        self._live.refresh()
        self._live.stop()
        for line in render.metrics_lines(workflow) + render.next_step_hint(workflow):
            # soft_wrap: a wrapped `sluice approve ...` line could not be pasted back.
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_outcome(workflow: Workflow) -> None:
    for line in render.metrics_lines(workflow) + render.next_step_hint(workflow):
        print(line, flush=True)
