"""One thread-pool policy for the whole package: how many workers, and BLAS held to one thread.

kdelib parallelises NumPy-heavy loops over blocks with threads (NumPy and BLAS release the GIL
in their loops). Every such loop goes through this module, so the package has one rule for the
number of workers and one way of keeping BLAS from oversubscribing the cores.

API
---
``n_workers(n_threads=None)``
    The number of worker threads: ``n_threads`` itself when given (validated as a positive
    integer), otherwise the number of CPUs this process may run on (``os.sched_getaffinity``),
    but no more than the BLAS thread count, so that a BLAS limited by ``OPENBLAS_NUM_THREADS``,
    ``OMP_NUM_THREADS`` or an enclosing ``threadpoolctl.threadpool_limits`` also limits kdelib.
    It inspects the loaded libraries (about 0.5 ms): call it once per parallel region, after
    deciding that the work is large enough to split.
``single_threaded_blas()``
    A context manager that limits every BLAS library to one thread (process-wide) and restores
    the previous settings on exit. Workers that each call BLAS run inside it: the workers
    already fill the cores, and idle BLAS threads spinning after each call steal time from the
    element-wise passes.
``run_tasks(function, tasks, n_threads=None, *, progress=None)``
    ``[function(task) for task in tasks]`` in order, on ``n_workers(n_threads)`` threads (or
    inline when that is 1 or there is one task), always inside ``single_threaded_blas()``.
    ``progress`` is an optional callable invoked once per finished task (from the worker,
    serialised by a lock), e.g. a tqdm bar's ``update``.

Intended use, e.g. in a blocked 1-D evaluation::

    from ._parallel import n_workers, run_tasks

    workers = n_workers()            # plan the split for this many workers
    parts = run_tasks(lambda t: evaluate(*t), tasks)

Examples
--------
>>> from kdelib._parallel import n_workers, run_tasks
>>> n_workers(3)
3
>>> n_workers() >= 1
True
>>> run_tasks(lambda t: t * t, [1, 2, 3], n_threads=2)
[1, 4, 9]
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from ._validation import check_positive_int

__all__ = ["n_workers", "run_tasks", "single_threaded_blas"]

def _threadpool_controller():
    """A fresh view of the loaded thread pools (about 0.5 ms: a library loaded since counts)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _available_cpus():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def n_workers(n_threads=None):
    """Number of worker threads: ``n_threads`` if given, else the CPUs allowed, at most BLAS's.

    Parameters
    ----------
    n_threads : int, optional
        An explicit count (a positive integer); returned unchanged.

    Returns
    -------
    int
        ``n_threads``, or ``min(CPUs in this process's affinity mask, BLAS threads)`` (the
        second bound only when a BLAS library is loaded).

    Raises
    ------
    ValueError
        ``n_threads`` is not a positive integer.

    Examples
    --------
    >>> from kdelib._parallel import n_workers
    >>> n_workers(2)
    2
    >>> from threadpoolctl import threadpool_limits
    >>> with threadpool_limits(limits=1, user_api="blas"):
    ...     n_workers()
    1
    """
    n_threads = check_positive_int(n_threads, "n_threads", allow_none=True)
    if n_threads is not None:
        return n_threads
    blas = [lib.num_threads for lib in _threadpool_controller().lib_controllers
            if lib.user_api == "blas"]
    cpus = _available_cpus()
    return max(1, min(cpus, max(blas))) if blas else cpus


@contextmanager
def single_threaded_blas():
    """Limit every BLAS library to one thread inside the block; restore the settings after.

    Examples
    --------
    >>> from threadpoolctl import threadpool_info
    >>> from kdelib._parallel import single_threaded_blas
    >>> with single_threaded_blas():
    ...     all(i["num_threads"] == 1 for i in threadpool_info() if i["user_api"] == "blas")
    True
    """
    with _threadpool_controller().limit(limits=1, user_api="blas"):
        yield


def run_tasks(function, tasks, n_threads=None, *, progress=None):
    """``[function(t) for t in tasks]`` on worker threads, each with a single-threaded BLAS.

    Parameters
    ----------
    function : callable
        Called once per task; it should spend its time in NumPy or BLAS (which release the GIL).
    tasks : iterable
        Task arguments, one per call.
    n_threads : int, optional
        Worker count, see :func:`n_workers`; never more workers than tasks.
    progress : callable, optional
        Called with no argument after each task (serialised by a lock).

    Returns
    -------
    list
        The results, in the order of ``tasks``.

    Examples
    --------
    >>> from kdelib._parallel import run_tasks
    >>> run_tasks(sum, [[1, 2], [3, 4]])
    [3, 7]
    """
    tasks = list(tasks)
    workers = min(n_workers(n_threads), max(1, len(tasks)))
    lock = threading.Lock()

    def task(argument):
        result = function(argument)
        if progress is not None:
            with lock:
                progress()
        return result

    with single_threaded_blas():
        if workers == 1:
            return [task(t) for t in tasks]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(task, tasks))
