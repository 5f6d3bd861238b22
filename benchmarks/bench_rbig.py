"""Benchmark of RBIG on MNIST: time per layer and its parts, peak memory, scoring cost.

On the 10,000 training images of ``kdelib.datasets.mnist_splits()``, dequantised with uniform
noise of one pixel code (the book's protocol), it reports:

* per layer, the time of the marginal fit, of the marginal transform with its log-determinant,
  of computing the rotation and of applying it (the parts of ``RBIG.fit``, timed one by one
  with the same code path);
* the time of a whole ``RBIG.fit`` with the same settings, for comparison with the sum of the
  parts;
* ``score_samples`` on the 10,000 test images against one ``transform`` of them (ratio in one
  run; it should be at most 3);
* the peak resident memory of the process (``VmHWM``), and the BLAS libraries and their threads
  (``threadpoolctl``).

Usage: ``KDELIB_DATA=/path/to/mnist python benchmarks/bench_rbig.py [--layers 10] [--json out.json]``
"""

import argparse
import json
import os
import platform
import time

import numpy as np
from threadpoolctl import threadpool_info

from kdelib import RBIG, datasets
from kdelib.rbig import MARGINALS, ROTATIONS, _forward

SEED = 20251129


def peak_rss_mib():
    """Peak resident set size of this process in MiB (Linux ``VmHWM``), or None."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def timed(func, *args):
    start = time.perf_counter()
    result = func(*args)
    return result, time.perf_counter() - start


def dequantised(images, rng):
    """Pixel codes / 256 plus uniform noise inside each code's cell of width 1/256."""
    return images.astype(np.float64) + rng.random(images.shape) / 256


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10, help="layers to time (default 10)")
    parser.add_argument("--marginal", default="piecewise", choices=sorted(MARGINALS))
    parser.add_argument("--rotation", default="pca", choices=sorted(ROTATIONS))
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()

    x_train, _, x_test = datasets.mnist_splits()
    rng = np.random.default_rng(SEED)
    X, X_test = dequantised(x_train, rng), dequantised(x_test, rng)
    print(f"train {X.shape}, test {X_test.shape}; marginal={args.marginal!r}, "
          f"rotation={args.rotation!r}")

    # The parts of one layer, timed separately along the same path as RBIG.fit.
    rotate = ROTATIONS[args.rotation]
    layer_rng = np.random.RandomState(0)
    rows = []
    current = X
    for layer in range(args.layers):
        g, t_fit = timed(MARGINALS[args.marginal](layer).fit, current)
        (U, _), t_marg = timed(_forward, g, current)
        R, t_rot = timed(rotate, U, layer_rng)
        current, t_apply = timed(np.matmul, U, R)
        rows.append({"layer": layer + 1, "marginal_fit_s": t_fit, "marginal_transform_s": t_marg,
                     "rotation_s": t_rot, "apply_rotation_s": t_apply,
                     "total_s": t_fit + t_marg + t_rot + t_apply})
        print(f"layer {layer + 1:2d}: marginal fit {t_fit:6.3f} s, transform + log-det "
              f"{t_marg:6.3f} s, rotation {t_rot:6.3f} s, apply {t_apply:6.3f} s")
    del current, U
    per_layer = float(np.median([r["total_s"] for r in rows]))

    model = RBIG(marginal=args.marginal, rotation=args.rotation, max_layers=args.layers,
                 validation_fraction=0, random_state=0)
    _, t_whole = timed(model.fit, X)
    _, t_transform = timed(model.transform, X_test)
    scores, t_score = timed(model.score_samples, X_test)
    peak = peak_rss_mib()
    blas = [f"{i['internal_api']} {i.get('version')} ({i['num_threads']} threads)"
            for i in threadpool_info() if i["user_api"] == "blas"]

    bits = 8 - scores.mean() / (X.shape[1] * np.log(2))
    print(f"whole fit, {args.layers} layers: {t_whole:.2f} s "
          f"({t_whole / args.layers:.2f} s per layer; median of the parts {per_layer:.2f} s)")
    print(f"test images: transform {t_transform:.2f} s, score_samples {t_score:.2f} s, "
          f"ratio {t_score / t_transform:.2f} (limit 3)")
    print(f"test bits/dim after {args.layers} layers (no early stopping): {bits:.3f}")
    print(f"peak memory (VmHWM): {peak:.0f} MiB (limit 2048)" if peak else "peak memory: n/a")
    print(f"{os.cpu_count()} logical CPUs, {platform.processor() or platform.machine()}; "
          f"BLAS: {', '.join(blas)}")
    if args.json:
        with open(args.json, "w") as stream:
            json.dump({"layers": rows, "whole_fit_s": t_whole, "transform_s": t_transform,
                       "score_samples_s": t_score, "score_over_transform": t_score / t_transform,
                       "peak_rss_mib": peak, "bits_per_dim": float(bits),
                       "threadpool_info": threadpool_info()}, stream, indent=2)


if __name__ == "__main__":
    main()
