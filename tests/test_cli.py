"""Tests of the command line ``python -m kdelib sweep``."""

import csv
import hashlib
import subprocess
import sys

import numpy as np
import pytest

from mnist_paths import mnist_dir
from kdelib import __main__ as cli
from kdelib import datasets, image

LIMIT = 400


def read_csv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def splits():
    x_train, x_val, x_test = datasets.mnist_splits(data_dir=mnist_dir())
    return x_train[:LIMIT], x_val[:LIMIT], x_test[:LIMIT]


@pytest.mark.data
def test_sweep_writes_the_documented_csv(tmp_path, capsys, splits):
    out = tmp_path / "mnist.csv"
    status = cli.main(["sweep", "--dataset", "mnist", "--sigmas", "0.1,0.2,0.5,1",
                       "--data-dir", str(mnist_dir()), "--csv", str(out), "--limit", str(LIMIT),
                       "--repeats", "2"])
    assert status == 0
    rows = read_csv(out)
    assert list(rows[0]) == ["dataset", "sigma", "split", "mean_log_likelihood", "seconds"]
    assert [r["split"] for r in rows] == ["valid"] * 4 + ["test"]
    x_train, x_val, x_test = splits
    sigmas = [0.1, 0.2, 0.5, 1.0]
    expected = image.log_likelihood(x_train, x_val, sigmas)
    for row, sigma, value in zip(rows, sigmas, expected):
        assert row["dataset"] == "mnist" and float(row["sigma"]) == sigma
        assert float(row["mean_log_likelihood"]) == value  # repr round-trips exactly
        assert float(row["seconds"]) > 0
    best = sigmas[int(np.argmax(expected))]
    assert float(rows[-1]["sigma"]) == best
    assert float(rows[-1]["mean_log_likelihood"]) == float(
        image.log_likelihood(x_train, x_test, best))
    printed = capsys.readouterr().out
    assert "<- best" in printed and "exact integer distances" in printed
    assert [p.name for p in tmp_path.iterdir()] == ["mnist.csv"]  # no temporary file left


@pytest.mark.data
def test_swap_exchanges_train_and_validation(tmp_path, splits):
    out = tmp_path / "swap.csv"
    assert cli.main(["sweep", "--dataset", "mnist", "--sigmas", "0.2,0.5", "--swap",
                     "--data-dir", str(mnist_dir()), "--csv", str(out), "--limit", str(LIMIT)]) == 0
    x_train, x_val, _ = splits
    expected = image.log_likelihood(x_val, x_train, [0.2, 0.5])
    got = [float(r["mean_log_likelihood"]) for r in read_csv(out)[:2]]
    np.testing.assert_array_equal(got, expected)
    assert not np.allclose(expected, image.log_likelihood(x_train, x_val, [0.2, 0.5]))


@pytest.mark.data
def test_default_grid_is_the_original_one(tmp_path):
    out = tmp_path / "grid.csv"
    assert cli.main(["sweep", "--dataset", "mnist", "--data-dir", str(mnist_dir()),
                     "--csv", str(out), "--limit", "50"]) == 0
    sigmas = [float(r["sigma"]) for r in read_csv(out) if r["split"] == "valid"]
    assert sigmas == [0.05, 0.08, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0]


def test_cifar100_sweep_on_a_small_archive(tmp_path, monkeypatch):
    from test_datasets import _cifar_rows, build_cifar_archive

    archive = build_cifar_archive(tmp_path, n_train=20_000, n_test=30)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.CIFAR100_ARCHIVE, "md5", md5)
    out = tmp_path / "cifar.csv"
    assert cli.main(["sweep", "--dataset", "cifar100", "--sigmas", "0.2,1", "--limit", "60",
                     "--data-dir", str(tmp_path), "--csv", str(out)]) == 0
    rows = read_csv(out)
    images = _cifar_rows(20_000, 0)
    np.random.RandomState(datasets.DEFAULT_SEED).shuffle(images)
    x_train, x_val = images[:60] / 255.0, images[10_000:10_060] / 255.0
    expected = image.log_likelihood(x_train, x_val, [0.2, 1.0])
    np.testing.assert_array_equal([float(r["mean_log_likelihood"]) for r in rows[:2]], expected)
    assert {r["dataset"] for r in rows} == {"cifar100"}


def test_atomic_csv_leaves_nothing_on_failure(tmp_path, monkeypatch):
    rows = [{"dataset": "mnist", "sigma": 0.5, "split": "valid",
             "mean_log_likelihood": -1.25, "seconds": 0.1}]
    target = tmp_path / "out.csv"
    target.write_text("old content\n")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(cli.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        cli.write_csv_atomic(rows, target)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # temporary file removed
    assert target.read_text() == "old content\n"  # the old file is untouched
    monkeypatch.undo()
    cli.write_csv_atomic(rows, target)
    assert read_csv(target)[0]["mean_log_likelihood"] == "-1.25"


def test_csv_into_missing_folder_is_an_error(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        cli.write_csv_atomic([], tmp_path / "nope" / "x.csv")


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--dataset", "mnist", "--sigmas", "0.1,-2"], "positive"),
    (["sweep", "--dataset", "mnist", "--sigmas", "a,b"], "comma-separated"),
    (["sweep", "--dataset", "svhn"], "invalid choice"),
    (["sweep", "--dataset", "mnist", "--repeats", "0"], "positive integer"),
    ([], "required"),
])
def test_bad_arguments_exit_with_status_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_reported_not_raised(tmp_path, capsys):
    status = cli.main(["sweep", "--dataset", "mnist", "--data-dir", str(tmp_path)])
    assert status == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz was not found" in err and str(tmp_path) in err


def test_module_entry_point_runs(tmp_path):
    out = subprocess.run([sys.executable, "-m", "kdelib", "sweep", "--help"],
                         capture_output=True, text=True, check=True)
    assert "--swap" in out.stdout and "--csv" in out.stdout
