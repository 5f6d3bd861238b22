"""Command line: ``python -m kdelib sweep`` (or ``kdelib sweep``), the image-KDE sigma sweep.

The sweep fits the Gaussian KDE of the training split, evaluates the mean log-likelihood of
the validation split for every sigma (one pass over the distances), picks the best sigma and
evaluates the test split at it. It prints a table and can write a CSV with the columns
``dataset,sigma,split,mean_log_likelihood,seconds``.
"""

import argparse
import csv
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: The sigma grid of the original experiment.
DEFAULT_SIGMAS = (0.05, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0)

CSV_COLUMNS = ("dataset", "sigma", "split", "mean_log_likelihood", "seconds")


def _loader(name):
    from . import datasets

    return {"mnist": datasets.mnist_splits, "cifar100": datasets.cifar100_splits}[name]


def _sigma_list(text):
    """argparse type: a comma-separated list of positive sigmas."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"sigmas must be comma-separated numbers such as 0.1,0.5,1; got {text!r}"
        ) from None
    if not values or not all(np.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"sigmas must be positive and finite; got {text!r}")
    return values


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def build_parser():
    """The argument parser of ``python -m kdelib``."""
    parser = argparse.ArgumentParser(
        prog="python -m kdelib",
        description="Exact Gaussian kernel density estimation on image data sets.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sweep = commands.add_parser(
        "sweep",
        help="sweep sigma on the validation split, evaluate the test split at the best one",
        description=(
            "Fit a Gaussian KDE to the training split, compute the mean log-likelihood of the "
            "validation split for every sigma, pick the best sigma and evaluate the test "
            "split at it. Every value is exact in float64."
        ),
    )
    sweep.add_argument("--dataset", required=True, choices=("mnist", "cifar100"))
    sweep.add_argument(
        "--sigmas", type=_sigma_list, default=list(DEFAULT_SIGMAS),
        help="comma-separated kernel standard deviations (default: %(default)s)",
    )
    sweep.add_argument(
        "--data-dir", default=None,
        help="folder with the data files (default: $KDELIB_DATA, then the download cache)",
    )
    sweep.add_argument(
        "--csv", default=None, type=Path,
        help="write the results here (written to a temporary file, then renamed)",
    )
    sweep.add_argument(
        "--repeats", type=_positive_int, default=1,
        help="time each evaluation this many times and report the mean (default: 1)",
    )
    sweep.add_argument(
        "--swap", action="store_true",
        help="exchange the roles of the training and validation splits",
    )
    sweep.add_argument(
        "--limit", type=_positive_int, default=None,
        help="use only the first N images of each split (for quick checks)",
    )
    sweep.add_argument("--seed", type=int, default=None, help="shuffle seed (default: 1573368177)")
    sweep.set_defaults(run=run_sweep)
    return parser


def _timed(function, repeats):
    """Result of ``function()`` and the mean wall time over ``repeats`` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - start)
    return result, float(np.mean(seconds))


def sweep_rows(dataset, sigmas, data_dir=None, repeats=1, swap=False, limit=None, seed=None):
    """Run the sweep; return the CSV rows (dicts) and a description of how it ran.

    Every validation row comes from one call that evaluates all sigmas together, so each
    carries that call's time; the test row carries the time of its own call.
    """
    from . import image
    from .datasets import DEFAULT_SEED

    x_train, x_val, x_test = _loader(dataset)(
        seed=DEFAULT_SEED if seed is None else seed, data_dir=data_dir
    )
    if limit is not None:
        x_train, x_val, x_test = x_train[:limit], x_val[:limit], x_test[:limit]
    if swap:
        x_train, x_val = x_val, x_train
    sigmas = np.asarray(sigmas, dtype=np.float64)
    valid, valid_seconds = _timed(
        lambda: image.log_likelihood(x_train, x_val, sigmas, progress=False), repeats
    )
    best = float(sigmas[int(np.argmax(valid))])
    test, test_seconds = _timed(
        lambda: float(image.log_likelihood(x_train, x_test, best, progress=False)), repeats
    )
    rows = [
        {"dataset": dataset, "sigma": float(s), "split": "valid",
         "mean_log_likelihood": float(v), "seconds": valid_seconds}
        for s, v in zip(sigmas, valid)
    ]
    rows.append({"dataset": dataset, "sigma": best, "split": "test",
                 "mean_log_likelihood": test, "seconds": test_seconds})
    info = {
        "shapes": (x_train.shape, x_val.shape, x_test.shape),
        "plan": image.distance_plan(x_train, x_val, sigmas).describe(),
        "best_sigma": best,
        "threads": _thread_summary(),
    }
    return rows, info


def _thread_summary():
    from threadpoolctl import threadpool_info

    from ._parallel import n_workers

    blas = ", ".join(f"{i['internal_api']} {i['version']}" for i in threadpool_info()
                     if i["user_api"] == "blas")
    return f"{n_workers()} worker threads, each with a single-threaded BLAS ({blas})"


def format_table(rows, info, swap, repeats):
    """The printed summary of a sweep."""
    lines = []
    train_shape, val_shape, test_shape = info["shapes"]
    roles = ("validation split as kernel centres (--swap)" if swap
             else "training split as kernel centres")
    lines.append(f"{rows[0]['dataset']}: {roles}; train {train_shape}, valid {val_shape}, "
                 f"test {test_shape}")
    lines.append(f"distances: {info['plan']}")
    lines.append(f"threads: {info['threads']}")
    lines.append(f"{'sigma':>8}  {'split':<5}  {'mean log-likelihood':>22}  {'seconds':>9}")
    for row in rows:
        best = row["split"] == "valid" and row["sigma"] == info["best_sigma"]
        marker = "  <- best" if best else ""
        lines.append(f"{row['sigma']:>8g}  {row['split']:<5}  {row['mean_log_likelihood']:>22.10f}"
                     f"  {row['seconds']:>9.4f}{marker}")
    lines.append(f"(seconds: mean of {repeats} run(s); the validation rows share one call over "
                 f"all sigmas)")
    return "\n".join(lines)


def write_csv_atomic(rows, path):
    """Write the rows to ``path`` via a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and a failure leaves no file behind.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: the folder {path.parent} does not exist.")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        # repr: the shortest text that reads back as the same float64
        writer.writerow({key: repr(row[key]) if isinstance(row[key], float) else row[key]
                         for key in CSV_COLUMNS})
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", newline="") as stream:
            stream.write(buffer.getvalue())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def run_sweep(args):
    rows, info = sweep_rows(
        args.dataset, args.sigmas, data_dir=args.data_dir, repeats=args.repeats,
        swap=args.swap, limit=args.limit, seed=args.seed,
    )
    print(format_table(rows, info, args.swap, args.repeats))
    if args.csv is not None:
        write_csv_atomic(rows, args.csv)
        print(f"wrote {args.csv}")
    return 0


def main(argv=None):
    """Entry point of ``python -m kdelib`` and of the ``kdelib`` console script.

    Returns the exit status: 0 on success, 1 when the data cannot be loaded or the CSV
    cannot be written (the message goes to stderr); argparse exits with 2 on bad arguments.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
