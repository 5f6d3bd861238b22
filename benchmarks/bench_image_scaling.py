"""How the exact image KDE sweep and the two GEMMs scale with threads, on the full MNIST split.

For each thread count (powers of two up to the CPUs this process may use): one float32 and one
float64 GEMM of the sweep's shape under ``threadpool_limits(t)``, and the exact 8-sigma sweep
with ``n_threads=t``, interleaved ``--repeats`` times (minima reported), with the ratios the
image benchmark's goals name. Then the serial part every call pays: planning the distances
(``distance_plan`` with sigmas), and the sweep at full threads with the sub-blocks of the
streaming log-sum-exp four times larger than the default (fewer, larger NumPy calls).

Usage: ``KDELIB_DATA=../shared/data/mnist python benchmarks/bench_image_scaling.py [--json f]``
"""

import argparse
import json
import os
import sys

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_image_kde import SIGMAS, cpu_model, timed  # noqa: E402


def thread_counts():
    from kdelib._parallel import n_workers

    top, counts = n_workers(), [1]
    while counts[-1] * 2 <= top:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == top else counts + [top]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KDELIB_DATA"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=None, help="first rows only (a quick try)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from kdelib.datasets import mnist_splits
    from kdelib.image import _kernels, distance_plan, log_likelihood

    x_train, x_val, _ = mnist_splits(data_dir=args.data_dir)
    x_train, x_val = x_train[:args.rows], x_val[:args.rows]
    a32, v32 = x_train, x_val
    a64, v64 = x_train.astype(np.float64), x_val.astype(np.float64)
    log_likelihood(x_train[:500], x_val[:500], SIGMAS, progress=False)  # warm up
    counts = thread_counts()
    t = {n: {"gemm32": [], "gemm64": [], "sweep": []} for n in counts}
    for _ in range(args.repeats):
        for n in counts:
            with threadpool_limits(limits=n, user_api="blas"):
                t[n]["gemm32"].append(timed(lambda: v32 @ a32.T)[1])
                t[n]["gemm64"].append(timed(lambda: v64 @ a64.T)[1])
            t[n]["sweep"].append(timed(lambda: log_likelihood(
                x_train, x_val, SIGMAS, n_threads=n, progress=False))[1])
    plan_s = min(timed(lambda: distance_plan(x_train, x_val, SIGMAS))[1]
                 for _ in range(args.repeats))
    default_subblock = _kernels._TARGET_SUBBLOCK_ELEMENTS
    _kernels._TARGET_SUBBLOCK_ELEMENTS = 4 * default_subblock
    try:
        large_subblocks = min(timed(lambda: log_likelihood(x_train, x_val, SIGMAS,
                                                           progress=False))[1]
                              for _ in range(args.repeats))
    finally:
        _kernels._TARGET_SUBBLOCK_ELEMENTS = default_subblock
    result = {"machine": f"{cpu_model()}; {os.cpu_count()} logical CPUs",
              "threadpool_info": threadpool_info(), "load_average": os.getloadavg(),
              "seconds": {str(n): v for n, v in t.items()}, "plan_seconds": plan_s,
              "sweep_seconds_subblocks_x4": large_subblocks}
    lines = [f"machine: {result['machine']}; load average {result['load_average']}",
             "| threads | float32 GEMM, s | float64 GEMM, s | sweep, s | sweep / f32 | "
             "sweep / f64 |", "|---|---|---|---|---|---|"]
    for n in counts:
        m = {k: min(v) for k, v in t[n].items()}
        lines.append(f"| {n} | {m['gemm32']:.3f} | {m['gemm64']:.3f} | {m['sweep']:.3f} | "
                     f"{m['sweep'] / m['gemm32']:.2f} | {m['sweep'] / m['gemm64']:.2f} |")
    lines += [f"planning (distance_plan with sigmas): {plan_s:.3f} s",
              f"sweep at {counts[-1]} threads, sub-blocks x4: {large_subblocks:.3f} s"]
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)


if __name__ == "__main__":
    main()
