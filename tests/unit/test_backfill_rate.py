"""The backfill's token bucket, on a fake clock: pacing, back-off on throttling, recovery."""

from __future__ import annotations

import pytest

from cos_autotag_tools.backfill.rate import TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


def bucket(clock: FakeClock, qps: float = 10.0, **kwargs: float) -> TokenBucket:
    return TokenBucket(qps, clock=clock, sleep=clock.sleep, **kwargs)


def test_calls_leave_at_the_rate() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=20.0)
    start = clock.now
    for _ in range(201):
        tb.acquire()
    # The first call is free (burst 1); the other 200 take 200 / 20 = 10 s.
    assert clock.now - start == pytest.approx(10.0)


def test_burst_lets_that_many_calls_go_at_once() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=5.0, burst=3)
    for _ in range(3):
        tb.acquire()
    assert clock.now == 1000.0
    tb.acquire()
    assert clock.now == pytest.approx(1000.2)


def test_idle_time_does_not_bank_more_than_the_burst() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, burst=2)
    clock.advance(60)
    start = clock.now
    for _ in range(12):
        tb.acquire()
    assert clock.now - start == pytest.approx(1.0)  # 2 free, then 10 at 10/s


def test_acquiring_several_tokens_waits_for_all_of_them() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, burst=10)
    tb.acquire(10)
    start = clock.now
    tb.acquire(10)
    assert clock.now - start == pytest.approx(1.0)


def test_a_throttle_cuts_the_rate() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, decrease=0.5)
    tb.throttled()
    assert tb.rate == pytest.approx(5.0)
    start = clock.now
    tb.acquire()
    for _ in range(10):
        tb.acquire()
    assert clock.now - start == pytest.approx(2.0, rel=0.05)  # 10 calls at 5/s


def test_a_burst_of_throttles_costs_one_cut() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, decrease=0.5, cut_cooldown_s=1.0)
    for _ in range(8):  # every call in flight was throttled at once
        tb.throttled()
    assert tb.rate == pytest.approx(5.0)
    clock.advance(1.0)
    tb.throttled()  # a later throttle: the lower rate is still too high
    assert tb.rate == pytest.approx(2.5)
    stats = tb.stats()
    assert (stats.throttles, stats.cuts) == (9, 2)


def test_the_rate_never_falls_below_the_floor() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, decrease=0.5, min_qps=2.0, cut_cooldown_s=0.0)
    for _ in range(20):
        tb.throttled()
    assert tb.rate == pytest.approx(2.0)


def test_the_rate_recovers_after_a_quiet_period_and_stops_at_the_quota() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, decrease=0.5, recover_after_s=2.0, recover_qps_per_s=1.0)
    tb.throttled()
    clock.advance(1.9)
    assert tb.rate == pytest.approx(5.0)  # still quiet-waiting
    clock.advance(0.1 + 3.0)
    assert tb.rate == pytest.approx(8.0)  # +1 QPS a second for 3 s
    clock.advance(100)
    assert tb.rate == pytest.approx(10.0)  # never above the quota
    assert tb.stats().lowest_qps == pytest.approx(5.0)


def test_a_throttle_during_recovery_restarts_the_quiet_period() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=10.0, decrease=0.5, recover_after_s=2.0, recover_qps_per_s=1.0, cut_cooldown_s=0.5)
    tb.throttled()
    clock.advance(4.0)  # quiet 2 s, then +2
    assert tb.rate == pytest.approx(7.0)
    tb.throttled()
    assert tb.rate == pytest.approx(3.5)
    clock.advance(1.5)
    assert tb.rate == pytest.approx(3.5)


def test_throughput_under_a_throttled_spell_then_back_near_the_quota() -> None:
    clock = FakeClock()
    tb = bucket(clock, qps=20.0)
    # 3 s of throttling, one throttle every 0.5 s, while calls keep going out.
    calls, spell_end = 0, clock.now + 3.0
    next_throttle = clock.now
    while clock.now < spell_end:
        if clock.now >= next_throttle:
            tb.throttled()
            next_throttle += 0.5
        tb.acquire()
        calls += 1
    assert tb.rate < 20.0
    # Then quiet: within 10 s the bucket is back at the quota.
    clock.advance(10.0)
    assert tb.rate == pytest.approx(20.0)
    start, n = clock.now, 200
    tb.acquire()
    for _ in range(n):
        tb.acquire()
    assert n / (clock.now - start) == pytest.approx(20.0, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"qps": 0}, "qps"), ({"qps": 5, "burst": 0.5}, "burst"), ({"qps": 5, "decrease": 1.0}, "decrease")],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(**kwargs)
