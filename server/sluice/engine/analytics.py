"""Analytics over ended runs: what a run adds to the counts, and the figures read from them.

A run counts once, in the hour it ended (UTC), with its steps and gates. What it adds is a
handful of `Count`s: one for the run (its outcome and duration), one per step (its type,
outcome, duration and attempts) and one per gate (its type and final status). Stores keep
`Tally`s, the sums of these, per template and (kind, subject) by hour, by 6 hours and by day,
so a window of any length reads a few dozen spans, never runs. Durations are kept as
log-scale histograms (as Prometheus' native histograms): bucket `k` holds the durations in
(2^((k-1)/4), 2^(k/4)] seconds, and a percentile is read as the geometric middle of the bucket
that holds it, within 2^(1/8) (9.1 %) of the exact nearest-rank value. Means are exact.

Pure: no I/O. Stores add up Counts into Tallies; `summarize` turns Tallies into `Analytics`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from sluice.engine.model import GateStatus, GateType, Run, RunStatus, StepStatus, Template

# Buckets per doubling of the duration: 4 keeps a percentile within 2^(1/8) of the truth.
BUCKETS_PER_DOUBLING = 4
# Relative error bound of a percentile read from the buckets (the half-bucket ratio, minus 1).
PERCENTILE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1
# The histogram's range: durations up to 2^-12 s (0.24 ms) count in the lowest bucket, those
# over 2^22 s (48.5 days) in the highest; the percentile error holds in between.
MIN_BUCKET = -12 * BUCKETS_PER_DOUBLING
MAX_BUCKET = 22 * BUCKETS_PER_DOUBLING
BUCKETS = MAX_BUCKET - MIN_BUCKET + 1
# What a Tally counts by outcome: a status at the run's end, lower case. Runs end completed,
# failed or cancelled; steps completed, failed, skipped or cancelled; gates passed, failed,
# approved, rejected or skipped; anything else (a gate still waiting) is "undecided".
OUTCOMES = (
    "completed", "failed", "cancelled", "skipped", "passed", "approved", "rejected", "undecided",
)  # fmt: skip
_OUTCOME_INDEX = {name: i for i, name in enumerate(OUTCOMES)}
# A Tally as stored: its outcome counts, attempts, durations observed, their sum in seconds
# and the histogram (h0 is bucket MIN_BUCKET).
VALUES = (*OUTCOMES, "attempts", "timed", "seconds", *(f"h{i}" for i in range(BUCKETS)))

HOUR = timedelta(hours=1)
SIX_HOURS = timedelta(hours=6)
DAY = timedelta(days=1)
WIDTHS = (HOUR, SIX_HOURS, DAY)  # the spans stores keep sums for
DEFAULT_WINDOW = timedelta(hours=24)

# What a Count is about (`Count.kind`).
RUN = "run"
STEP = "step"
GATE = "gate"


class Count(NamedTuple):
    """One run, step or gate that ended: what it adds to the sums (a count of one)."""

    kind: str  # RUN, STEP or GATE
    subject: str  # the step type, the gate type; "" for a run
    outcome: str  # one of OUTCOMES
    seconds: float | None  # its duration (None: it has none)
    attempts: int  # a step's attempts; 0 for runs and gates


def bucket_of(seconds: float) -> int:
    if seconds <= 2.0 ** (MIN_BUCKET / BUCKETS_PER_DOUBLING):
        return MIN_BUCKET
    return min(MAX_BUCKET, math.ceil(math.log2(seconds) * BUCKETS_PER_DOUBLING))


def bucket_value(bucket: int) -> float:
    """The duration a bucket stands for: the geometric middle of its bounds."""
    return float(2 ** ((bucket - 0.5) / BUCKETS_PER_DOUBLING))


def outcome_of(status: str) -> str:
    """The outcome a status at a run's end counts as (a status enum member is its value)."""
    found = _OUTCOME_OF.get(status)
    if found is None:
        name = status.lower()
        found = name if name in _OUTCOME_INDEX else "undecided"
    return found


# Every status there is, looked up once: this runs for each step of every run that ends.
_OUTCOME_OF: dict[str, str] = {}
_OUTCOME_OF.update(
    (s.value, outcome_of(s.value)) for kind in (RunStatus, StepStatus, GateStatus) for s in kind
)


