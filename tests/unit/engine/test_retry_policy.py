from datetime import timedelta

from sluice.engine.model import RetryPolicy
from sluice.engine.scheduler import jitter_draw


def test_seed_schedule_1s_2s_4s() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=timedelta(milliseconds=1000), multiplier=2)
    assert [policy.delay_after(n).total_seconds() for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_delay_is_capped_by_max_backoff() -> None:
    policy = RetryPolicy(10, timedelta(seconds=1), 3.0, max_backoff=timedelta(seconds=5))
    assert [policy.delay_after(n).total_seconds() for n in (1, 2, 3, 4)] == [1.0, 3.0, 5.0, 5.0]


def test_jitter_spreads_a_delay_over_plus_or_minus_its_fraction_never_past_the_cap() -> None:
    policy = RetryPolicy(
        5, timedelta(seconds=10), 2.0, max_backoff=timedelta(seconds=25), jitter=0.5
    )
    assert policy.delay_after(1, draw=0.0) == timedelta(seconds=5)
    assert policy.delay_after(1, draw=0.5) == timedelta(seconds=10)
    assert policy.delay_after(1, draw=0.75) == timedelta(seconds=12.5)
    assert policy.delay_after(2, draw=0.99) == timedelta(seconds=25)  # 29.8 s, capped
    # Without jitter the draw changes nothing.
    assert RetryPolicy(5, timedelta(seconds=10)).delay_after(1, draw=0.9) == timedelta(seconds=10)


def test_the_draw_differs_across_runs_and_is_fixed_for_one_attempt() -> None:
    draws = [jitter_draw(f"run-{i}", "post", 1) for i in range(200)]
    assert all(0.0 <= d < 1.0 for d in draws)
    assert jitter_draw("run-7", "post", 1) == draws[7]  # a decision made again waits as long
    assert jitter_draw("run-7", "post", 2) != draws[7]
    # Spread over the range rather than bunched: each fifth gets a share.
    assert all(20 <= sum(k / 5 <= d < (k + 1) / 5 for d in draws) <= 60 for k in range(5))
