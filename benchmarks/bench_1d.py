"""Benchmark of 1-D Gaussian KDE evaluation: kdelib (exact and binned) against its peers.

Compares, in one run and at n = m (data points = evaluation points):

* kdelib ``GaussianKDE`` exact ``pdf``, ``logpdf``, ``cdf``, ``logcdf``;
* kdelib ``method="binned"`` ``pdf`` and ``cdf`` (grid construction in ``fit`` included);
* ``scipy.stats.gaussian_kde.evaluate`` (pdf) and per-point ``integrate_box_1d`` (cdf; a
  subset of points is timed and the time scaled to m, as marked in the table);
* a bare vectorised exact CDF: ``scipy.special.ndtr((x - x_i) / h)`` summed over the same
  n * m terms in blocks of the same size, on one thread;
* statsmodels ``KDEUnivariate`` (``fft=True`` and ``fft=False``; each on its own grid of m
  points; ``fft=False`` builds an m x n matrix, so at large n a subset of the grid is timed
  and scaled);
* KDEpy ``FFTKDE`` on its own grid of m points.

Errors are the largest absolute differences from kdelib's exact values at the same points:
pdf errors relative to the largest pdf value, cdf errors absolute. Run
``python benchmarks/bench_1d.py`` (n = m = 1e4 and 1e5, about 15-30 minutes on two cores)
or ``--quick`` (n = m = 1e4 only, about a minute).
"""

import argparse
import os
import platform
import time

import numpy as np
import scipy
import scipy.special
import scipy.stats
import threadpoolctl
from KDEpy import FFTKDE
from statsmodels.nonparametric.kde import KDEUnivariate

import kdelib
from kdelib import GaussianKDE
from kdelib import normal_mixture as nm
from kdelib._parallel import n_workers
from kdelib.bandwidth import scott_bandwidth

BINNED_TOL = 1e-8


def timed(func, *args, repeat=1):
    """Best wall time of ``repeat`` calls, and the last result."""
    best, result = np.inf, None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func(*args)
        best = min(best, time.perf_counter() - start)
    return best, result


