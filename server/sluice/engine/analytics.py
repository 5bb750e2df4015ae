"""Analytics over ended runs: what a run adds to the counts, and the figures read from them.

A run counts once, in the hour it ended (UTC), with its steps and gates. What it adds is a
handful of `Count`s: one for the run (its outcome and duration), one per step (its type,
outcome, duration and attempts) and one per gate (its type and final status). Stores keep
the sums of these by hour (and by day), so a window of any length reads hours or days, never
runs. Durations are kept as log-scale histograms (as Prometheus' native histograms): bucket
`k` holds the durations in (2^((k-1)/4), 2^(k/4)] seconds, and a percentile is read as the
geometric middle of the bucket that holds it, within 2^(1/8) (9.1 %) of the exact
nearest-rank value. Means are exact (sums of seconds).

Pure: no I/O. The store adds up Counts; `summarize` turns the sums into `Analytics`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar

from sluice.engine.model import (
    GateResult,
    GateStatus,
    GateType,
    RunStatus,
    StepRun,
    StepStatus,
    Template,
)

# Buckets per doubling of the duration: 4 keeps a percentile within 2^(1/8) of the truth.
BUCKETS_PER_DOUBLING = 4
# Relative error bound of a percentile read from the buckets (the half-bucket ratio, minus 1).
PERCENTILE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1
# Durations up to 2^-20 s (about 1 us, the clocks' resolution) share the lowest bucket.
MIN_BUCKET = -20 * BUCKETS_PER_DOUBLING
# The bucket of what has no duration: a skipped step, a gate, a run cancelled before it started.
NO_DURATION = -32768

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DEFAULT_WINDOW = timedelta(hours=24)

# What a Count is about (`Count.kind`).
RUN = "run"
STEP = "step"
GATE = "gate"


class Count(NamedTuple):
    """One run, step or gate that ended: what it adds to the sums (a count of one)."""

    kind: str  # RUN, STEP or GATE
    subject: str  # the step type, the gate type; "" for a run
    outcome: str  # its status at the run's end (RunStatus, StepStatus or GateStatus value)
    bucket: int  # its duration's bucket, or NO_DURATION
    seconds: float  # its duration (0 without one)
    attempts: int  # a step's attempts; 0 for runs and gates


class Sum(NamedTuple):
    """Counts added up (within one window and template), by (kind, subject, outcome, bucket)."""

    template_id: str
    kind: str
    subject: str
    outcome: str
    bucket: int
    n: int  # how many
    seconds: float
    attempts: int


def bucket_of(seconds: float) -> int:
    if seconds <= 2.0**-20:
        return MIN_BUCKET
    return max(MIN_BUCKET, math.ceil(math.log2(seconds) * BUCKETS_PER_DOUBLING))


def bucket_value(bucket: int) -> float:
    """The duration a bucket stands for: the geometric middle of its bounds (0 for the lowest,
    which starts at 0)."""
    if bucket <= MIN_BUCKET:
        return 0.0
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def _duration(start: datetime | None, end: datetime | None) -> tuple[int, float]:
    if start is None or end is None:
        return NO_DURATION, 0.0
    seconds = max(0.0, (end - start).total_seconds())
    return bucket_of(seconds), seconds


def counts_of_run(
    template: Template,
    status: RunStatus,
    started_at: datetime | None,
    ended_at: datetime | None,
    steps: Iterable[StepRun],
    gates: Iterable[GateResult],
) -> list[Count]:
    """What an ended run adds: itself (duration: start to end, pauses included; none when
    cancelled before it started), each step that is its own (duration: first attempt's start
    to the step's end, retries and their waits included; a rerun's steps taken over from the
    run it reruns are left out: they did not run here), and each gate (its final status)."""
    bucket, seconds = _duration(started_at, ended_at)
    found = [Count(RUN, "", status.value, bucket, seconds, 0)]
    specs = {s.id: s for s in template.steps}
    for step in steps:
        spec = specs.get(step.step_id)
        if spec is None or step.reused:
            continue
        bucket, seconds = _duration(step.started_at, step.ended_at)
        found.append(Count(STEP, spec.type, step.status.value, bucket, seconds, step.attempt))
    kinds = {g.id: g.type for g in template.gates}
    for gate in gates:
        kind = kinds.get(gate.gate_id)
        if kind is not None:
            found.append(Count(GATE, kind.value, gate.status.value, NO_DURATION, 0.0, 0))
    return found


# --- windows ---------------------------------------------------------------------------------


def floor_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


def _floor_day(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def window(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """The window counted, in whole hours (UTC): `start` rounded down, `end` up. Without
    `end`, up to the end of the current hour; without `start`, the 24 hours before `end`.
    The caller checks that start < end where both are given."""
    last = ceil_hour(end if end is not None else now)
    first = floor_hour(start) if start is not None else last - DEFAULT_WINDOW
    return first, last


class Span(NamedTuple):
    """A part of a window that stored sums cover: whole hours or whole days."""

    width: timedelta  # HOUR or DAY
    start: datetime
    end: datetime


def spans(start: datetime, end: datetime) -> list[Span]:
    """A window of whole hours as the fewest stored sums that cover it: its whole days (UTC)
    as days, the hours before the first and after the last as hours. 30 days read 30 days'
    sums and at most 46 hours', not 720 hours'."""
    first_day = _floor_day(start)
    if first_day < start:
        first_day += DAY
    last_day = _floor_day(end)
    if first_day >= last_day:
        return [Span(HOUR, start, end)] if start < end else []
    parts = [
        Span(HOUR, start, first_day),
        Span(DAY, first_day, last_day),
        Span(HOUR, last_day, end),
    ]
    return [p for p in parts if p.start < p.end]


def span_starts(ended_at: datetime) -> tuple[tuple[timedelta, datetime], ...]:
    """The stored sums a run that ended at `ended_at` adds to: its hour and its day."""
    hour = floor_hour(ended_at)
    return (HOUR, hour), (DAY, _floor_day(hour))


# --- figures ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    start: datetime  # inclusive, a whole hour (see `window`)
    end: datetime  # exclusive, a whole hour
    template_id: str = ""  # "": every template
    template_version: int = 0  # with template_id: only that version (0: every version)
    step_type: str = ""  # "": every step type (filters the step types' figures only)


@dataclass(frozen=True, slots=True)
class Durations:
    count: int = 0  # durations observed
    mean: timedelta | None = None  # exact
    p50: timedelta | None = None  # within PERCENTILE_ERROR
    p95: timedelta | None = None
    p99: timedelta | None = None


@dataclass(frozen=True, slots=True)
class TemplateFigures:
    template_id: str
    outcomes: Mapping[RunStatus, int]
    durations: Durations

    @property
    def runs(self) -> int:
        return sum(self.outcomes.values())

    @property
    def success_rate(self) -> float | None:
        """Completed runs over every run that ended (None: no run ended)."""
        return _rate(self.outcomes.get(RunStatus.COMPLETED, 0), self.runs)


@dataclass(frozen=True, slots=True)
class StepTypeFigures:
    step_type: str
    outcomes: Mapping[StepStatus, int]
    attempts: int
    durations: Durations

    @property
    def steps(self) -> int:
        return sum(self.outcomes.values())

    @property
    def success_rate(self) -> float | None:
        """Completed steps over the steps that ran (skipped ones did not: None when none ran)."""
        ran = self.steps - self.outcomes.get(StepStatus.SKIPPED, 0)
        return _rate(self.outcomes.get(StepStatus.COMPLETED, 0), ran)


@dataclass(frozen=True, slots=True)
class GateTypeFigures:
    gate_type: GateType
    outcomes: Mapping[GateStatus, int]

    @property
    def gates(self) -> int:
        return sum(self.outcomes.values())

    @property
    def pass_rate(self) -> float | None:
        """Passed or approved gates over the gates that got a verdict (None: none did)."""
        o = self.outcomes
        passed = o.get(GateStatus.PASSED, 0) + o.get(GateStatus.APPROVED, 0)
        decided = passed + o.get(GateStatus.FAILED, 0) + o.get(GateStatus.REJECTED, 0)
        return _rate(passed, decided)


@dataclass(frozen=True, slots=True)
class Analytics:
    start: datetime
    end: datetime
    templates: list[TemplateFigures] = field(default_factory=list)
    step_types: list[StepTypeFigures] = field(default_factory=list)
    gate_types: list[GateTypeFigures] = field(default_factory=list)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percentile(histogram: Sequence[tuple[int, int]], q: float) -> float:
    """The q-th percentile (0 < q <= 100, nearest rank) of a histogram of (bucket, count) in
    ascending bucket order, as the value its bucket stands for."""
    total = sum(n for _, n in histogram)
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for bucket, n in histogram:
        seen += n
        if seen >= rank:
            return bucket_value(bucket)
    raise ValueError("empty histogram")


def durations(histogram: Mapping[int, int], seconds: float) -> Durations:
    """Figures of a histogram (bucket -> count; NO_DURATION left out) and its sum."""
    ordered = sorted((b, n) for b, n in histogram.items() if n > 0 and b != NO_DURATION)
    count = sum(n for _, n in ordered)
    if not count:
        return Durations()

    def at(q: float) -> timedelta:
        return timedelta(seconds=percentile(ordered, q))

    return Durations(count, timedelta(seconds=seconds / count), at(50), at(95), at(99))


class _Tally:
    def __init__(self) -> None:
        self.outcomes: dict[str, int] = defaultdict(int)
        self.histogram: dict[int, int] = defaultdict(int)
        self.seconds = 0.0
        self.attempts = 0

    def add(self, s: Sum) -> None:
        self.outcomes[s.outcome] += s.n
        self.attempts += s.attempts
        if s.bucket != NO_DURATION:
            self.histogram[s.bucket] += s.n
            self.seconds += s.seconds

    def durations(self) -> Durations:
        return durations(self.histogram, self.seconds)


def summarize(query: AnalyticsQuery, sums: Iterable[Sum]) -> Analytics:
    """The figures of a window from its sums (rows of one key may come several times: hours
    and days, several stored rows): per template, per step type, per gate type, by name."""
    templates: dict[str, _Tally] = defaultdict(_Tally)
    step_types: dict[str, _Tally] = defaultdict(_Tally)
    gate_types: dict[str, _Tally] = defaultdict(_Tally)
    for s in sums:
        if s.kind == RUN:
            templates[s.template_id].add(s)
        elif s.kind == STEP and (not query.step_type or s.subject == query.step_type):
            step_types[s.subject].add(s)
        elif s.kind == GATE:
            gate_types[s.subject].add(s)
    return Analytics(
        start=query.start,
        end=query.end,
        templates=[
            TemplateFigures(t, _outcomes(RunStatus, tally), tally.durations())
            for t, tally in sorted(templates.items())
        ],
        step_types=[
            StepTypeFigures(t, _outcomes(StepStatus, tally), tally.attempts, tally.durations())
            for t, tally in sorted(step_types.items())
        ],
        gate_types=[
            GateTypeFigures(kind, _outcomes(GateStatus, gate_types[kind.value]))
            for kind in GateType  # in the enum's order
            if kind.value in gate_types
        ],
    )


E = TypeVar("E", RunStatus, StepStatus, GateStatus)


def _outcomes(kind: type[E], tally: _Tally) -> dict[E, int]:
    return {kind(o): n for o, n in sorted(tally.outcomes.items()) if n and o in kind.__members__}
