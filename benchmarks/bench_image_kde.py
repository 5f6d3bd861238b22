"""Benchmark of kdelib.image.log_likelihood on the full MNIST split, ratios measured in one run.

Measures, interleaved ``--repeats`` times:

* the exact 8-sigma sweep (10,000 training x 10,000 validation images),
* one bare float64 GEMM of the same shape, (10000 x 784) @ (784 x 10000), default BLAS threads,

and, in ``--repeats`` pieces interleaved with them so that all see the same machine load:

* sklearn ``KernelDensity(bandwidth=sigma, leaf_size=len(train))`` (its exact setting, one
  leaf = brute force, single-threaded) on ``--sklearn-rows`` validation rows in all, for every
  sigma, extrapolated linearly to 10,000 rows;

and, as a second view that is less sensitive to other processes on the machine, the same
sweep and GEMM with one thread each (BLAS limited to one thread, ``n_threads=1``), timed by
process CPU time, interleaved ``--repeats`` times;

and once each:

* the plain float64 reference (GEMM + ``scipy.special.logsumexp`` per sigma, in row chunks),
  its time and the largest relative difference from kdelib over all rows and sigmas;
* peak memory in a fresh interpreter: VmHWM after loading the data, then VmHWM of the sweep
  alone (reset through /proc/self/clear_refs after loading). ``ru_maxrss`` is not used: after
  fork + exec Linux carries the parent's high-water mark into it.

Usage: ``KDELIB_DATA=../shared/data/mnist python benchmarks/bench_image_kde.py [--json out.json]``
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

SIGMAS = [0.05, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0]


def timed(function, clock=time.perf_counter):
    start = clock()
    result = function()
    return result, clock() - start


def plain_reference(train, data, sigmas, rows=1000):
    from kdelib.image import reference_log_likelihood

    return np.hstack([reference_log_likelihood(train, data[i:i + rows], sigmas)
                      for i in range(0, len(data), rows)])


def sklearn_rows(train, data, sigmas):
    from sklearn.neighbors import KernelDensity

    return np.array([KernelDensity(bandwidth=s, leaf_size=len(train)).fit(train)
                     .score_samples(data) for s in sigmas])


PEAK_SCRIPT = textwrap.dedent("""
    import json, sys
    from kdelib.datasets import mnist_splits
    from kdelib.image import log_likelihood

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    x_train, x_val, _ = mnist_splits(data_dir=sys.argv[1])
    before = status("VmRSS:")
    load_peak = status("VmHWM:")
    try:  # Linux >= 4.0: reset the high-water mark to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    log_likelihood(x_train, x_val, {sigmas}, progress=False)
    print(json.dumps({{"rss_before_sweep": before, "vmhwm_loading": load_peak,
                      "vmhwm_sweep": status("VmHWM:"), "hwm_reset": reset}}))
