"""Group commit: concurrent submissions share a write, each gets its own results, a failure reaches every
caller of its group (and only them)."""

from __future__ import annotations

import asyncio

import pytest

from storage.group_commit import GroupCommit


async def test_concurrent_submissions_share_writes_and_get_their_own_results() -> None:
    writes: list[list[int]] = []
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await release.wait()
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(write, max_items=100)
    first = asyncio.ensure_future(group.submit([1]))
    await asyncio.sleep(0)
    later = [asyncio.ensure_future(group.submit([n, n + 1])) for n in (2, 4, 6)]  # arrive while 1 is written
    await asyncio.sleep(0)
    release.set()
    assert await first == [10]
    assert [await task for task in later] == [[20, 30], [40, 50], [60, 70]]
    assert writes == [[1], [2, 3, 4, 5, 6, 7]]  # the three waiting submissions went out together


async def test_a_group_never_splits_a_submission_and_respects_its_size() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        await asyncio.sleep(0)
        return items

    group: GroupCommit[int, int] = GroupCommit(write, max_items=4, window=0.001)
    results = await asyncio.gather(*(group.submit([n, n, n]) for n in range(4)))
    assert results == [[n, n, n] for n in range(4)]
    assert all(len(items) <= 4 for items in writes) and sorted(len(items) for items in writes) == [3, 3, 3, 3]


async def test_a_failed_write_fails_its_own_callers_only() -> None:
    calls = 0

    async def write(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if "bad" in items:
            raise RuntimeError("the database said no")
        return items

    group: GroupCommit[str, str] = GroupCommit(write, window=0.001)
    bad = asyncio.ensure_future(group.submit(["bad"]))
    good_too = asyncio.ensure_future(group.submit(["same group"]))
    with pytest.raises(RuntimeError):
        await bad
    with pytest.raises(RuntimeError):
        await good_too
    assert await group.submit(["later"]) == ["later"]  # the next group is unaffected
    assert calls == 2


async def test_several_writes_in_flight() -> None:
    running = 0
    most = 0

    async def write(items: list[int]) -> list[int]:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return items

    group: GroupCommit[int, int] = GroupCommit(write, max_items=1, max_in_flight=3)
    assert await asyncio.gather(*(group.submit([n]) for n in range(9))) == [[n] for n in range(9)]
    assert most == 3
    await group.close()


async def test_a_caller_that_stops_waiting_does_not_stop_the_write() -> None:
    written: list[list[str]] = []
    release = asyncio.Event()

    async def write(items: list[str]) -> list[str]:
        await release.wait()
        written.append(items)
        return items

    group: GroupCommit[str, str] = GroupCommit(write)
    impatient = asyncio.ensure_future(group.submit(["a"]))
    await asyncio.sleep(0)
    impatient.cancel()  # e.g. its request timed out: the write may already be on its way
    with pytest.raises(asyncio.CancelledError):
        await impatient
    release.set()
    assert await group.submit(["b"]) == ["b"]
    await group.close()
    assert written == [["a"], ["b"]]


async def test_a_write_that_answers_for_the_wrong_number_of_items_fails_its_callers() -> None:
    async def write(items: list[int]) -> list[int]:
        return items[:-1]

    group: GroupCommit[int, int] = GroupCommit(write)
    with pytest.raises(RuntimeError, match="2 results for 3 items"):
        await group.submit([1, 2, 3])


async def test_the_window_lets_submissions_arriving_meanwhile_join_the_group() -> None:
    writes: list[list[int]] = []

    async def write(items: list[int]) -> list[int]:
        writes.append(items)
        return items

    group: GroupCommit[int, int] = GroupCommit(write, window=0.5)
    first = asyncio.ensure_future(group.submit([1]))
    await asyncio.sleep(0)  # the flusher is now sleeping out its window
    second = asyncio.ensure_future(group.submit([2]))
    assert (await first, await second) == ([1], [2])
    assert writes == [[1, 2]]


async def test_idle_while_nothing_is_pending_or_being_written() -> None:
    release = asyncio.Event()

    async def write(items: list[int]) -> list[int]:
        await release.wait()
        return items

    group: GroupCommit[int, int] = GroupCommit(write)
    await asyncio.wait_for(group.idle(), 1)  # nothing yet
    submitted = asyncio.ensure_future(group.submit([1]))
    await asyncio.sleep(0)
    waiting = asyncio.ensure_future(group.idle())
    await asyncio.sleep(0.01)
    assert not waiting.done()  # a write is in flight
    release.set()
    assert await submitted == [1]
    await asyncio.wait_for(waiting, 1)
