"""Tests of kdelib.datasets: verification, lookup order, the seed protocol, downloads, CIFAR."""

import functools
import gzip
import hashlib
import http.server
import io
import pickle
import shutil
import subprocess
import sys
import tarfile
import threading

import numpy as np
import pytest

from mnist_paths import mnist_dir
from kdelib import datasets
from kdelib.datasets import DataFileError

SEED = 1573368177


def raw_idx(path, offset):
    """Independent reader: gunzip and skip the header."""
    with gzip.open(path) as stream:
        return np.frombuffer(stream.read(), dtype=np.uint8, offset=offset)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)


@pytest.fixture
def copy_of_mnist(tmp_path):
    """A writable copy of the MNIST folder."""
    target = tmp_path / "mnist"
    target.mkdir()
    for name in datasets.MNIST_FILES:
        shutil.copy(mnist_dir() / f"{name}.gz", target)
    return target


# ------------------------------------------------------------------------------------------
# The seed protocol on the real files


@pytest.mark.data
def test_mnist_splits_follow_the_seed_protocol():
    folder = mnist_dir()
    x_train, x_val, x_test = datasets.mnist_splits(data_dir=folder)
    images = raw_idx(folder / "train-images-idx3-ubyte.gz", 16).reshape(60000, 784)
    classic = images[:50000].astype(np.float32) / np.float32(256)
    np.random.RandomState(SEED).shuffle(classic)  # the protocol, on a private generator
    np.testing.assert_array_equal(x_train, classic[:10000])
    np.testing.assert_array_equal(x_val, classic[10000:20000])
    test_images = raw_idx(folder / "t10k-images-idx3-ubyte.gz", 16).reshape(10000, 784)
    np.testing.assert_array_equal(x_test, test_images / np.float32(256))
    for split in (x_train, x_val, x_test):
        assert split.dtype == np.float32 and split.shape == (10000, 784)
    assert x_train.max() == np.float32(255 / 256)