def bare_ndtr_cdf(x, data, h):
    """The plain exact CDF: ndtr of every scaled difference, summed; blocked, one thread."""
    cols = min(data.size, max(1024, nm._BLOCK_ELEMENTS // 8))
    rows = max(1, nm._BLOCK_ELEMENTS // cols)
    out = np.zeros(x.size)
    for i in range(0, x.size, rows):
        for j in range(0, data.size, cols):
            z = np.subtract.outer(x[i : i + rows], data[j : j + cols])
            z *= 1.0 / h
            scipy.special.ndtr(z, out=z)
            out[i : i + rows] += z.sum(axis=1)
    return out / data.size


def scipy_kde(data, h):
    ref = scipy.stats.gaussian_kde(data)
    ref.set_bandwidth(bw_method=h / np.std(data, ddof=1))
    return ref


def run_size(n, rng, quick_subsets):
    data = rng.normal(size=n)
    x = rng.normal(size=n)
    h = scott_bandwidth(data)
    rows = []

    def add(method, quantity, seconds, baseline=None, base_seconds=None, error=None, note=""):
        ratio = "" if base_seconds is None else f"{seconds / base_seconds:.3g}x {baseline}"
        err = "" if error is None else f"{error:.1e}"
        rows.append((method, quantity, n, seconds, ratio, err, note))
        print(f"  {method:<34} {quantity:<7} {seconds:9.3f} s  {ratio:<24} {err:<8} {note}", flush=True)

    print(f"n = m = {n}, bandwidth h = {h:.4g}", flush=True)
    exact = GaussianKDE(bandwidth=h).fit(data)
    t_ndtr, _ = timed(bare_ndtr_cdf, x, data, h)
    t_scipy_pdf, p_scipy = timed(scipy_kde(data, h).evaluate, x)
    t_pdf, p_exact = timed(exact.pdf, x)
    t_logpdf, lp_exact = timed(exact.logpdf, x)
    t_cdf, c_exact = timed(exact.cdf, x)
    t_logcdf, _ = timed(exact.logcdf, x)
    p_max = p_exact.max()
    add("scipy gaussian_kde.evaluate", "pdf", t_scipy_pdf, error=np.max(np.abs(p_scipy - p_exact)) / p_max)
    add("bare ndtr sum (1 thread)", "cdf", t_ndtr)
    add("kdelib exact", "pdf", t_pdf, "scipy evaluate", t_scipy_pdf)
    add("kdelib exact", "logpdf", t_logpdf, "scipy evaluate", t_scipy_pdf)
    add("kdelib exact", "cdf", t_cdf, "bare ndtr", t_ndtr)
    add("kdelib exact", "logcdf", t_logcdf, "bare ndtr", t_ndtr)

    def binned_pdf():
        return GaussianKDE(bandwidth=h, method="binned", tol=BINNED_TOL).fit(data).pdf(x)

    def binned_cdf():
        return GaussianKDE(bandwidth=h, method="binned", tol=BINNED_TOL).fit(data).cdf(x)

    t_bpdf, p_binned = timed(binned_pdf, repeat=3)
    t_bcdf, c_binned = timed(binned_cdf, repeat=3)
    note = f"tol={BINNED_TOL:g}, fit+eval"
    add("kdelib binned", "pdf", t_bpdf, "kdelib exact", t_pdf, np.max(np.abs(p_binned - p_exact)) / p_max, note)
    add("kdelib binned", "cdf", t_bcdf, "kdelib exact", t_cdf, np.max(np.abs(c_binned - c_exact)), note)

    k = quick_subsets["integrate_box"]
    ref = scipy_kde(data, h)
    start = time.perf_counter()
    c_box = np.array([ref.integrate_box_1d(-np.inf, v) for v in x[:k]])
    t_box = (time.perf_counter() - start) * n / k
    add("scipy integrate_box_1d per point", "cdf", t_box, "bare ndtr", t_ndtr,
        np.max(np.abs(c_box - c_exact[:k])), f"{k} points timed, scaled to m")

    t_sm_fft, sm_fft = timed(lambda: _statsmodels(data, h, True, n), repeat=3)
    p_grid = exact.pdf(sm_fft.support)
    add("statsmodels KDEUnivariate fft=True", "pdf", t_sm_fft, "kdelib exact", t_pdf,
        np.max(np.abs(sm_fft.density - p_grid)) / p_grid.max(), "own grid of m points")
    g = min(n, quick_subsets["statsmodels_grid"])
    t_sm, sm = timed(lambda: _statsmodels(data, h, False, g))
    t_sm *= n / g
    p_grid = exact.pdf(sm.support)
    add("statsmodels KDEUnivariate fft=False", "pdf", t_sm, "kdelib exact", t_pdf,
        np.max(np.abs(sm.density - p_grid)) / p_grid.max(),
        "own grid" + ("" if g == n else f"; {g} of m points timed, scaled"))

    t_kdepy, (grid, y) = timed(lambda: FFTKDE(kernel="gaussian", bw=h).fit(data).evaluate(n), repeat=3)
    p_grid = exact.pdf(grid)
    add("KDEpy FFTKDE", "pdf", t_kdepy, "kdelib exact", t_pdf, np.max(np.abs(y - p_grid)) / p_grid.max(),
        "own grid of m points")
    return rows


def _statsmodels(data, h, fft, gridsize):
    model = KDEUnivariate(data)
    model.fit(kernel="gau", bw=h, fft=fft, gridsize=gridsize)
    return model


def describe_environment():
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"kdelib {kdelib.__version__}")
    print(f"os.cpu_count() = {os.cpu_count()}, usable cores = {len(os.sched_getaffinity(0))}, "
          f"load average = {os.getloadavg()}")
    print(f"kdelib worker threads = {n_workers()} (exact path; BLAS limited to 1 inside)")
    for pool in threadpoolctl.threadpool_info():
        print(f"threadpool: {pool.get('user_api')} {pool.get('internal_api')} "
              f"num_threads={pool.get('num_threads')} {pool.get('version')}")


def markdown(rows):
    lines = [
        "| method | quantity | n = m | seconds | ratio (baseline) | max error vs exact | note |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for method, quantity, n, seconds, ratio, err, note in rows:
        lines.append(f"| {method} | {quantity} | {n:.0e} | {seconds:.3g} | {ratio} | {err} | {note} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = m = 1e4 only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    describe_environment()
    sizes = [10_000] if args.quick else [10_000, 100_000]
    rng = np.random.default_rng(args.seed)
    rows = []
    for n in sizes:
        subsets = {"integrate_box": 2000 if n <= 10_000 else 200, "statsmodels_grid": 10_000 if n <= 10_000 else 2000}
        rows += run_size(n, rng, subsets)
    print(f"load average after: {os.getloadavg()}")
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