""")


def peak_memory(data_dir):
    out = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.format(sigmas=SIGMAS), data_dir],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KDELIB_DATA"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn-rows", type=int, default=120)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from kdelib.datasets import mnist_splits
    from kdelib.image import distance_plan, log_likelihood

    x_train, x_val, _ = mnist_splits(data_dir=args.data_dir)
    a64, v64 = x_train.astype(np.float64), x_val.astype(np.float64)
    log_likelihood(x_train[:500], x_val[:500], SIGMAS, progress=False)  # warm up
    a64 @ v64[:500].T

    gemm_s, sweep_s, sk_s, sk_parts = [], [], [], []
    pieces = np.array_split(np.arange(args.sklearn_rows), args.repeats)
    for piece in pieces:
        gemm_s.append(timed(lambda: v64 @ a64.T)[1])
        rows, seconds = timed(lambda: log_likelihood(x_train, x_val, SIGMAS, per_sample=True,
                                                     progress=False))
        sweep_s.append(seconds)
        part, seconds = timed(lambda: sklearn_rows(x_train, x_val[piece], SIGMAS))
        sk_parts.append(part)
        sk_s.append(seconds)
    pair_ratios = [s / g for s, g in zip(sweep_s, gemm_s)]

    cpu_gemm, cpu_sweep = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(args.repeats):
            cpu_gemm.append(timed(lambda: v64 @ a64.T, time.process_time)[1])
            cpu_sweep.append(timed(lambda: log_likelihood(x_train, x_val, SIGMAS, n_threads=1,
                                                          progress=False), time.process_time)[1])

    reference, reference_s = timed(lambda: plain_reference(x_train, x_val, SIGMAS))
    rel_err = float(np.max(np.abs(rows - reference) / np.abs(reference)))
    mean_rel_err = float(np.max(np.abs(rows.mean(1) - reference.mean(1))
                                / np.abs(reference.mean(1))))

    m = args.sklearn_rows
    sk_rows = np.hstack(sk_parts)
    sk_extrapolated = sum(sk_s) * len(x_val) / m
    sk_rel_err = float(np.max(np.abs(rows[:, :m] - sk_rows) / np.abs(sk_rows)))

    memory = peak_memory(args.data_dir)
    result = {
        "machine": (f"{platform.machine()}, {os.cpu_count()} logical CPUs, "
                    f"Python {platform.python_version()}"),
        "load_average": os.getloadavg(),
        "threadpool_info": threadpool_info(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_CORETYPE")},
        "distance_plan": distance_plan(x_train, x_val).describe(),
        "gemm_seconds": gemm_s,
        "sweep_seconds": sweep_s,
        "sweep_over_gemm_min": min(sweep_s) / min(gemm_s),
        "sweep_over_gemm_pairs": pair_ratios,
        "cpu_gemm_seconds": cpu_gemm,
        "cpu_sweep_seconds": cpu_sweep,
        "cpu_sweep_over_gemm_min": min(cpu_sweep) / min(cpu_gemm),
        "reference_seconds": reference_s,
        "reference_over_gemm": reference_s / min(gemm_s),
        "max_rel_err_rows": rel_err,
        "max_rel_err_means": mean_rel_err,
        "sklearn_rows": m,
        "sklearn_seconds_measured": sum(sk_s),
        "sklearn_seconds_pieces": sk_s,
        "sklearn_seconds_extrapolated": sk_extrapolated,
        "sklearn_over_sweep": sk_extrapolated / min(sweep_s),
        "sklearn_max_rel_err": sk_rel_err,
        "memory": memory,
        "means": dict(zip(map(str, SIGMAS), rows.mean(axis=1).tolist())),
    }
    print(report(result))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)
    return result


def report(r):
    mib = 1024.0**2
    blas = ", ".join(f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)"
                     for i in r["threadpool_info"] if i["user_api"] == "blas")
    lines = [
        f"machine: {r['machine']}; load average at the end {r['load_average'][0]:.2f}",
        f"BLAS: {blas}; env {r['env']}",
        f"distances: {r['distance_plan']}",
        "",
        "| measurement (MNIST, 10,000 x 10,000, 784 pixels, 8 sigmas) | value |",
        "|---|---|",
        f"| bare float64 GEMM (10000x784)@(784x10000), s | min {min(r['gemm_seconds']):.3f}, "
        f"median {statistics.median(r['gemm_seconds']):.3f} |",
        f"| kdelib exact 8-sigma sweep, s | min {min(r['sweep_seconds']):.3f}, "
        f"median {statistics.median(r['sweep_seconds']):.3f} |",
        f"| sweep / GEMM (ratio of minima) | {r['sweep_over_gemm_min']:.2f} |",
        f"| sweep / GEMM (each interleaved pair) | "
        f"{', '.join(f'{x:.2f}' for x in r['sweep_over_gemm_pairs'])} |",
        f"| one thread each, CPU seconds: GEMM / sweep (minima) | {min(r['cpu_gemm_seconds']):.2f}"
        f" / {min(r['cpu_sweep_seconds']):.2f} = {r['cpu_sweep_over_gemm_min']:.2f} |",
        f"| plain float64 reference (GEMM + logsumexp per sigma), s | "
        f"{r['reference_seconds']:.2f} ({r['reference_over_gemm']:.1f}x GEMM) |",
        f"| max relative difference from the reference, per row / of the means | "
        f"{r['max_rel_err_rows']:.1e} / {r['max_rel_err_means']:.1e} |",
        f"| sklearn KernelDensity, leaf_size=10000 (exact, 1 thread), {r['sklearn_rows']} rows "
        f"x 8 sigmas measured, s | {r['sklearn_seconds_measured']:.1f} |",
        f"| sklearn extrapolated to 10,000 rows, s | {r['sklearn_seconds_extrapolated']:.0f} |",
        f"| sklearn / kdelib sweep (min sweep; median sweep) | {r['sklearn_over_sweep']:.0f}x; "
        f"{r['sklearn_seconds_extrapolated'] / statistics.median(r['sweep_seconds']):.0f}x |",
        f"| max relative difference from sklearn (exact setting) | "
        f"{r['sklearn_max_rel_err']:.1e} |",
        f"| peak memory (VmHWM) of the sweep / of loading the data, MiB | "
        f"{r['memory']['vmhwm_sweep'] / mib:.0f} / {r['memory']['vmhwm_loading'] / mib:.0f} "
        f"(RSS before the sweep {r['memory']['rss_before_sweep'] / mib:.0f}) |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
