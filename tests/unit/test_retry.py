import random

import pytest

from cos_autotag.retry import Deadline, call_with_retry


class Flaky(Exception):
    def __init__(self, retryable: bool) -> None:
        self.retryable = retryable


def make(fails: int, retryable: bool = True):
    calls = {"n": 0}

    def fn():
        calls["n"] += 1
        if calls["n"] <= fails:
            raise Flaky(retryable)
        return "ok"

    return fn, calls


def test_retries_retryable_errors_with_growing_jittered_pauses():
    fn, calls = make(3)
    pauses: list[float] = []
    assert call_with_retry(fn, Deadline(60), sleep=pauses.append, rng=random.Random(1)) == "ok"
    assert calls["n"] == 4 and len(pauses) == 3
    assert all(0 <= p <= 0.2 * 2**i for i, p in enumerate(pauses, start=1))


def test_non_retryable_error_is_raised_at_once():
    fn, calls = make(1, retryable=False)
    with pytest.raises(Flaky):
        call_with_retry(fn, Deadline(60), sleep=lambda _: None)
    assert calls["n"] == 1


def test_no_retry_past_the_deadline():
    fn, calls = make(5)
    with pytest.raises(Flaky):
        call_with_retry(fn, Deadline(0.5), sleep=lambda _: None)
    assert calls["n"] == 1
