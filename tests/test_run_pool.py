"""signers.tools.run_pool: results in task order, the first failure in task order raised, and
only about workers x IN_FLIGHT tasks drawn ahead (a queued future costs ~1.9 KB)."""

from __future__ import annotations

import pytest

from signers import tools


def test_run_pool_keeps_task_order_and_only_a_few_tasks_queued_per_worker():
    taken = []  # tasks the pool has drawn from the iterable, in order

    def tasks():
        for n in range(200):
            taken.append(n)
            yield n
    done: list[int] = []

    def work(n: int) -> int:
        done.append(n)
        # never more than workers x IN_FLIGHT drawn ahead of what has been taken back
        assert len(taken) <= len(done) + 2 * tools.IN_FLIGHT
        return n * n
    assert tools.run_pool(work, tasks(), workers=2, name="t") == [n * n for n in range(200)]


def test_run_pool_raises_the_first_failing_task_in_task_order():
    def work(n: int) -> int:
        if n in (3, 7):
            raise ValueError(f"task {n}")
        return n
    with pytest.raises(ValueError, match="task 3"):
        tools.run_pool(work, range(50), workers=4, name="t")
