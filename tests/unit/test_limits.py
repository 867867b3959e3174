"""Token buckets and slots, on a clock the test moves."""

from __future__ import annotations

import pytest

from mutualrec.security.limits import Slots, TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_calls_wait_for_the_rate() -> None:
    clock = Clock()
    # Binary fractions of a second, so the arithmetic is exact.
    buckets = TokenBuckets(rate=8, burst=3, clock=clock)

    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 0.125
    clock.now += 0.0625
    assert buckets.take("a") == 0.0625
    clock.now += 0.0625
    assert buckets.take("a") == 0.0
    # Another key has its own bucket.
    assert buckets.take("b") == 0.0


def test_an_idle_bucket_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=2, clock=clock)
    buckets.take("a")
    clock.now += 3600

    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_rate_zero_means_no_limit() -> None:
    buckets = TokenBuckets(rate=0, burst=1)

    assert all(buckets.take("a") == 0.0 for _ in range(10_000))


def test_forgotten_keys_start_again_with_a_full_bucket() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=1, burst=1, clock=clock, max_keys=2)
    for key in ("a", "b", "c"):
        assert buckets.take(key) == 0.0
    # "a" was the least recently seen and is forgotten; "c" is remembered as spent.
    assert buckets.take("a") == 0.0
    assert buckets.take("c") > 0.0


def test_slots_are_counted_per_key_and_given_back() -> None:
    slots = Slots(limit=2)

    assert slots.acquire("a")
    assert slots.acquire("a")
    assert not slots.acquire("a")
    assert slots.acquire("b")
    slots.release("a")
    assert slots.held("a") == 1
    assert slots.acquire("a")


def test_slots_without_a_limit_never_refuse() -> None:
    slots = Slots(limit=0)

    assert all(slots.acquire("a") for _ in range(1000))


def test_delay_tells_whether_a_key_has_calls_left_without_spending_one() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate=4, burst=2, clock=clock)

    assert buckets.delay("a") == 0.0
    assert [buckets.take("a") for _ in range(2)] == [0.0, 0.0]
    assert [buckets.delay("a") for _ in range(3)] == [0.25, 0.25, 0.25]
    clock.now += 0.25
    assert buckets.delay("a") == 0.0
    assert buckets.take("a") == 0.0
