"""Benchmark of kdelib.image.log_likelihood on the full MNIST split, ratios measured in one run.

For each OpenBLAS kernel (the default one of this CPU, then ``OPENBLAS_CORETYPE=Haswell`` in a
child process started by this script), interleaved ``--repeats`` times, with default threads:

* one bare float32 GEMM and one bare float64 GEMM of the sweep's shape,
  (10000 x 784) @ (784 x 10000),
* the exact 8-sigma sweep (10,000 training x 10,000 validation images),
* the test split at the best sigma (one sigma, 10,000 test images);

then, with one thread each (BLAS limited to one thread, ``n_threads=1``), timed by process CPU
time, interleaved ``--repeats`` times: the two GEMMs and the sweep. Every ratio is a ratio of
minima over the repeats (the machine may be shared: the load average is printed too).

Once, with the default kernel:

* the plain float64 reference (GEMM + ``scipy.special.logsumexp`` per sigma, in row chunks),
  its time and the largest relative difference per row from kdelib (both kernels' results);
* sklearn ``KernelDensity(bandwidth=sigma, leaf_size=len(train))`` (its exact setting, one leaf
  = brute force, single-threaded) on ``--sklearn-rows`` validation rows for every sigma,
  extrapolated linearly to 10,000 rows;
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
import tempfile
import textwrap
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

SIGMAS = [0.05, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0]
SECOND_KERNEL = "Haswell"


def timed(function, clock=time.perf_counter):
    start = clock()
    result = function()
    return result, clock() - start


def cpu_model():
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def measure_kernel(x_train, x_val, x_test, repeats):
    """Interleaved wall-clock and single-threaded CPU timings under this process's BLAS."""
    from kdelib.image import distance_plan, log_likelihood

    a32, v32 = x_train.astype(np.float32), x_val.astype(np.float32)
    a64, v64 = x_train.astype(np.float64), x_val.astype(np.float64)
    log_likelihood(x_train[:500], x_val[:500], SIGMAS, progress=False)  # warm up
    v32[:500] @ a32.T, v64[:500] @ a64.T
    means = log_likelihood(x_train, x_val, SIGMAS, progress=False)
    best = SIGMAS[int(np.argmax(means))]

    t = {key: [] for key in ("gemm32", "gemm64", "sweep", "test")}
    rows = None
    for _ in range(repeats):
        t["gemm32"].append(timed(lambda: v32 @ a32.T)[1])
        t["gemm64"].append(timed(lambda: v64 @ a64.T)[1])
        rows, seconds = timed(lambda: log_likelihood(x_train, x_val, SIGMAS, per_sample=True,
                                                     progress=False))
        t["sweep"].append(seconds)
        t["test"].append(timed(lambda: log_likelihood(x_train, x_test, best, progress=False))[1])

    cpu = {key: [] for key in ("gemm32", "gemm64", "sweep")}
    with threadpool_limits(limits=1, user_api="blas"):
        for _ in range(repeats):
            cpu["gemm32"].append(timed(lambda: v32 @ a32.T, time.process_time)[1])
            cpu["gemm64"].append(timed(lambda: v64 @ a64.T, time.process_time)[1])
            cpu["sweep"].append(timed(lambda: log_likelihood(x_train, x_val, SIGMAS, n_threads=1,
                                                             progress=False),
                                      time.process_time)[1])
    m, c = ({k: min(v) for k, v in d.items()} for d in (t, cpu))
    return rows, {
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "threadpool_info": threadpool_info(),
        "distance_plan": distance_plan(x_train, x_val, SIGMAS).describe(),
        "best_sigma": best,
        "seconds": t,
        "cpu_seconds_one_thread": cpu,
        "sweep_over_gemm32": m["sweep"] / m["gemm32"],
        "sweep_over_gemm64": m["sweep"] / m["gemm64"],
        "test_over_gemm64": m["test"] / m["gemm64"],
        "sweep_over_gemm32_pairs": [s / g for s, g in zip(t["sweep"], t["gemm32"])],
        "cpu_sweep_over_gemm32": c["sweep"] / c["gemm32"],
        "cpu_sweep_over_gemm64": c["sweep"] / c["gemm64"],
        "load_average_after": os.getloadavg(),
    }


def child(args):
    """Run in a fresh interpreter under ``OPENBLAS_CORETYPE``: timings and per-row values."""
    from kdelib.datasets import mnist_splits

    x_train, x_val, x_test = mnist_splits(data_dir=args.data_dir)
    rows, result = measure_kernel(x_train, x_val, x_test, args.repeats)
    np.save(args.child + ".npy", rows)
    with open(args.child, "w") as stream:
        json.dump(result, stream)


