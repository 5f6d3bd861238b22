"""Benchmark of kdelib's rational-quadratic spline and spline density, as ratios in one run.

* forward ``s(t)`` plus ``log s'(t)`` (``value_and_log_derivative``, one bin search) of a
  64-bin spline on 1e6 points, against ``scipy.interpolate.PchipInterpolator.__call__`` on the
  same knots and points (goal: at most 1.5x);
* the analytic inverse on the same number of points against the forward (goal: at most 2x);
* fitting ``SplineDensity`` to 1e5 points against fitting ``GaussianMixtureCDF`` with about
  the same number of free parameters (a K-bin spline has 3K + 1, a mixture 3m - 1: m = K + 1;
  goal: at most 2x).

Each timing is the minimum over repeats; the script prints the machine, the BLAS and thread
pools (threadpoolctl). Run ``python benchmarks/bench_spline.py`` (about a minute) or with
``--quick`` (smaller sizes, for a smoke test).
"""

import argparse
import os
import platform
import time

import numpy as np
import scipy
import threadpoolctl
from scipy.interpolate import PchipInterpolator

from kdelib import GaussianMixtureCDF, SplineDensity
from kdelib.spline import RationalQuadraticSpline


def best_of(func, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def describe_environment():
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}")
    try:
        print(f"load average: {os.getloadavg()}")
    except OSError:
        pass
    for pool in threadpoolctl.threadpool_info():
        print(f"threadpool: {pool.get('user_api')} {pool.get('internal_api')} "
              f"{pool.get('version')} num_threads={pool.get('num_threads')}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (smoke test)")
    args = parser.parse_args()
    describe_environment()
    rng = np.random.default_rng(0)
    n_points = 100_000 if args.quick else 1_000_000
    n_fit = 10_000 if args.quick else 100_000
    repeat = 3 if args.quick else 5

    K = 64
    x = np.cumsum(np.r_[0.0, rng.uniform(0.2, 1.0, K)])
    y = np.cumsum(np.r_[0.0, rng.uniform(0.2, 1.0, K)])
    y /= y[-1]
    d = np.exp(rng.uniform(-1.0, 1.0, K + 1)) * (y[-1] - y[0]) / (x[-1] - x[0])
    spline = RationalQuadraticSpline(x, y, d)
    pchip = PchipInterpolator(x, y)
    t = rng.uniform(x[0], x[-1], n_points)
    u = spline(t)
    rows = []
    t_pchip = best_of(lambda: pchip(t), repeat)
    t_fwd = best_of(lambda: spline.value_and_log_derivative(t), repeat)
    t_fwd_value = best_of(lambda: spline(t), repeat)
    t_inv = best_of(lambda: spline.inverse(u), repeat)
    rows.append((f"PchipInterpolator.__call__, {K} bins, {n_points:.0e} points", t_pchip, "", ""))
    rows.append(("RQ spline value + log-derivative", t_fwd, f"{t_fwd / t_pchip:.2f}x pchip", "<= 1.5x"))
    rows.append(("RQ spline value only", t_fwd_value, f"{t_fwd_value / t_pchip:.2f}x pchip", ""))
    rows.append(("RQ spline inverse", t_inv, f"{t_inv / t_fwd_value:.2f}x value only; "
                 f"{t_inv / t_fwd:.2f}x value + log-derivative", "<= 2x"))
    err = np.max(np.abs(spline.inverse(u) - t) / np.maximum(np.abs(t), 1.0))
    print(f"max |inverse(s(t)) - t| / max(|t|, 1) on these points: {err:.1e}")

    data = np.where(rng.uniform(size=n_fit) < 0.3, rng.normal(-2.0, 0.5, n_fit), rng.normal(1.0, 1.0, n_fit))
    fit_repeat = 1 if args.quick else 2
    for bins in (4, 8):
        m = bins + 1
        spline_fit = {}

        def fit_spline():
            spline_fit["est"] = SplineDensity(n_bins=bins).fit(data)

        def fit_mixture():
            spline_fit["gmm"] = GaussianMixtureCDF(n_components=m, random_state=0).fit(data)

        t_s = best_of(fit_spline, fit_repeat)
        t_m = best_of(fit_mixture, fit_repeat)
        est, gmm = spline_fit["est"], spline_fit["gmm"]
        rows.append((f"GaussianMixtureCDF fit, m={m} ({3 * m - 1} parameters), {n_fit:.0e} points",
                     t_m, f"{gmm.n_iter_} EM iterations, mean log-lik {gmm.score(data):.4f}", ""))
        rows.append((f"SplineDensity fit, K={bins} ({3 * bins + 1} parameters)", t_s,
                     f"{t_s / t_m:.2f}x mixture; {est.n_iter_} L-BFGS iterations, "
                     f"mean log-lik {est.score(data):.4f}", "<= 2x"))
    print()
    print("| measurement | seconds (min) | ratio / note | goal |")
    print("|---|---|---|---|")
    for name, sec, note, goal in rows:
        print(f"| {name} | {sec:.4f} | {note} | {goal} |")


if __name__ == "__main__":
    main()
