"""Schedules' slots as pure calculations: cron in a named zone across both DST changes, and
which slots a look after downtime fires, misses or leaves for later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sluice.engine.schedules import (
    MAX_SLOTS_PER_LOOK,
    Cron,
    Schedule,
    check,
    plan,
    run_request_id,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def slots(cron: Cron, after: datetime, count: int) -> list[datetime]:
    found: list[datetime] = []
    for _ in range(count):
        nxt = cron.next_after(after)
        assert nxt is not None
        found.append(nxt)
        after = nxt
    return found


def test_a_specific_time_in_the_skipped_hour_fires_once_right_after_the_jump() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST, so 02:30 does not exist that day.
    cron = Cron("30 2 * * *", "Europe/Berlin")
    assert slots(cron, utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST: the skipped 02:30, at once after the jump
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
    ]


def test_a_specific_time_in_the_repeated_hour_fires_once_the_first_time() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 happens twice.
    cron = Cron("30 2 * * *", "Europe/Berlin")
    assert slots(cron, utc(2026, 10, 23, 12), 3) == [
        utc(2026, 10, 24, 0, 30),  # 02:30 CEST
        utc(2026, 10, 25, 0, 30),  # the first 02:30 (CEST), not the second (01:30 UTC)
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
    ]
    local = [
        s.astimezone(BERLIN).strftime("%H:%M %Z") for s in slots(cron, utc(2026, 10, 23, 12), 3)
    ]
    assert local == ["02:30 CEST", "02:30 CEST", "02:30 CET"]


def test_an_hourly_job_follows_real_time_across_both_changes() -> None:
    hourly = Cron("0 * * * *", "Europe/Berlin")
    # October: the repeated 02:00 is a slot both times, an hour apart.
    assert slots(hourly, utc(2026, 10, 24, 22, 30), 4) == [
        utc(2026, 10, 24, 23),  # 01:00 CEST
        utc(2026, 10, 25, 0),  # 02:00 CEST
        utc(2026, 10, 25, 1),  # 02:00 CET
        utc(2026, 10, 25, 2),  # 03:00 CET
    ]
    # March: the skipped hour has no slot; the slots stay an hour apart.
    assert slots(hourly, utc(2026, 3, 28, 23, 30), 3) == [
        utc(2026, 3, 29, 0),  # 01:00 CET
        utc(2026, 3, 29, 1),  # 03:00 CEST
        utc(2026, 3, 29, 2),  # 04:00 CEST
    ]


def test_every_second_with_seconds_first_and_a_slot_is_strictly_later() -> None:
    every_second = Cron("* * * * * *")
    start = utc(2026, 12, 1, 10, 0, 0)
    assert slots(every_second, start, 3) == [start + timedelta(seconds=s) for s in (1, 2, 3)]
    assert every_second.next_after(start + timedelta(microseconds=500)) == start + timedelta(
        seconds=1
    )
    assert Cron("*/20 * * * * *").next_after(start) == start + timedelta(seconds=20)


def test_a_look_after_downtime_fires_the_slots_in_the_window_and_counts_the_rest() -> None:
    hourly = Cron("0 * * * *")
    first = utc(2026, 12, 1, 1)
    now = first + timedelta(hours=4, minutes=30)
    result = plan(hourly, first, now, timedelta(hours=3))
    assert result.missed_first == first
    assert result.missed_count == 2  # 01:00 and 02:00 are more than 3 h before 05:30
    assert result.fire == [utc(2026, 12, 1, h) for h in (3, 4, 5)]
    assert result.next_fire_at == utc(2026, 12, 1, 6)


def test_a_look_on_time_fires_the_one_due_slot_and_none_early() -> None:
    hourly = Cron("0 * * * *")
    slot = utc(2026, 12, 1, 1)
    assert plan(hourly, slot, slot - timedelta(seconds=1), timedelta(0)).fire == []
    on_time = plan(hourly, slot, slot, timedelta(0))
    assert (on_time.fire, on_time.missed_count) == ([slot], 0)
    late = plan(hourly, slot, slot + timedelta(seconds=2), timedelta(seconds=1))
    assert (late.fire, late.missed_count, late.next_fire_at) == ([], 1, slot + timedelta(hours=1))


def test_a_long_catch_up_goes_on_at_the_next_look_in_bounded_steps() -> None:
    every_second = Cron("* * * * * *")
    first = utc(2026, 12, 1)
    now = first + timedelta(seconds=250)
    result = plan(every_second, first, now, timedelta(hours=1))
    assert len(result.fire) == MAX_SLOTS_PER_LOOK
    assert result.next_fire_at == first + timedelta(seconds=MAX_SLOTS_PER_LOOK)


def test_a_slot_gives_one_request_id_whatever_its_zone() -> None:
    slot = utc(2026, 10, 25, 0, 30)
    assert run_request_id("nightly", slot) == "schedule/nightly/2026-10-25T00:30:00Z"
    assert run_request_id("nightly", slot.astimezone(BERLIN)) == run_request_id("nightly", slot)
    assert run_request_id("nightly", slot, triggered=True).startswith("trigger/")


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("schedule.cron", {"cron": "61 * * * *"}),
        ("schedule.cron", {"cron": "* * *"}),
        ("schedule.cron", {"cron": "0 0 30 2 *"}),
        ("schedule.time_zone", {"time_zone": "Mars/Olympus"}),
        ("schedule.time_zone", {"time_zone": "../../etc/passwd"}),
        ("schedule.schedule_id", {"id": "Has Spaces"}),
        ("schedule.catchup_window", {"catchup_window": timedelta(seconds=-1)}),
    ],
)
def test_every_bad_field_is_named(field: str, changes: dict[str, object]) -> None:
    schedule = Schedule(owner="alice", id="nightly", template_id="t", cron="0 2 * * *")
    for name, value in changes.items():
        setattr(schedule, name, value)
    assert [v.field for v in check(schedule, now=utc(2026, 12, 1))] == [field]


def test_a_good_schedule_has_no_problem() -> None:
    schedule = Schedule(
        owner="alice", id="nightly", template_id="t", cron="30 2 * * *", time_zone="Europe/Berlin"
    )
    assert check(schedule, now=utc(2026, 12, 1)) == []
