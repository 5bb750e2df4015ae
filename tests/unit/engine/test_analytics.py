"""The pure side of GetAnalytics: buckets and their percentile error, windows of whole hours
and the days and hours that cover them, what a run adds, and the figures read from sums."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest

from sluice.engine import analytics as a
from sluice.engine.model import (
    GateAction,
    GateResult,
    GateSpec,
    GateStatus,
    GateType,
    Run,
    RunStatus,
    StepRun,
    StepSpec,
    StepStatus,
    Template,
)

H = timedelta(hours=1)
T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_buckets_hold_their_upper_bound_and_grow_by_a_quarter_doubling() -> None:
    assert a.bucket_of(1.0) == 0
    assert a.bucket_of(1.0001) == 1
    assert a.bucket_of(2.0) == 4
    assert a.bucket_of(0.5) == -4
    for seconds in (0.003, 0.7, 1.5, 10, 86400 * 30):
        k = a.bucket_of(seconds)
        assert 2 ** ((k - 1) / 4) < seconds <= 2 ** (k / 4)
    # Outside the range: the end buckets (0.24 ms, 48.5 days).
    assert a.bucket_of(0.0) == a.bucket_of(1e-9) == a.MIN_BUCKET == -48
    assert a.bucket_of(86400 * 365) == a.MAX_BUCKET == 88
    assert a.BUCKETS == 137 == len([v for v in a.VALUES if v.startswith("h")])


def _tally(values: list[float]) -> a.Tally:
    tally = a.Tally()
    for v in values:
        tally.add(a.Count(a.STEP, "x", "completed", v, 1))
    return tally


@pytest.mark.parametrize("seed", range(20))
def test_a_percentile_from_buckets_is_within_the_documented_error(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(rng.uniform(-6, 8), rng.uniform(0.1, 3)) for _ in range(500)]
    values = [min(max(v, 0.001), 86400 * 40) for v in values]  # within the histogram's range
    ordered = sorted(values)
    figures = _tally(values).durations()
    assert figures.count == len(values)
    assert figures.mean is not None
    assert figures.mean.total_seconds() == pytest.approx(sum(values) / len(values), rel=1e-6)
    for q, got in ((50, figures.p50), (95, figures.p95), (99, figures.p99)):
        exact = ordered[math.ceil(q / 100 * len(values)) - 1]  # nearest rank
        assert got is not None
        assert abs(got.total_seconds() / exact - 1) <= a.PERCENTILE_ERROR + 1e-6, (q, exact)
    assert pytest.approx(0.0905, abs=1e-4) == a.PERCENTILE_ERROR


def test_a_tally_goes_to_its_stored_values_and_back() -> None:
    tally = _tally([0.5, 2.0, 2.0])
    tally.add(a.Count(a.STEP, "x", "skipped", None, 0))
    back = a.Tally.of(tally.values())
    assert back.values() == tally.values()
    assert len(tally.values()) == len(a.VALUES)
    assert back.outcomes[a.OUTCOMES.index("skipped")] == 1 and back.timed == 3
    merged = a.Tally()
    merged.merge(tally)
    merged.merge(back)
    assert merged.timed == 6 and merged.seconds == 9.0


def test_the_window_is_whole_hours_24_by_default() -> None:
    now = T + timedelta(minutes=17)
    assert a.window(None, None, now) == (T + H - 24 * H, T + H)
    assert a.window(T - timedelta(minutes=1), None, now) == (T - H, T + H)
    assert a.window(None, T, now) == (T - 24 * H, T)
    assert a.window(T + timedelta(seconds=1), T + 3 * H, now) == (T, T + 3 * H)


def test_a_window_reads_whole_days_then_6_hours_then_hours() -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    d = timedelta(days=1)
    assert a.spans(day + 5 * H, day + 2 * d + 13 * H) == [
        a.Span(a.HOUR, day + 5 * H, day + 6 * H),
        a.Span(a.SIX_HOURS, day + 6 * H, day + d),
        a.Span(a.DAY, day + d, day + 2 * d),
        a.Span(a.SIX_HOURS, day + 2 * d, day + 2 * d + 12 * H),
        a.Span(a.HOUR, day + 2 * d + 12 * H, day + 2 * d + 13 * H),
    ]
    assert a.spans(day, day + 30 * d) == [a.Span(a.DAY, day, day + 30 * d)]
    assert a.spans(day + H, day + 5 * H) == [a.Span(a.HOUR, day + H, day + 5 * H)]
    # Across midnight without a whole day: 6-hour spans and hours.
    assert a.spans(day + 17 * H, day + d + 7 * H) == [
        a.Span(a.HOUR, day + 17 * H, day + 18 * H),
        a.Span(a.SIX_HOURS, day + 18 * H, day + d + 6 * H),
        a.Span(a.HOUR, day + d + 6 * H, day + d + 7 * H),
    ]
    assert a.spans(day, day) == []
    # An unaligned 30 days: 5 ranges (of 28 days, 6 six-hours and 6 hours in all), where
    # hours alone would be 714.
    worst = a.spans(day + 5 * H, day + 30 * d - H)
    assert [sum(1 for s in worst if s.width == w) for w in a.WIDTHS] == [2, 2, 1]
    assert [(s.end - s.start) // s.width for s in worst] == [1, 3, 28, 3, 5]
    for ended in (day + 5 * H + timedelta(minutes=3), day + 29 * d + 22 * H):
        starts = a.span_starts(ended)
        assert (
            sum(1 for w, s in starts for p in worst if p.width == w and p.start <= s < p.end) == 1
        )


TEMPLATE = Template(
    "t",
    steps=(StepSpec("a", "generate"), StepSpec("b", "review"), StepSpec("c", "review")),
    gates=(GateSpec("g", GateType.THRESHOLD, "a", GateAction.ABORT),),
)


def _ended(status: RunStatus, started: datetime | None, ended: datetime) -> Run:
    run = Run.new(id="r", owner="o", template=TEMPLATE, params={}, now=T)
    run.status, run.started_at, run.ended_at = status, started, ended
    return run


def test_a_run_adds_itself_its_own_steps_and_its_gates() -> None:
    run = _ended(RunStatus.FAILED, T, T + timedelta(seconds=12))
    run.steps["a"] = StepRun("a", StepStatus.COMPLETED, 3, T, T + timedelta(seconds=10))
    run.steps["b"] = StepRun("b", StepStatus.COMPLETED, 0)  # a rerun took it over: not counted
    run.steps["c"] = StepRun("c", StepStatus.SKIPPED)
    run.gates["g"] = GateResult("g", GateStatus.FAILED)
    assert a.counts_of(run) == [
        a.Count(a.RUN, "", "failed", 12.0, 0),
        a.Count(a.STEP, "generate", "completed", 10.0, 3),
        a.Count(a.STEP, "review", "skipped", None, 0),
        a.Count(a.GATE, "THRESHOLD", "failed", None, 0),
    ]
    # Cancelled before it started: counted, without a duration; a gate still waiting.
    cancelled = _ended(RunStatus.CANCELLED, None, T)
    cancelled.steps.clear()
    cancelled.gates["g"] = GateResult("g", GateStatus.AWAITING_APPROVAL)
    run_count, gate = a.counts_of(cancelled)
    assert (run_count.outcome, run_count.seconds, gate.outcome) == ("cancelled", None, "undecided")


def test_figures_add_up_sums_and_leave_what_did_not_run_out_of_rates() -> None:
    def sums(kind: str, subject: str, *counts: tuple[str, float | None, int]) -> a.Sums:
        tally = a.Tally()
        for outcome, seconds, attempts in counts:
            tally.add(a.Count(kind, subject, outcome, seconds, attempts))
        return a.Sums("t", kind, subject, tally)

    done = ("completed", 10.0, 0)
    rows = [
        sums(a.RUN, "", done, done, done),
        sums(a.RUN, "", done),  # the same key again (another span)
        sums(a.RUN, "", ("cancelled", None, 0)),
        sums(a.STEP, "review", ("completed", 10.0, 2), ("completed", 10.0, 1),
             *[("skipped", None, 0)] * 5),
        sums(a.STEP, "generate", ("failed", 10.0, 1)),
        sums(a.GATE, "APPROVAL", *[("skipped", None, 0)] * 4),
        sums(a.GATE, "THRESHOLD", *[("passed", None, 0)] * 3, ("failed", None, 0)),
    ]  # fmt: skip
    figures = a.summarize(a.AnalyticsQuery(T, T + H), rows)
    [template] = figures.templates
    assert template.outcomes == {"completed": 4, "cancelled": 1}
    assert template.total == 5 and template.success_rate == 0.8
    assert template.durations.count == 4  # the cancelled run never started
    assert [s.name for s in figures.step_types] == ["generate", "review"]
    review = figures.step_types[1]
    assert review.total == 7 and review.attempts == 3
    assert review.success_rate == 1.0, "skipped steps did not run: not in the rate"
    assert figures.step_types[0].success_rate == 0.0
    assert [g.gate_type for g in figures.gate_types] == [GateType.THRESHOLD, GateType.APPROVAL]
    assert figures.gate_types[0].pass_rate == 0.75
    assert figures.gate_types[1].pass_rate is None, "no verdict: no rate"

    only = a.summarize(a.AnalyticsQuery(T, T + H, step_type="review"), rows)
    assert [s.name for s in only.step_types] == ["review"]
    assert len(only.templates) == 1 and len(only.gate_types) == 2


def test_counts_go_into_a_queue_row_and_back_and_odd_rows_are_refused() -> None:
    run = _ended(RunStatus.COMPLETED, T, T + timedelta(seconds=3))
    stored = json.loads(json.dumps(a.flat_counts_of(run)))  # as the queue's JSON column keeps it
    # (Steps and a gate left PENDING: no run ends so, but they would count as undecided.)
    assert (
        a.decode(stored)
        == a.counts_of(run)
        == [
            a.Count(a.RUN, "", "completed", 3.0, 0),
            a.Count(a.STEP, "generate", "undecided", None, 0),
            a.Count(a.STEP, "review", "undecided", None, 0),
            a.Count(a.STEP, "review", "undecided", None, 0),
            a.Count(a.GATE, "THRESHOLD", "undecided", None, 0),
        ]
    )
    bad_rows: list[list[str | float | int | None]] = [
        stored[:-1], ["run", "", "exploded", None, 0], ["swim", "", "failed", 1.0, 0],
    ]  # fmt: skip
    for bad in bad_rows:
        with pytest.raises(ValueError, match=r"not counts|another kind"):
            a.decode(bad)
