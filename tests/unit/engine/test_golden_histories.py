"""Recorded event logs (tests/golden/, see tests/support/golden.py) replay through
`transitions.apply` to exactly the projection the store held: a change to the state machine
that would read a stored log differently, as a restarted server reads every unfinished run's,
fails here."""

from __future__ import annotations

from pathlib import Path

import pytest

from sluice.engine.model import EventType, RunStatus
from sluice.engine.transitions import apply
from tests.support.golden import FOLDER, History, load, projection

HISTORIES = sorted(FOLDER.glob("*.json"))


def replayed(history: History) -> dict[str, object]:
    run = history.fresh_run()
    for event in history.events:
        applied = apply(run, event)
        assert (applied.sequence, applied.run_status) == (event.sequence, event.run_status), (
            f"event {event.sequence} ({event.type}) replays differently"
        )
    return projection(run)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_a_recorded_log_replays_to_its_stored_state(path: Path) -> None:
    history = load(path)
    assert [e.sequence for e in history.events] == list(range(1, len(history.events) + 1))
    assert replayed(history) == history.projection


def test_the_histories_cover_the_representative_runs() -> None:
    ends = {p.stem: load(p).projection["status"] for p in HISTORIES}
    assert ends == {
        "parallel_dag": RunStatus.COMPLETED,
        "retry_then_success": RunStatus.COMPLETED,
        "gate_pause_approve": RunStatus.COMPLETED,
        "cancel": RunStatus.CANCELLED,
        "required_step_fails": RunStatus.FAILED,
    }
    kinds = {p.stem: {e.type for e in load(p).events} for p in HISTORIES}
    assert EventType.STEP_RETRYING in kinds["retry_then_success"]
    assert {EventType.GATE_AWAITING_APPROVAL, EventType.GATE_APPROVED} <= kinds[
        "gate_pause_approve"
    ]
    assert EventType.STEP_CANCELLED in kinds["cancel"]


def test_a_log_missing_an_event_does_not_match() -> None:
    """The comparison has teeth: without a step's completion the state differs."""
    history = load(FOLDER / "parallel_dag.json")
    [completion] = [e for e in history.events
                    if e.type is EventType.STEP_COMPLETED and e.step_id == "a"]  # fmt: skip
    history.events.remove(completion)
    with pytest.raises(AssertionError):
        assert replayed(history) == history.projection
