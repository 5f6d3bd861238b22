"""Tests of kdelib._parallel: the worker-count policy and the single-threaded BLAS context."""

import threading

import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from kdelib import _parallel


def blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


def test_explicit_count_is_returned_unchanged():
    assert _parallel.n_workers(1) == 1
    assert _parallel.n_workers(7) == 7
    assert _parallel.n_workers(3.0) == 3


@pytest.mark.parametrize("bad", [0, -1, 2.5, "two", True])
def test_bad_counts_raise(bad):
    with pytest.raises(ValueError, match="n_threads must be a positive integer"):
        _parallel.n_workers(bad)


def test_default_respects_cpus_and_an_enclosing_blas_limit(monkeypatch):
    monkeypatch.setattr(_parallel, "_available_cpus", lambda: 5)
    limit = max(blas_threads(), default=5)
    assert _parallel.n_workers() == min(5, limit)
    with threadpool_limits(limits=1, user_api="blas"):
        assert _parallel.n_workers() == 1
    monkeypatch.setattr(_parallel, "_available_cpus", lambda: 1)
    assert _parallel.n_workers() == 1


def test_run_tasks_keeps_order_limits_blas_and_restores_it():
    before = blas_threads()
    seen = []
    names = set()

    def task(i):
        seen.append(blas_threads())
        names.add(threading.current_thread().name)
        return i * i

    ticks = []
    assert _parallel.run_tasks(task, range(6), n_threads=2, progress=lambda: ticks.append(1)) \
        == [i * i for i in range(6)]
    assert len(ticks) == 6
    assert all(all(n == 1 for n in counts) for counts in seen)
    assert blas_threads() == before
    assert _parallel.run_tasks(task, [], n_threads=3) == []


def test_one_worker_runs_inline():
    names = _parallel.run_tasks(lambda _: threading.current_thread().name, range(3), n_threads=1)
    assert set(names) == {threading.current_thread().name}