class Tally:
    """Counts added up: per outcome, attempts, and the durations (their number, sum and
    histogram). Mutable, for the store that adds them up."""

    __slots__ = ("attempts", "histogram", "outcomes", "seconds", "timed")

    def __init__(self) -> None:
        self.outcomes = [0] * len(OUTCOMES)
        self.attempts = 0
        self.timed = 0
        self.seconds = 0.0
        self.histogram = [0] * BUCKETS

    def add(self, count: Count) -> None:
        self.outcomes[_OUTCOME_INDEX[count.outcome]] += 1
        self.attempts += count.attempts
        if count.seconds is not None:
            self.timed += 1
            self.seconds += count.seconds
            self.histogram[bucket_of(count.seconds) - MIN_BUCKET] += 1

    def merge(self, other: Tally) -> None:
        for i, n in enumerate(other.outcomes):
            self.outcomes[i] += n
        self.attempts += other.attempts
        self.timed += other.timed
        self.seconds += other.seconds
        for i, n in enumerate(other.histogram):
            if n:
                self.histogram[i] += n

    def values(self) -> tuple[float, ...]:
        """In the order of VALUES."""
        return (*self.outcomes, self.attempts, self.timed, self.seconds, *self.histogram)

    @classmethod
    def of(cls, values: Sequence[float]) -> Tally:
        """From values in the order of VALUES (as a store reads them back)."""
        tally = cls()
        n = len(OUTCOMES)
        tally.outcomes = [int(v) for v in values[:n]]
        tally.attempts, tally.timed = int(values[n]), int(values[n + 1])
        tally.seconds = float(values[n + 2])
        tally.histogram = [int(v) for v in values[n + 3 :]]
        return tally

    def durations(self) -> Durations:
        if not self.timed:
            return Durations()

        def at(q: float) -> timedelta:
            return timedelta(seconds=percentile(self.histogram, q))

        mean = timedelta(seconds=self.seconds / self.timed)
        return Durations(self.timed, mean, at(50), at(95), at(99))


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """A duration as counted (None without both ends); stores compute it in SQL instead."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


# How a step ended: (step id, StepStatus value, attempt (0: a rerun took its output over from
# the run it reruns), seconds from its first attempt's start to its end or None).
StepEnd = tuple[str, str, int, float | None]


# Counts as a queue row keeps them: one flat list, five values a count (kind, subject, outcome,
# seconds or None, attempts). Made straight from a run as its commit ends it, without a Count
# per step or a list of lists, which took three times as long on the path of every run's end.
Flat = list[str | float | int | None]


def flat_counts(
    template: Template,
    status: str,
    seconds: float | None,
    steps: Iterable[StepEnd],
    gates: Iterable[tuple[str, str]],
) -> Flat:
    """What an ended run adds: itself (`status`, a RunStatus value; `seconds`: from its start
    to its end, pauses included; None when cancelled before it started), each step that is its
    own (duration: first attempt's start to the step's end, retries and their waits included;
    a rerun's steps taken over from the run it reruns are left out: they did not run here),
    and each gate ((gate id, GateStatus value) at the run's end)."""
    outcomes = _OUTCOME_OF
    found: Flat = [RUN, "", outcomes.get(status) or outcome_of(status), _clamped(seconds), 0]
    types = {s.id: s.type for s in template.steps}
    for step_id, step_status, attempt, step_seconds in steps:
        kind = types.get(step_id)
        if kind is None or (attempt == 0 and step_status == "COMPLETED"):  # unknown; reused
            continue
        outcome = outcomes.get(step_status) or outcome_of(step_status)
        found += (STEP, kind, outcome, _clamped(step_seconds), attempt)
    if template.gates:
        gate_types = {g.id: g.type for g in template.gates}
        for gate_id, gate_status in gates:
            gate_type = gate_types.get(gate_id)
            if gate_type is not None:
                found += (GATE, gate_type.value, outcome_of(gate_status), None, 0)
    return found


def flat_counts_of(run: Run) -> Flat:
    """`flat_counts` of an ended run in memory (its statuses are str enums: their values)."""
    return flat_counts(
        run.template, run.status, seconds_between(run.started_at, run.ended_at),
        [(s.step_id, s.status, s.attempt,
          None if s.started_at is None or s.ended_at is None
          else (s.ended_at - s.started_at).total_seconds())
         for s in run.steps.values()],
        [(g.gate_id, g.status) for g in run.gates.values()],
    )  # fmt: skip


def counts_of(run: Run) -> list[Count]:
    return decode(flat_counts_of(run))


def decode(values: Sequence[str | float | int | None]) -> list[Count]:
    """Flat counts (`flat_counts`) as Counts; ValueError for values that are not counts."""
    width = len(Count._fields)
    if len(values) % width:
        raise ValueError(f"{len(values)} values are not counts of {width}")
    counts = [Count(*values[i : i + width]) for i in range(0, len(values), width)]  # type: ignore[arg-type]
    if any(c.outcome not in _OUTCOME_INDEX or c.kind not in (RUN, STEP, GATE) for c in counts):
        raise ValueError(f"a count of another kind or an outcome not in {OUTCOMES}")
    return counts


def _clamped(seconds: float | None) -> float | None:
    # A clock set back between a start and an end: no negative duration.
    return seconds if seconds is None or seconds >= 0 else 0.0


# --- windows ---------------------------------------------------------------------------------


def floor_hour(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return at.replace(minute=0, second=0, microsecond=0)


def ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + HOUR


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _floor(at: datetime, width: timedelta) -> datetime:
    """`at` rounded down to a multiple of `width` since the epoch (UTC midnight, so days are
    UTC days and 6-hour spans start at 00, 06, 12 and 18 UTC)."""
    return _EPOCH + (at - _EPOCH) // width * width


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
    """A part of a window that stored sums cover: consecutive spans of one width."""

    width: timedelta  # one of WIDTHS
    start: datetime
    end: datetime


def spans(start: datetime, end: datetime, widths: Sequence[timedelta] = WIDTHS) -> list[Span]:
    """A window of whole hours as the fewest stored sums that cover it: its whole days as
    days, the whole 6-hour spans on either side as those, the rest as hours. 30 days read
    at most 30 days', 6 six-hours' and 10 hours' sums, not 720 hours'."""
    if start >= end:
        return []
    *smaller, width = widths
    if not smaller:  # the narrowest: whatever is left
        return [Span(width, start, end)]
    first = _floor(start, width)
    if first < start:
        first += width
    last = _floor(end, width)
    if first >= last:
        return spans(start, end, smaller)
    middle = Span(width, first, last)
    return [*spans(start, first, smaller), middle, *spans(last, end, smaller)]


def span_starts(ended_at: datetime) -> list[tuple[timedelta, datetime]]:
    """The stored sums a run that ended at `ended_at` adds to: its hour, 6 hours and day."""
    return [(width, _floor(ended_at, width)) for width in WIDTHS]


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
class Figures:
    """A template's runs, a step type's steps or a gate type's gates that ended."""

    name: str  # the template id, step type or gate type
    outcomes: Mapping[str, int]  # by outcome (see OUTCOMES), those that occurred
    attempts: int
    durations: Durations

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)


class TemplateFigures(Figures):
    __slots__ = ()

    @property
    def success_rate(self) -> float | None:
        """Completed runs over every run that ended (None: no run ended)."""
        return _rate(self.count("completed"), self.total)


class StepTypeFigures(Figures):
    __slots__ = ()

    @property
    def success_rate(self) -> float | None:
        """Completed steps over the steps that ran (skipped ones did not: None when none ran)."""
        return _rate(self.count("completed"), self.total - self.count("skipped"))


class GateTypeFigures(Figures):
    __slots__ = ()

    @property
    def gate_type(self) -> GateType:
        return GateType(self.name)

    @property
    def pass_rate(self) -> float | None:
        """Passed or approved gates over the gates that got a verdict (None: none did)."""
        passed = self.count("passed") + self.count("approved")
        return _rate(passed, passed + self.count("failed") + self.count("rejected"))


@dataclass(frozen=True, slots=True)
class Analytics:
    start: datetime
    end: datetime
    templates: list[TemplateFigures] = field(default_factory=list)
    step_types: list[StepTypeFigures] = field(default_factory=list)
    gate_types: list[GateTypeFigures] = field(default_factory=list)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def percentile(histogram: Sequence[int], q: float) -> float:
    """The q-th percentile (0 < q <= 100, nearest rank) of a histogram (counts by bucket,
    from MIN_BUCKET up), as the value its bucket stands for."""
    total = sum(histogram)
    rank = max(1, math.ceil(q / 100 * total))
    seen = 0
    for i, n in enumerate(histogram):
        seen += n
        if seen >= rank:
            return bucket_value(MIN_BUCKET + i)
    raise ValueError("empty histogram")


class Sums(NamedTuple):
    """Stored sums of one template and (kind, subject), over some span."""

    template_id: str
    kind: str
    subject: str
    tally: Tally


def summarize(query: AnalyticsQuery, sums: Iterable[Sums]) -> Analytics:
    """The figures of a window from its sums (one key may come several times: spans of
    several widths): per template, per step type, per gate type, each by name."""
    groups: dict[tuple[str, str], Tally] = {}
    for s in sums:
        if s.kind == STEP and query.step_type and s.subject != query.step_type:
            continue
        key = (s.kind, s.template_id if s.kind == RUN else s.subject)
        found = groups.get(key)
        if found is None:
            groups[key] = found = Tally()
        found.merge(s.tally)

    def figures(kind: str) -> list[tuple[str, dict[str, int], int, Durations]]:
        return [
            (name, {o: n for o, n in zip(OUTCOMES, t.outcomes, strict=True) if n},
             t.attempts, t.durations())
            for (k, name), t in sorted(groups.items())
            if k == kind
        ]  # fmt: skip

    order = list(GateType)  # gate types in the enum's order
    gates = sorted(
        (GateTypeFigures(*f) for f in figures(GATE) if f[0] in GateType.__members__),
        key=lambda g: order.index(g.gate_type),
    )
    return Analytics(
        start=query.start,
        end=query.end,
        templates=[TemplateFigures(*f) for f in figures(RUN)],
        step_types=[StepTypeFigures(*f) for f in figures(STEP)],
        gate_types=gates,
    )
