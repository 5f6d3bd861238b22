"""How the exact image KDE sweep and the two GEMMs scale with threads, on the full MNIST split.

For each thread count (powers of two up to the CPUs this process may use): one float32 and one
float64 GEMM of the sweep's shape under ``threadpool_limits(t)``, and the exact 8-sigma sweep
with ``n_threads=t``, interleaved ``--repeats`` times (minima reported), with the ratios the
image benchmark's goals name. Then the serial part every call pays: planning the distances
(``distance_plan`` with sigmas). ``--block-sizes`` times the sweep with other numbers of data
rows per GEMM block (``block_size`` of ``log_likelihood``; 0 is its default choice).

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
    parser.add_argument("--block-sizes", default="0",
                        help="data rows per GEMM block to time, comma-separated (0: default)")
    parser.add_argument("--rows", type=int, default=None, help="first rows only (a quick try)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from kdelib.datasets import mnist_splits
    from kdelib.image import distance_plan, log_likelihood

    x_train, x_val, _ = mnist_splits(data_dir=args.data_dir)
    x_train, x_val = x_train[:args.rows], x_val[:args.rows]
    a32, v32 = x_train, x_val
    a64, v64 = x_train.astype(np.float64), x_val.astype(np.float64)
    log_likelihood(x_train[:500], x_val[:500], SIGMAS, progress=False)  # warm up
    counts = thread_counts()
    sizes = [int(b) for b in args.block_sizes.split(",")]
    t = {n: {"gemm32": [], "gemm64": [], **{f"sweep_b{b}": [] for b in sizes}} for n in counts}
    for _ in range(args.repeats):
        for n in counts:
            with threadpool_limits(limits=n, user_api="blas"):
                t[n]["gemm32"].append(timed(lambda: v32 @ a32.T)[1])
                t[n]["gemm64"].append(timed(lambda: v64 @ a64.T)[1])
            for b in sizes:
                t[n][f"sweep_b{b}"].append(timed(lambda: log_likelihood(
                    x_train, x_val, SIGMAS, n_threads=n, block_size=b or None,
                    progress=False))[1])
    plan_s = min(timed(lambda: distance_plan(x_train, x_val, SIGMAS))[1]
                 for _ in range(args.repeats))
    result = {"machine": f"{cpu_model()}; {os.cpu_count()} logical CPUs",
              "threadpool_info": threadpool_info(), "load_average": os.getloadavg(),
              "seconds": {str(n): v for n, v in t.items()}, "plan_seconds": plan_s}
    sweeps = [f"sweep_b{b}" for b in sizes]
    lines = [f"machine: {result['machine']}; load average {result['load_average']}",
             "sweep_bN: N data rows per GEMM block (b0: the default choice)",
             "| threads | float32 GEMM, s | float64 GEMM, s | "
             + " | ".join(f"{k}, s (/ f32; / f64)" for k in sweeps) + " |",
             "|---|---|---|" + "---|" * len(sweeps)]
    for n in counts:
        m = {k: min(v) for k, v in t[n].items()}
        lines.append(f"| {n} | {m['gemm32']:.3f} | {m['gemm64']:.3f} | " + " | ".join(
            f"{m[k]:.3f} ({m[k] / m['gemm32']:.2f}; {m[k] / m['gemm64']:.2f})" for k in sweeps)
            + " |")
    lines.append(f"planning (distance_plan with sigmas): {plan_s:.3f} s")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)


if __name__ == "__main__":
    main()
