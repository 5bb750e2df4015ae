from datetime import timedelta

from sluice.engine.model import RetryPolicy


def test_seed_schedule_1s_2s_4s() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=timedelta(milliseconds=1000), multiplier=2)
    assert [policy.delay_after(n).total_seconds() for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_delay_is_capped_by_max_backoff() -> None:
    policy = RetryPolicy(10, timedelta(seconds=1), 3.0, max_backoff=timedelta(seconds=5))
    assert [policy.delay_after(n).total_seconds() for n in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, 5.0]
