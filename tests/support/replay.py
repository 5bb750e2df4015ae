"""Checks of a run's event log against its stored projection."""

from __future__ import annotations

from sluice.engine.model import Event, Run
from sluice.engine.ports import Store
from sluice.engine.transitions import apply


def replay(stored: Run, events: list[Event]) -> Run:
    """A fresh run with `events` applied; each must get the sequence and status it was stored with."""
    run = Run.new(
        id=stored.id, owner=stored.owner, template=stored.template, params=stored.params,
        now=stored.created_at,
    )  # fmt: skip
    for event in events:
        applied = apply(run, event)
        assert (applied.sequence, applied.run_status) == (event.sequence, event.run_status)
    return run


async def assert_log_matches_state(store: Store, owner: str, run_id: str) -> list[Event]:
    """The run's events are numbered 1..n with no gap and replay to the stored state.

    The run may still be moving (a step finishing in a paused run): the first `last_sequence`
    events are exactly what the run row we read had applied, since each commit writes both.
    """
    stored = await store.get_run(owner, run_id)
    assert stored is not None
    events = await store.list_events(run_id, 0, stored.last_sequence)
    assert [e.sequence for e in events] == list(range(1, stored.last_sequence + 1))
    replayed = replay(stored, events)
    assert replayed.status == stored.status
    assert replayed.steps == stored.steps
    assert replayed.gates == stored.gates
    assert (replayed.error, replayed.options, replayed.pause_reason) == (
        stored.error, stored.options, stored.pause_reason,
    )  # fmt: skip
    assert (replayed.rerun_of, replayed.rerun_from_step) == (
        stored.rerun_of, stored.rerun_from_step,
    )  # fmt: skip
    return events
