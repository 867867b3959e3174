"""The Batcher: items arriving while a batch runs go together, each caller gets its own answer,
and a closed batcher refuses at once rather than leaving a caller waiting out its deadline."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mutualrec.services.batches import Batcher
from mutualrec.violations import Unavailable

# A guard against a hang (the bug these tests catch), not a speed limit.
HANG = 30.0


class Recorder:
    """A handle that doubles numbers, fails on negative ones, and records its batches; the first
    batch waits for ``release`` so that later items queue behind it."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(HANG)
        return [ValueError(f"negative: {n}") if n < 0 else n * 2 for n in items]


async def _behind_a_running_batch(
    batcher: Batcher[int, int], recorder: Recorder, items: tuple[int, ...]
) -> tuple[asyncio.Future[int], list[asyncio.Future[int]]]:
    """Submit 1, and once its batch is running (held by the recorder), ``items``: they queue."""
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.to_thread(recorder.started.wait, HANG)
    later = [asyncio.ensure_future(batcher.submit(n)) for n in items]
    await asyncio.sleep(0)  # each task runs to its await: its item is queued
    assert batcher.waiting == len(items)
    return first, later


def test_a_lone_item_goes_alone_and_gets_its_answer() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher: Batcher[int, int] = Batcher("test-batcher", recorder, max_batch=8)
    try:
        assert asyncio.run(asyncio.wait_for(batcher.submit(21), HANG)) == 42
    finally:
        batcher.close()
    assert recorder.batches == [[21]]


def test_items_arriving_during_a_batch_share_the_next_one() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher("test-batcher", recorder, max_batch=8)

    async def scenario() -> list[int]:
        first, later = await _behind_a_running_batch(batcher, recorder, (2, 3, 4))
        recorder.release.set()
        return list(await asyncio.wait_for(asyncio.gather(first, *later), HANG))

    try:
        assert asyncio.run(scenario()) == [2, 4, 6, 8]
    finally:
        batcher.close()
    assert recorder.batches == [[1], [2, 3, 4]]


def test_one_items_failure_reaches_only_its_caller() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher("test-batcher", recorder, max_batch=8)

    async def scenario() -> list[int | BaseException]:
        first, later = await _behind_a_running_batch(batcher, recorder, (5, -1, 7))
        recorder.release.set()
        gathered = asyncio.gather(first, *later, return_exceptions=True)
        return list(await asyncio.wait_for(gathered, HANG))

    try:
        outcomes = asyncio.run(scenario())
    finally:
        batcher.close()
    assert outcomes[:2] == [2, 10]
    assert isinstance(outcomes[2], ValueError)
    assert str(outcomes[2]) == "negative: -1"
    assert outcomes[3] == 14
    assert recorder.batches == [[1], [5, -1, 7]]


def test_close_answers_what_was_queued_before_it() -> None:
    recorder = Recorder()
    batcher: Batcher[int, int] = Batcher("test-batcher", recorder, max_batch=8)

    async def scenario() -> list[int]:
        first, (queued,) = await _behind_a_running_batch(batcher, recorder, (2,))
        closing = asyncio.ensure_future(asyncio.to_thread(batcher.close))
        recorder.release.set()
        answers = await asyncio.wait_for(asyncio.gather(first, queued), HANG)
        await asyncio.wait_for(closing, HANG)
        return list(answers)

    assert asyncio.run(scenario()) == [2, 4]


def test_an_item_after_close_is_refused_as_unavailable_at_once() -> None:
    recorder = Recorder()
    recorder.release.set()
    batcher: Batcher[int, int] = Batcher("test-batcher", recorder, max_batch=8)
    # The worker ran (and stopped at close): the case that used to queue the item behind the
    # stop mark, where no one would ever answer it.
    assert asyncio.run(asyncio.wait_for(batcher.submit(1), HANG)) == 2
    batcher.close()
    with pytest.raises(Unavailable, match="test-batcher is shutting down"):
        asyncio.run(asyncio.wait_for(batcher.submit(2), HANG))
    batcher.close()  # a second close is harmless
    assert recorder.batches == [[1]]


def test_an_item_after_close_is_refused_when_the_worker_never_started() -> None:
    batcher: Batcher[int, int] = Batcher("test-batcher", Recorder(), max_batch=8)
    batcher.close()
    with pytest.raises(Unavailable):
        asyncio.run(asyncio.wait_for(batcher.submit(1), HANG))