@pytest.mark.data
def test_mnist_splits_equal_the_literal_global_protocol():
    """np.random.seed + np.random.shuffle, run in a separate interpreter."""
    folder = mnist_dir()
    code = f"""
import gzip, hashlib, numpy as np
with gzip.open({str(folder / 'train-images-idx3-ubyte.gz')!r}) as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(60000, 784)[:50000]
x = x.astype(np.float32) / 256
np.random.seed({SEED})
np.random.shuffle(x)
print(hashlib.sha256(x[:20000].tobytes()).hexdigest())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    x_train, x_val, _ = datasets.mnist_splits(data_dir=folder)
    ours = hashlib.sha256(np.vstack([x_train, x_val]).tobytes()).hexdigest()
    assert out.stdout.strip() == ours


@pytest.mark.data
def test_caller_global_random_state_is_untouched():
    state = np.random.get_state()
    datasets.mnist_splits(data_dir=mnist_dir())
    after = np.random.get_state()
    assert state[0] == after[0] and state[2:] == after[2:]
    np.testing.assert_array_equal(state[1], after[1])


@pytest.mark.data
def test_other_seed_gives_other_split():
    a = datasets.mnist_splits(seed=1, data_dir=mnist_dir())[0]
    b = datasets.mnist_splits(data_dir=mnist_dir())[0]
    assert not np.array_equal(a, b)


@pytest.mark.data
def test_load_mnist_labels_and_kinds():
    images, labels = datasets.load_mnist("t10k", data_dir=mnist_dir())
    assert images.shape == (10000, 784) and labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))
    with pytest.raises(ValueError, match="'train', 't10k'"):
        datasets.load_mnist("valid", data_dir=mnist_dir())


# ------------------------------------------------------------------------------------------
# Lookup order and verification


@pytest.mark.data
def test_lookup_order_argument_before_environment(monkeypatch, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(datasets.DATA_ENV, str(empty))
    images, _ = datasets.load_mnist("t10k", data_dir=mnist_dir())  # argument wins
    assert images.shape == (10000, 784)
    with pytest.raises(DataFileError, match="KDELIB_DATA environment variable"):
        datasets.load_mnist("t10k")
    monkeypatch.setenv(datasets.DATA_ENV, str(mnist_dir()))
    assert datasets.load_mnist("t10k")[0].shape == (10000, 784)  # then the variable
    with pytest.raises(DataFileError, match="data_dir argument"):
        datasets.load_mnist("t10k", data_dir=empty)  # an explicit folder never downloads


@pytest.mark.data
def test_decompressed_files_are_accepted(tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(mnist_dir() / f"{name}.gz") as stream:
            (tmp_path / name).write_bytes(stream.read())
    images, _ = datasets.load_mnist("t10k", data_dir=tmp_path)
    np.testing.assert_array_equal(
        images, raw_idx(mnist_dir() / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 784))


@pytest.mark.data
@pytest.mark.parametrize("damage", ["flip", "truncate", "swap", "garbage"])
def test_damaged_files_raise_with_file_and_fix(copy_of_mnist, damage):
    path = copy_of_mnist / "t10k-labels-idx1-ubyte.gz"
    if damage == "flip":  # valid gzip, one changed label
        content = bytearray(gzip.decompress(path.read_bytes()))
        content[100] ^= 1
        path.write_bytes(gzip.compress(bytes(content)))
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:2000])
    elif damage == "swap":  # the training labels under the test name
        shutil.copy(copy_of_mnist / "train-labels-idx1-ubyte.gz", path)
    else:
        path.write_bytes(b"not a gzip file at all")
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte") as info:
        datasets.load_mnist("t10k", data_dir=copy_of_mnist)
    assert isinstance(info.value, OSError) and isinstance(info.value, ValueError)
    assert "fresh copy" in str(info.value)


def test_idx_header_is_checked():
    with pytest.raises(DataFileError, match="header"):
        datasets._parse_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab", "x")  # float type code
    with pytest.raises(DataFileError, match="does not match"):
        datasets._parse_idx(b"\x00\x00\x08\x01\x00\x00\x00\x05ab", "x")  # 5 promised, 2 given
    parsed = datasets._parse_idx(b"\x00\x00\x08\x02\x00\x00\x00\x02\x00\x00\x00\x01ab", "x")
    np.testing.assert_array_equal(parsed, [[97], [98]])


# ------------------------------------------------------------------------------------------
# Downloads into the cache (from a local server)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/'served' over HTTP on 127.0.0.1; yields (folder, base URL)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch, no_env):
    folder = tmp_path / "cache"
    monkeypatch.setattr(datasets, "_cache_dir", lambda sub: folder / sub)
    return folder / "mnist"


@pytest.mark.data
def test_download_verifies_and_caches(server, cache, monkeypatch):
    served, url = server
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        shutil.copy(mnist_dir() / f"{name}.gz", served)
    # the first mirror does not have the files, the second one does
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (url + "missing/", url))
    images, labels = datasets.load_mnist("t10k")
    assert images.shape == (10000, 784)
    assert sorted(p.name for p in cache.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    for p in served.iterdir():  # later calls read the cache, not the server
        p.unlink()
    assert datasets.load_mnist("t10k")[1].shape == (10000,)


@pytest.mark.data
def test_bad_download_is_never_cached(server, cache, monkeypatch):
    served, url = server
    content = bytearray(gzip.decompress((mnist_dir() / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[-1] ^= 1
    (served / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(content)))
    shutil.copy(mnist_dir() / "t10k-images-idx3-ubyte.gz", served)
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (url,))
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte"):
        datasets.load_mnist("t10k")
    leftovers = sorted(p.name for p in cache.iterdir())
    assert leftovers == ["t10k-images-idx3-ubyte.gz"]  # the good file only, no temporary


def test_offline_error_says_where_to_put_the_files(cache, monkeypatch):
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", ("http://127.0.0.1:9/",))  # discard port
    with pytest.raises(DataFileError, match="KDELIB_DATA") as info:
        datasets.load_mnist("t10k")
    assert "offline" in str(info.value) and str(cache) in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())


# ------------------------------------------------------------------------------------------
# CIFAR-100 on a small archive in the canonical format


def _cifar_rows(n, first):
    """Rows of 3072 bytes, mostly constant (compressible), with a 3-byte row id in front."""
    rows = np.empty((n, 3072), dtype=np.uint8)
    ids = np.arange(first, first + n)
    rows[:] = (ids % 251)[:, None]
    rows[:, 0], rows[:, 1], rows[:, 2] = ids // 65536, (ids // 256) % 256, ids % 256
    return rows


def _pickled(obj):
    return pickle.dumps(obj, protocol=2)


def build_cifar_archive(folder, n_train=20_050, n_test=40, drop=None):
    """cifar-100-python.tar.gz with train/test/meta pickles like the canonical archive."""
    members = {
        "train": {"filenames": [], "batch_label": "training batch 1 of 1",
                  "fine_labels": [0] * n_train, "coarse_labels": [0] * n_train,
                  "data": _cifar_rows(n_train, 0)},
        "test": {"filenames": [], "batch_label": "testing batch 1 of 1",
                 "fine_labels": [0] * n_test, "coarse_labels": [0] * n_test,
                 "data": _cifar_rows(n_test, 100_000)},
        "meta": {"fine_label_names": ["apple"], "coarse_label_names": ["fruit"]},
    }
    path = folder / "cifar-100-python.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for name, content in members.items():
            if name == drop:
                continue
            payload = _pickled(content)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture(scope="module")
def cifar_archive(tmp_path_factory):
    return build_cifar_archive(tmp_path_factory.mktemp("cifar"))


def _accept(monkeypatch, path):
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setitem(datasets.CIFAR100_ARCHIVE, "md5", md5)


def test_cifar_archive_with_wrong_md5_is_refused(cifar_archive):
    with pytest.raises(DataFileError, match="md5") as info:
        datasets.cifar100_splits(data_dir=cifar_archive.parent)
    assert "eb9058c3a382ffc7106e4002c42a8d85" in str(info.value)


def test_cifar_splits_follow_the_seed_protocol(cifar_archive, monkeypatch):
    _accept(monkeypatch, cifar_archive)
    state = np.random.get_state()
    x_train, x_val, x_test = datasets.cifar100_splits(data_dir=cifar_archive.parent)
    np.testing.assert_array_equal(np.random.get_state()[1], state[1])
    rows = _cifar_rows(20_050, 0)
    np.random.RandomState(SEED).shuffle(rows)  # the protocol, on a private generator
    np.testing.assert_array_equal(x_train, rows[:10000] / 255.0)
    np.testing.assert_array_equal(x_val, rows[10000:20000] / 255.0)
    np.testing.assert_array_equal(x_test, _cifar_rows(40, 100_000) / 255.0)
    assert x_train.dtype == np.float64 and x_train.shape == (10000, 3072)


def test_cifar_archive_missing_a_member(tmp_path, monkeypatch):
    path = build_cifar_archive(tmp_path, n_train=20_000, drop="test")
    _accept(monkeypatch, path)
    with pytest.raises(DataFileError, match="cifar-100-python/test"):
        datasets.cifar100_splits(data_dir=tmp_path)


def test_cifar_truncated_archive(tmp_path, monkeypatch, cifar_archive):
    path = tmp_path / "cifar-100-python.tar.gz"
    path.write_bytes(cifar_archive.read_bytes()[:5000])
    _accept(monkeypatch, path)
    with pytest.raises(DataFileError, match="cifar-100-python"):
        datasets.cifar100_splits(data_dir=tmp_path)


def test_cifar_too_few_training_images(tmp_path, monkeypatch):
    path = build_cifar_archive(tmp_path, n_train=500)
    _accept(monkeypatch, path)
    with pytest.raises(DataFileError, match="needs 20000"):
        datasets.cifar100_splits(data_dir=tmp_path)


def test_cifar_missing_archive_names_the_url(tmp_path):
    with pytest.raises(DataFileError, match="cs.toronto.edu"):
        datasets.cifar100_splits(data_dir=tmp_path)


# ------------------------------------------------------------------------------------------
# image_grid


def test_image_grid_places_images_row_by_row():
    x = np.arange(9 * 6).reshape(9, 6)  # nine 2 x 3 images
    grid = datasets.image_grid(x, (2, 3), n=3)
    assert grid.shape == (6, 9)
    for i in range(3):
        for j in range(3):
            np.testing.assert_array_equal(grid[2 * i:2 * i + 2, 3 * j:3 * j + 3],
                                          x[3 * i + j].reshape(2, 3))


def test_image_grid_colour_planes():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, size=(4, 3 * 2 * 2))
    grid = datasets.image_grid(x, (3, 2, 2), n=2)
    assert grid.shape == (4, 4, 3)
    np.testing.assert_array_equal(grid[2:4, 0:2, :], x[2].reshape(3, 2, 2).transpose(1, 2, 0))


@pytest.mark.parametrize("x, shape, n, message", [
    (np.zeros((4, 6)), (2, 2), 2, "pixels"),
    (np.zeros((3, 6)), (2, 3), 2, "needs 4 images"),
    (np.zeros((4, 6)), (6,), 2, "shape must be"),
    (np.zeros((4, 6)), (2, 3), 0, "positive"),
])
def test_image_grid_errors(x, shape, n, message):
    with pytest.raises(ValueError, match=message):
        datasets.image_grid(x, shape, n)