def run_child(args, coretype):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "result.json")
        env = dict(os.environ, OPENBLAS_CORETYPE=coretype)
        subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path,
                        "--repeats", str(args.repeats), "--data-dir", args.data_dir],
                       env=env, check=True)
        with open(path) as stream:
            result = json.load(stream)
        return np.load(path + ".npy"), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KDELIB_DATA"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn-rows", type=int, default=120)
    parser.add_argument("--json", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    from kdelib.datasets import mnist_splits

    load_before = os.getloadavg()
    x_train, x_val, x_test = mnist_splits(data_dir=args.data_dir)
    rows, default = measure_kernel(x_train, x_val, x_test, args.repeats)
    second_rows, second = run_child(args, SECOND_KERNEL)

    reference, reference_s = timed(lambda: plain_reference(x_train, x_val, SIGMAS))

    def rel_err(values):
        return float(np.max(np.abs(values - reference) / np.abs(reference)))

    m = args.sklearn_rows
    sk_rows, sk_s = timed(lambda: sklearn_rows(x_train, x_val[:m], SIGMAS))
    sk_extrapolated = sk_s * len(x_val) / m
    result = {
        "machine": (f"{cpu_model()}; {platform.machine()}, {os.cpu_count()} logical CPUs, "
                    f"Python {platform.python_version()}, numpy {np.__version__}"),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                               "OPENBLAS_CORETYPE")},
        "kernels": {"default": default, SECOND_KERNEL: second},
        "reference_seconds": reference_s,
        "reference_over_gemm64": reference_s / min(default["seconds"]["gemm64"]),
        "max_rel_err_rows": rel_err(rows),
        "max_rel_err_rows_second_kernel": rel_err(second_rows),
        "max_rel_err_means": float(np.max(np.abs(rows.mean(1) - reference.mean(1))
                                          / np.abs(reference.mean(1)))),
        "sklearn_rows": m,
        "sklearn_seconds_measured": sk_s,
        "sklearn_seconds_extrapolated": sk_extrapolated,
        "sklearn_over_sweep": sk_extrapolated / min(default["seconds"]["sweep"]),
        "sklearn_max_rel_err": float(np.max(np.abs(rows[:, :m] - sk_rows) / np.abs(sk_rows))),
        "memory": peak_memory(args.data_dir),
        "means": dict(zip(map(str, SIGMAS), rows.mean(axis=1).tolist())),
    }
    print(report(result))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)
    return result


def _blas(info):
    return ", ".join(f"{i['internal_api']} {i['version']} {i.get('architecture', '')} "
                     f"({i['num_threads']} threads)"
                     for i in info if i["user_api"] == "blas")


def report(r):
    mib = 1024.0**2
    lines = [
        f"machine: {r['machine']}",
        f"load average (1, 5, 15 min) before {tuple(round(x, 2) for x in r['load_average_before'])}"
        f", after {tuple(round(x, 2) for x in r['load_average_after'])}",
        f"env {r['env']}",
    ]
    for name, k in r["kernels"].items():
        lines.append(f"kernel {name}: BLAS {_blas(k['threadpool_info'])}")
    lines.append(f"distances: {r['kernels']['default']['distance_plan']}")
    lines += ["", "| measurement (MNIST, 10,000 x 10,000, 784 pixels, 8 sigmas; minima of "
              "interleaved repeats) | " + " | ".join(r["kernels"]) + " |",
              "|---|" + "---|" * len(r["kernels"])]

    def row(label, function):
        lines.append(f"| {label} | " + " | ".join(function(k) for k in r["kernels"].values())
                     + " |")

    def sec(key, group="seconds"):
        return lambda k: (f"{min(k[group][key]):.3f} (median "
                          f"{statistics.median(k[group][key]):.3f})")

    row("float32 GEMM (10000x784)@(784x10000), s", sec("gemm32"))
    row("float64 GEMM, same shape, s", sec("gemm64"))
    row("kdelib exact 8-sigma sweep, s", sec("sweep"))
    row("sweep / float32 GEMM (goal <= 1.5)", lambda k: f"{k['sweep_over_gemm32']:.2f}")
    row("sweep / float64 GEMM (goal <= 0.75)", lambda k: f"{k['sweep_over_gemm64']:.2f}")
    row("sweep / float32 GEMM, each interleaved pair",
        lambda k: ", ".join(f"{x:.2f}" for x in k["sweep_over_gemm32_pairs"]))
    row("test split at the best sigma, s", sec("test"))
    row("test split / float64 GEMM (goal <= 0.6)", lambda k: f"{k['test_over_gemm64']:.2f}")
    row("one thread, CPU s: float32 GEMM / float64 GEMM / sweep",
        lambda k: " / ".join(f"{min(k['cpu_seconds_one_thread'][x]):.2f}"
                             for x in ("gemm32", "gemm64", "sweep")))
    row("one thread: sweep / float32 GEMM; sweep / float64 GEMM",
        lambda k: f"{k['cpu_sweep_over_gemm32']:.2f}; {k['cpu_sweep_over_gemm64']:.2f}")
    lines += [
        "",
        "| measurement (default kernel) | value |",
        "|---|---|",
        f"| plain float64 reference (GEMM + logsumexp per sigma), s | "
        f"{r['reference_seconds']:.2f} ({r['reference_over_gemm64']:.1f}x float64 GEMM) |",
        f"| max relative difference from the reference per row: default / {SECOND_KERNEL} "
        f"kernel | {r['max_rel_err_rows']:.1e} / {r['max_rel_err_rows_second_kernel']:.1e} |",
        f"| max relative difference of the means | {r['max_rel_err_means']:.1e} |",
        f"| sklearn KernelDensity, leaf_size=10000 (exact, 1 thread), {r['sklearn_rows']} rows "
        f"x 8 sigmas measured, s | {r['sklearn_seconds_measured']:.1f} |",
        f"| sklearn extrapolated to 10,000 rows, s | {r['sklearn_seconds_extrapolated']:.0f} |",
        f"| sklearn / kdelib sweep (min sweep) | {r['sklearn_over_sweep']:.0f}x |",
        f"| max relative difference from sklearn (exact setting) | "
        f"{r['sklearn_max_rel_err']:.1e} |",
        f"| peak memory (VmHWM) of the sweep / of loading the data, MiB | "
        f"{r['memory']['vmhwm_sweep'] / mib:.0f} / {r['memory']['vmhwm_loading'] / mib:.0f} "
        f"(RSS before the sweep {r['memory']['rss_before_sweep'] / mib:.0f}) |",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
