"""Benchmark of the optional GPU path of kdelib.image.log_likelihood on the full MNIST split.

On one CUDA device, for each installed backend (PyTorch, CuPy) and several row-block sizes,
interleaved ``--repeats`` times after one warm-up, minima reported:

* the exact 8-sigma sweep (10,000 training x 10,000 validation images), end to end: the
  inputs copied to the device, the per-row values copied back (``device="cuda"`` for PyTorch;
  the same algorithm through the CuPy backend);
* one float64 and one float32 GEMM of the sweep's shape, (10000 x 784) @ (784 x 10000), on
  inputs already on the device, synchronised;
* the copy of both float64 inputs to the device;

and once, on the CPU of the same machine: the exact CPU sweep (the values every GPU result
is compared with, largest relative difference per row) and the plain float64 reference.

Usage: ``KDELIB_DATA=../shared/data/mnist python benchmarks/bench_image_gpu.py [--json out.json]``
"""

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_image_kde import SIGMAS, cpu_model, plain_reference, timed  # noqa: E402

BLOCK_ROWS = [None, 1000, 3000]  # None: the backend's default (all 10,000 rows)


def backends():
    """(name, backend, synchronise) for each importable GPU library."""
    from kdelib.image import _gpu

    found = []
    try:
        import torch

        if torch.cuda.is_available():
            found.append(("torch " + torch.__version__, _gpu.TorchBackend(torch, "cuda:0"),
                          torch.cuda.synchronize))
    except ImportError:
        pass
    try:
        import cupy

        found.append(("cupy " + cupy.__version__, _gpu.CupyBackend(cupy, 0),
                      cupy.cuda.Device(0).synchronize))
    except ImportError:
        pass
    return found


def to_device(name, backend, array):
    """``array`` on the device in its own dtype (the backends' ``to_device`` makes float64)."""
    if name.startswith("torch"):
        return backend.torch.as_tensor(array, device=backend.device)
    return backend.cupy.asarray(array)


def device_gemms(name, backend, synchronise, a64, v64, repeats):
    """Minimum seconds of one synchronised product of device arrays, float64 and float32."""
    out = {}
    for key, dtype in (("gemm64", np.float64), ("gemm32", np.float32)):
        a, v = (to_device(name, backend, m.astype(dtype)) for m in (a64, v64))
        synchronise()
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            v @ a.T
            synchronise()
            times.append(time.perf_counter() - start)
        out[key] = min(times[1:])
    return out


def copy_seconds(backend, synchronise, a64, v64, repeats):
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        backend.to_device(a64), backend.to_device(v64)
        synchronise()
        times.append(time.perf_counter() - start)
    return min(times[1:])


def measure(x_train, x_val, repeats):
    from kdelib.image import _gpu, log_likelihood

    cpu_rows, cpu_s = timed(lambda: log_likelihood(x_train, x_val, SIGMAS, per_sample=True,
                                                   progress=False))
    reference, reference_s = timed(lambda: plain_reference(x_train, x_val, SIGMAS))
    a64, v64 = x_train.astype(np.float64), x_val.astype(np.float64)
    result = {"cpu_sweep_seconds": cpu_s, "cpu_reference_seconds": reference_s,
              "cpu_max_rel_err_rows_vs_reference":
                  float(np.max(np.abs(cpu_rows - reference) / np.abs(reference))),
              "backends": {}}
    for name, backend, synchronise in backends():
        def sweep(rows):
            if name.startswith("torch") and rows is None:  # the public entry point
                return log_likelihood(x_train, x_val, SIGMAS, per_sample=True, device="cuda")
            return _gpu.backend_log_likelihood(backend, x_train, x_val, np.array(SIGMAS), rows)

        entry = {"sweep_seconds": {}, "max_rel_err_rows_vs_cpu": {},
                 "max_rel_err_rows_vs_reference": {}}
        for rows in BLOCK_ROWS:
            values = sweep(rows)  # warm-up, and the values compared
            key = str(rows)
            entry["max_rel_err_rows_vs_cpu"][key] = float(
                np.max(np.abs(values - cpu_rows) / np.abs(cpu_rows)))
            entry["max_rel_err_rows_vs_reference"][key] = float(
                np.max(np.abs(values - reference) / np.abs(reference)))
            entry["sweep_seconds"][key] = []
        for _ in range(repeats):  # interleaved over the block sizes
            for rows in BLOCK_ROWS:
                entry["sweep_seconds"][str(rows)].append(timed(lambda: sweep(rows))[1])
        if name.startswith("torch"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            sweep(None)
            entry["peak_device_bytes_default_block"] = torch.cuda.max_memory_allocated()
        entry.update(device_gemms(name, backend, synchronise, a64, v64, repeats))
        entry["copy_inputs_seconds"] = copy_seconds(backend, synchronise, a64, v64, repeats)
        best = min(min(v) for v in entry["sweep_seconds"].values())
        entry["best_sweep_over_gemm64"] = best / entry["gemm64"]
        result["backends"][name] = entry
    return result


def gpu_name():
    try:
        import torch

        return torch.cuda.get_device_name(0) + f", CUDA {torch.version.cuda}"
    except Exception as error:  # report, do not fail: the name is only a label
        return f"unknown ({error})"


def report(r):
    lines = [f"machine: {r['machine']}", f"GPU: {r['gpu']}",
             f"CPU exact sweep {r['cpu_sweep_seconds']:.2f} s, plain float64 reference "
             f"{r['cpu_reference_seconds']:.2f} s, CPU vs reference per row "
             f"{r['cpu_max_rel_err_rows_vs_reference']:.1e}", ""]
    for name, e in r["backends"].items():
        lines += [f"{name}: float64 GEMM {e['gemm64'] * 1e3:.2f} ms, float32 GEMM "
                  f"{e['gemm32'] * 1e3:.2f} ms, both inputs to the device "
                  f"{e['copy_inputs_seconds'] * 1e3:.2f} ms; best sweep / float64 GEMM "
                  f"{e['best_sweep_over_gemm64']:.1f}"
                  + (f"; peak device memory of the default sweep "
                     f"{e['peak_device_bytes_default_block'] / 2**30:.2f} GiB"
                     if "peak_device_bytes_default_block" in e else ""),
                  "| rows per block | sweep, ms (min; all) | max rel. diff per row vs CPU "
                  "| vs plain reference |", "|---|---|---|---|"]
        for key, times in e["sweep_seconds"].items():
            lines.append(f"| {key} | {min(times) * 1e3:.1f}; "
                         + ", ".join(f"{t * 1e3:.1f}" for t in times)
                         + f" | {e['max_rel_err_rows_vs_cpu'][key]:.1e} "
                         f"| {e['max_rel_err_rows_vs_reference'][key]:.1e} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KDELIB_DATA"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rows", type=int, default=None, help="first rows only (a quick try)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from kdelib.datasets import mnist_splits

    x_train, x_val, _ = mnist_splits(data_dir=args.data_dir)
    x_train, x_val = x_train[:args.rows], x_val[:args.rows]
    result = {"machine": (f"{cpu_model()}; {os.cpu_count()} logical CPUs, Python "
                          f"{platform.python_version()}, numpy {np.__version__}"),
              "gpu": gpu_name(), "threadpool_info": threadpool_info()}
    result.update(measure(x_train, x_val, args.repeats))
    print(report(result))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result, stream, indent=2)
    return result


if __name__ == "__main__":
    main()
