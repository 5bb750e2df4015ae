"""The pure side of GetAnalytics: buckets and their percentile error, windows of whole hours
and the days and hours that cover them, what a run adds, and the figures read from sums."""

from __future__ import annotations

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
    assert a.bucket_of(0.0) == a.MIN_BUCKET == a.bucket_of(1e-9)
    for seconds in (0.003, 0.7, 1.5, 10, 86400 * 30):
        k = a.bucket_of(seconds)
        assert 2 ** ((k - 1) / 4) < seconds <= 2 ** (k / 4)


@pytest.mark.parametrize("seed", range(20))
def test_a_percentile_from_buckets_is_within_the_documented_error(seed: int) -> None:
    rng = random.Random(seed)
    values = [rng.lognormvariate(rng.uniform(-6, 8), rng.uniform(0.1, 3)) for _ in range(500)]
    histogram: dict[int, int] = {}
    for v in values:
        histogram[a.bucket_of(v)] = histogram.get(a.bucket_of(v), 0) + 1
    ordered = sorted(values)
    figures = a.durations(histogram, sum(values))
    assert figures.count == len(values)
    assert figures.mean is not None
    assert figures.mean.total_seconds() == pytest.approx(sum(values) / len(values), rel=1e-6)
    for q, got in ((50, figures.p50), (95, figures.p95), (99, figures.p99)):
        exact = ordered[math.ceil(q / 100 * len(values)) - 1]  # nearest rank
        assert got is not None
        assert abs(got.total_seconds() / exact - 1) <= a.PERCENTILE_ERROR + 1e-6, (q, exact)
    assert pytest.approx(0.0905, abs=1e-4) == a.PERCENTILE_ERROR


def test_the_window_is_whole_hours_24_by_default() -> None:
    now = T + timedelta(minutes=17)
    assert a.window(None, None, now) == (T + H - 24 * H, T + H)
    assert a.window(T - timedelta(minutes=1), None, now) == (T - H, T + H)
    assert a.window(None, T, now) == (T - 24 * H, T)
    assert a.window(T + timedelta(seconds=1), T + 3 * H, now) == (T, T + 3 * H)


def test_a_window_reads_its_whole_days_as_days_and_the_rest_as_hours() -> None:
    day = datetime(2026, 3, 1, tzinfo=UTC)
    d = timedelta(days=1)
    assert a.spans(day + 5 * H, day + 2 * d + 7 * H) == [
        a.Span(a.HOUR, day + 5 * H, day + d),
        a.Span(a.DAY, day + d, day + 2 * d),
        a.Span(a.HOUR, day + 2 * d, day + 2 * d + 7 * H),
    ]
    assert a.spans(day, day + 30 * d) == [a.Span(a.DAY, day, day + 30 * d)]
    assert a.spans(day + H, day + 23 * H) == [a.Span(a.HOUR, day + H, day + 23 * H)]
    # A window inside one day, or across midnight without a whole day, is hours only.
    assert a.spans(day + 20 * H, day + d + 3 * H) == [a.Span(a.HOUR, day + 20 * H, day + d + 3 * H)]
    assert a.spans(day, day) == []


TEMPLATE = Template(
    "t",
    steps=(StepSpec("a", "generate"), StepSpec("b", "review"), StepSpec("c", "review")),
    gates=(GateSpec("g", GateType.THRESHOLD, "a", GateAction.ABORT),),
)


def test_a_run_adds_itself_its_own_steps_and_its_gates() -> None:
    steps = [
        StepRun("a", StepStatus.COMPLETED, 3, T, T + timedelta(seconds=10)),
        StepRun("b", StepStatus.COMPLETED, 0),  # a rerun took it over: not counted
        StepRun("c", StepStatus.SKIPPED),
    ]
    counts = a.counts_of_run(
        TEMPLATE, RunStatus.FAILED, T, T + timedelta(seconds=12), steps,
        [GateResult("g", GateStatus.FAILED)],
    )  # fmt: skip
    assert counts == [
        a.Count(a.RUN, "", "FAILED", a.bucket_of(12), 12.0, 0),
        a.Count(a.STEP, "generate", "COMPLETED", a.bucket_of(10), 10.0, 3),
        a.Count(a.STEP, "review", "SKIPPED", a.NO_DURATION, 0.0, 0),
        a.Count(a.GATE, "THRESHOLD", "FAILED", a.NO_DURATION, 0.0, 0),
    ]
    # Cancelled before it started: counted, without a duration.
    [run] = a.counts_of_run(TEMPLATE, RunStatus.CANCELLED, None, T, [], [])
    assert run.bucket == a.NO_DURATION


def test_figures_add_up_sums_and_leave_what_did_not_run_out_of_rates() -> None:
    query = a.AnalyticsQuery(T, T + H)
    b10 = a.bucket_of(10)
    sums = [
        a.Sum("t", a.RUN, "", "COMPLETED", b10, 3, 30.0, 0),
        a.Sum("t", a.RUN, "", "COMPLETED", b10, 1, 10.0, 0),  # the same key again (a day)
        a.Sum("t", a.RUN, "", "CANCELLED", a.NO_DURATION, 1, 0.0, 0),
        a.Sum("t", a.STEP, "review", "COMPLETED", b10, 2, 20.0, 3),
        a.Sum("t", a.STEP, "review", "SKIPPED", a.NO_DURATION, 5, 0.0, 0),
        a.Sum("t", a.STEP, "generate", "FAILED", b10, 1, 10.0, 1),
        a.Sum("t", a.GATE, "APPROVAL", "SKIPPED", a.NO_DURATION, 4, 0.0, 0),
        a.Sum("t", a.GATE, "THRESHOLD", "PASSED", a.NO_DURATION, 3, 0.0, 0),
        a.Sum("t", a.GATE, "THRESHOLD", "FAILED", a.NO_DURATION, 1, 0.0, 0),
    ]
    figures = a.summarize(query, sums)
    [template] = figures.templates
    assert template.outcomes == {RunStatus.COMPLETED: 4, RunStatus.CANCELLED: 1}
    assert template.runs == 5 and template.success_rate == 0.8
    assert template.durations.count == 4  # the cancelled run never started
    assert [s.step_type for s in figures.step_types] == ["generate", "review"]
    review = figures.step_types[1]
    assert review.steps == 7 and review.attempts == 3
    assert review.success_rate == 1.0, "skipped steps did not run: not in the rate"
    assert figures.step_types[0].success_rate == 0.0
    assert [g.gate_type for g in figures.gate_types] == [GateType.THRESHOLD, GateType.APPROVAL]
    assert figures.gate_types[0].pass_rate == 0.75
    assert figures.gate_types[1].pass_rate is None, "no verdict: no rate"

    only = a.summarize(a.AnalyticsQuery(T, T + H, step_type="review"), sums)
    assert [s.step_type for s in only.step_types] == ["review"]
    assert len(only.templates) == 1 and len(only.gate_types) == 2
