r"""Verified loaders for the image data sets of the image-KDE chapter: MNIST and CIFAR-100.

Every loader returns plain NumPy arrays with one image per row: ``(n_images, n_pixels)``, with
``n_pixels = 784`` for MNIST (28 x 28, grey) and ``3072`` for CIFAR-100 (3 x 32 x 32, the red,
green and blue planes one after the other).

Where the files come from, in this order:

1. the ``data_dir`` argument;
2. the ``KDELIB_DATA`` environment variable;
3. a per-user cache (:func:`pooch.os_cache`), filled by downloading from public mirrors.

A location given by (1) or (2) must hold the files: nothing is downloaded into it. Every file is
verified before use (MNIST: sha256 of the decompressed content; CIFAR-100: md5 of the archive),
and a download is verified before it enters the cache, so a bad or partial file is never kept.
"""

import gzip
import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ._validation import check_choice, check_positive_int

__all__ = [
    "CIFAR100_ARCHIVE",
    "DEFAULT_SEED",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "DataFileError",
    "cifar100_splits",
    "image_grid",
    "load_mnist",
    "mnist_splits",
]

#: The seed of the original experiment (a Unix time stamp from 9 November 2019).
DEFAULT_SEED = 1573368177

#: Size of each of the three splits (train, validation, test).
SPLIT_SIZE = 10_000

#: Environment variable naming a folder that holds the data files.
DATA_ENV = "KDELIB_DATA"

#: The four MNIST IDX files: decompressed size and sha256 of the decompressed content.
MNIST_FILES = {
    "train-images-idx3-ubyte": {
        "bytes": 47_040_016,
        "sha256": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    },
    "train-labels-idx1-ubyte": {
        "bytes": 60_008,
        "sha256": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    },
    "t10k-images-idx3-ubyte": {
        "bytes": 7_840_016,
        "sha256": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    },
    "t10k-labels-idx1-ubyte": {
        "bytes": 10_008,
        "sha256": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}

#: Public mirrors that serve the canonical ``<name>.gz`` files, tried in order.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: The canonical CIFAR-100 archive (python version).
CIFAR100_ARCHIVE = {
    "filename": "cifar-100-python.tar.gz",
    "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "bytes": 169_001_437,
    "md5": "eb9058c3a382ffc7106e4002c42a8d85",
}

_IDX_MAGIC_UBYTE = 0x08  # IDX type code for unsigned bytes
_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20


class DataFileError(OSError, ValueError):
    """A data file is missing, unreadable, truncated or not the expected file.

    It is both an ``OSError`` and a ``ValueError``, so either ``except`` clause catches it.
    The message names the file and says how to fix it.

    Examples
    --------
    >>> from kdelib.datasets import DataFileError
    >>> issubclass(DataFileError, OSError) and issubclass(DataFileError, ValueError)
    True
    """


# ---------------------------------------------------------------------------------------------
# Locating files


def _explicit_dir(data_dir):
    """Return the folder named by ``data_dir`` or ``KDELIB_DATA``, or None for the cache."""
    if data_dir is not None:
        return Path(data_dir).expanduser(), "the data_dir argument"
    env = os.environ.get(DATA_ENV, "").strip()
    if env:
        return Path(env).expanduser(), f"the {DATA_ENV} environment variable"
    return None, None


def _cache_dir(subfolder):
    """Folder of the per-user download cache for one data set."""
    import pooch  # imported here: the loaders are the only users

    return Path(pooch.os_cache("kdelib")) / subfolder


def _missing_file_error(name, folder, source, hint):
    return DataFileError(
        f"{name} was not found in {folder} (given by {source}). {hint} "
        f"Alternatively pass no data_dir and leave {DATA_ENV} unset: the files are then "
        "downloaded into a per-user cache."
    )


def _locate_mnist_file(name, data_dir):
    """Return the path of ``name`` (``.gz`` or plain), downloading into the cache if allowed."""
    folder, source = _explicit_dir(data_dir)
    if folder is not None:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                return candidate
        raise _missing_file_error(
            f"{name}.gz", folder, source,
            f"Put the four MNIST files ({', '.join(f + '.gz' for f in MNIST_FILES)}) there.",
        )
    return _download_mnist_file(name)


def _download_mnist_file(name):
    """Fetch ``name.gz`` into the cache, trying each mirror; verify before it is kept."""
    import pooch
    import requests

    cache = _cache_dir("mnist")
    target = cache / f"{name}.gz"
    if target.is_file():
        return target
    expected = MNIST_FILES[name]
    failures = []
    for mirror in MNIST_MIRRORS:
        try:
            # pooch streams into a temporary file in the cache folder and moves it into place
            # only when the downloader returns; the verifying downloader raises first on a
            # bad file, and pooch then deletes the temporary file.
            pooch.retrieve(
                url=mirror + f"{name}.gz",
                known_hash=None,
                fname=f"{name}.gz",
                path=cache,
                downloader=_VerifyingDownloader(name, expected),
                progressbar=False,
            )
            return target
        except (requests.exceptions.RequestException, OSError, ValueError) as exc:
            failures.append(f"{mirror}: {exc}")
    raise DataFileError(
        f"Could not download {name}.gz from any mirror ({'; '.join(failures)}). "
        f"If this machine is offline, copy the four MNIST .gz files into a folder and pass it "
        f"as data_dir or set {DATA_ENV}=/path/to/folder (or place them in {cache})."
    )


class _VerifyingDownloader:
    """pooch downloader that checks the decompressed sha256 before pooch keeps the file."""

    def __init__(self, name, expected):
        self.name = name
        self.expected = expected

    def __call__(self, url, output_file, pooch_obj):
        import pooch

        pooch.HTTPDownloader(progressbar=False)(url, output_file, pooch_obj)
        _read_verified_gz(Path(output_file), self.name, self.expected, downloaded_from=url)


# ---------------------------------------------------------------------------------------------
# Reading and verifying


def _read_verified_gz(path, name, expected, downloaded_from=None):
    """Return the decompressed bytes of ``path`` after checking their size and sha256."""
    where = f"downloaded from {downloaded_from}" if downloaded_from else f"at {path}"
    fix = (
        "The download was discarded; try again later or another mirror."
        if downloaded_from
        else f"Delete {path} and replace it with a fresh copy of {name}.gz "
        "(or let kdelib download it into its cache)."
    )
    digest = hashlib.sha256()
    buffer = io.BytesIO()
    try:
        # By content, not by name: pooch's temporary files have no suffix, and a server that
        # sends Content-Encoding: gzip makes the download arrive decompressed.
        with open(path, "rb") as probe:
            compressed = probe.read(2) == _GZIP_MAGIC
        with (gzip.open if compressed else open)(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                buffer.write(chunk)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFileError(f"{name} {where} is corrupt or truncated ({exc}). {fix}") from exc
    content = buffer.getvalue()
    if len(content) != expected["bytes"] or digest.hexdigest() != expected["sha256"]:
        raise DataFileError(
            f"{name} {where} is not the expected file: {len(content)} bytes with sha256 "
            f"{digest.hexdigest()}, expected {expected['bytes']} bytes with sha256 "
            f"{expected['sha256']}. {fix}"
        )
    return content


def _parse_idx(content, name):
    """Parse IDX bytes (unsigned-byte type) into an array of the shape in its header."""
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] != _IDX_MAGIC_UBYTE:
        raise DataFileError(f"{name} does not start with an unsigned-byte IDX header.")
    ndim = content[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(content) != header + int(np.prod(shape)):
        raise DataFileError(
            f"{name}: header shape {shape} does not match its {len(content)} bytes."
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def load_mnist(kind="train", data_dir=None):
    """Return the verified MNIST images and labels of one of the two canonical files.

    Parameters
    ----------
    kind : {"train", "t10k"}, default="train"
        ``"train"`` gives the 60,000 training images, ``"t10k"`` the 10,000 test images.
    data_dir : str or path-like, optional
        Folder holding the IDX files (``.gz`` or decompressed). Defaults to ``KDELIB_DATA``,
        then the download cache.

    Returns
    -------
    images : ndarray of uint8, shape (n, 784)
        Read-only pixel intensities 0..255, one image per row.
    labels : ndarray of uint8, shape (n,)
        Read-only digit labels 0..9.

    Raises
    ------
    DataFileError
        (an ``OSError`` and a ``ValueError``) if a file is missing, corrupt, truncated or has
        the wrong content; offline without the files, it says where to put them.

    Examples
    --------
    >>> from kdelib.datasets import load_mnist
    >>> images, labels = load_mnist("t10k")  # doctest: +SKIP
    >>> images.shape, labels.shape  # doctest: +SKIP
    ((10000, 784), (10000,))
    """
    key = check_choice(kind, ("train", "t10k"), "kind")
    arrays = []
    for part in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        name = f"{key}-{part}"
        path = _locate_mnist_file(name, data_dir)
        arrays.append(_parse_idx(_read_verified_gz(path, name, MNIST_FILES[name]), name))
    images, labels = arrays
    return images.reshape(images.shape[0], -1), labels


def _seed_shuffle_order(n_rows, seed):
    """Row order of ``np.random.seed(seed); np.random.shuffle(rows)``.

    ``np.random.seed`` re-seeds the legacy global ``RandomState``; a private
    ``RandomState(seed)`` draws the identical MT19937 stream, and shuffling an index vector
    makes the same swaps as shuffling the rows themselves. The caller's global generator is
    therefore never touched.
    """
    order = np.arange(n_rows)
    np.random.RandomState(seed).shuffle(order)
    return order


def _seed_protocol_splits(train_rows, test_rows, seed, dtype, scale):
    """Shuffle ``train_rows``; return its first two blocks of SPLIT_SIZE rows and the test set."""
    needed = 2 * SPLIT_SIZE
    if train_rows.shape[0] < needed:
        raise DataFileError(
            f"the training file has {train_rows.shape[0]} images; the protocol needs {needed}."
        )
    order = _seed_shuffle_order(train_rows.shape[0], seed)
    x_train = train_rows[order[:SPLIT_SIZE]].astype(dtype) / dtype(scale)
    x_val = train_rows[order[SPLIT_SIZE:needed]].astype(dtype) / dtype(scale)
    x_test = test_rows.astype(dtype) / dtype(scale)
    return x_train, x_val, x_test


def mnist_splits(seed=DEFAULT_SEED, data_dir=None):
    r"""Return ``(x_train, x_val, x_test)``: the MNIST splits of the image-KDE experiment.

    The 50,000-image training split of the classic ``mnist.pkl.gz`` (rows 0..49999 of
    ``train-images-idx3-ubyte``) is shuffled by the legacy protocol
    ``np.random.seed(seed); np.random.shuffle(rows)``; ``x_train`` is rows 0..9999 of the
    result, ``x_val`` rows 10000..19999, and ``x_test`` is the 10,000 ``t10k`` images.

    Parameters
    ----------
    seed : int, default=1573368177
        Seed of the legacy ``RandomState`` shuffle.
    data_dir : str or path-like, optional
        Folder holding the MNIST files; see :func:`load_mnist`.

    Returns
    -------
    x_train, x_val, x_test : ndarray of float32, shape (10000, 784)
        Pixel values ``uint8 / 256`` (exact in float32; the largest is 0.99609375).

    Raises
    ------
    DataFileError
        As :func:`load_mnist`.

    Notes
    -----
    .. math:: x = k / 256, \qquad k \in \{0, 1, \dots, 255\}

    The shuffle uses a private ``np.random.RandomState(seed)``, which yields exactly the
    permutation of the global protocol; the caller's global random state is left as it was.

    Examples
    --------
    >>> from kdelib.datasets import mnist_splits
    >>> x_train, x_val, x_test = mnist_splits()  # doctest: +SKIP
    >>> x_train.shape, x_train.dtype  # doctest: +SKIP
    ((10000, 784), dtype('float32'))
    """
    train_images, _ = load_mnist("train", data_dir)
    test_images, _ = load_mnist("t10k", data_dir)
    classic_train = train_images[:50_000]
    return _seed_protocol_splits(classic_train, test_images, seed, np.float32, 256)


# ---------------------------------------------------------------------------------------------
# CIFAR-100


def _file_md5(path):
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _locate_cifar100_archive(data_dir):
    name = CIFAR100_ARCHIVE["filename"]
    folder, source = _explicit_dir(data_dir)
    if folder is not None:
        path = folder / name
        if not path.is_file():
            raise _missing_file_error(
                name, folder, source,
                f"Download it from {CIFAR100_ARCHIVE['url']} and put it there.",
            )
        return path
    import pooch
    import requests

    cache = _cache_dir("cifar100")
    try:
        # pooch checks the md5 on a temporary file and only then moves it into the cache.
        return Path(pooch.retrieve(
            url=CIFAR100_ARCHIVE["url"],
            known_hash=f"md5:{CIFAR100_ARCHIVE['md5']}",
            fname=name,
            path=cache,
            progressbar=False,
        ))
    except (requests.exceptions.RequestException, OSError, ValueError) as exc:
        raise DataFileError(
            f"Could not download {name} ({exc}). If this machine is offline, download it "
            f"elsewhere from {CIFAR100_ARCHIVE['url']} and pass its folder as data_dir, set "
            f"{DATA_ENV}=/path/to/folder, or place it in {cache}."
        ) from exc


def _verify_cifar100_archive(path):
    md5 = _file_md5(path)
    if md5 != CIFAR100_ARCHIVE["md5"]:
        raise DataFileError(
            f"{path} has md5 {md5}, expected {CIFAR100_ARCHIVE['md5']} "
            f"({CIFAR100_ARCHIVE['bytes']:,} bytes): it is not the canonical archive, or it is "
            f"truncated. Delete it and download a fresh copy from {CIFAR100_ARCHIVE['url']}."
        )


def _read_cifar100_part(archive, member, path):
    """Return the ``data`` rows (uint8, n x 3072) of one pickle inside the archive."""
    try:
        stream = archive.extractfile(f"cifar-100-python/{member}")
        payload = pickle.load(stream, encoding="latin1")
    except (KeyError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise DataFileError(
            f"{path}: cannot read cifar-100-python/{member} ({exc}). Replace the archive "
            f"with a fresh copy from {CIFAR100_ARCHIVE['url']}."
        ) from exc
    data = np.asarray(payload.get("data") if isinstance(payload, dict) else None)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataFileError(
            f"{path}: cifar-100-python/{member} has no uint8 'data' array of rows of 3072 "
            f"values (got dtype {data.dtype}, shape {data.shape})."
        )
    return data


def cifar100_splits(seed=DEFAULT_SEED, data_dir=None):
    r"""Return ``(x_train, x_val, x_test)``: the CIFAR-100 splits of the image-KDE experiment.

    The 50,000 training images (``cifar-100-python/train``) are shuffled by the legacy protocol
    ``np.random.seed(seed); np.random.shuffle(rows)``; ``x_train`` is rows 0..9999 of the
    result, ``x_val`` rows 10000..19999 and ``x_test`` the 10,000 images of
    ``cifar-100-python/test``.

    Parameters
    ----------
    seed : int, default=1573368177
        Seed of the legacy ``RandomState`` shuffle.
    data_dir : str or path-like, optional
        Folder holding ``cifar-100-python.tar.gz``. Defaults to ``KDELIB_DATA``, then the
        download cache.

    Returns
    -------
    x_train, x_val, x_test : ndarray of float64, shape (n, 3072)
        Pixel values ``uint8 / 255``; each row is the red, green and blue 32 x 32 planes.

    Raises
    ------
    DataFileError
        If the archive is missing, is not the canonical file (md5), or lacks the pickles.

    Notes
    -----
    .. math:: x = k / 255, \qquad k \in \{0, 1, \dots, 255\}

    Verification: the archive must have the canonical md5 (``CIFAR100_ARCHIVE["md5"]``)
    before it is opened; then each pickle must hold a uint8 ``data`` array of 3072 columns.
    A download is checked by pooch on a temporary file and enters the cache only if its md5
    matches.

    Examples
    --------
    >>> from kdelib.datasets import cifar100_splits
    >>> x_train, x_val, x_test = cifar100_splits()  # doctest: +SKIP
    >>> x_train.shape  # doctest: +SKIP
    (10000, 3072)
    """
    path = _locate_cifar100_archive(data_dir)
    _verify_cifar100_archive(path)
    try:
        with tarfile.open(path, "r:gz") as archive:
            train_rows = _read_cifar100_part(archive, "train", path)
            test_rows = _read_cifar100_part(archive, "test", path)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile) as exc:
        raise DataFileError(f"{path} is not a readable tar.gz archive ({exc}).") from exc
    return _seed_protocol_splits(train_rows, test_rows, seed, np.float64, 255)


# ---------------------------------------------------------------------------------------------
# Visual check


def image_grid(x, shape, n=20):
    """Tile the first ``n * n`` images of ``x`` into one ``n x n`` mosaic for display.

    Parameters
    ----------
    x : array-like, shape (n_images, n_pixels)
        One flattened image per row.
    shape : tuple of int
        ``(height, width)`` for grey images or ``(channels, height, width)`` for colour images
        stored plane by plane (CIFAR: ``(3, 32, 32)``).
    n : int, default=20
        Images per side of the mosaic.

    Returns
    -------
    ndarray, shape (n * height, n * width) or (n * height, n * width, channels)
        Ready for ``matplotlib.pyplot.imshow``; image ``i * n + j`` sits at grid cell
        ``(i, j)``.

    Examples
    --------
    >>> import numpy as np
    >>> from kdelib.datasets import image_grid
    >>> image_grid(np.zeros((4, 6)), (2, 3), n=2).shape
    (4, 6)
    """
    x = np.asarray(x)
    shape = tuple(int(s) for s in shape)
    n = check_positive_int(n, "n (images per side)")
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(
            f"shape must be (height, width) or (channels, height, width); got {shape}."
        )
    if x.ndim != 2 or x.shape[1] != int(np.prod(shape)):
        raise ValueError(
            f"x must have one flattened image of {int(np.prod(shape))} pixels per row for "
            f"shape {shape}; got an array of shape {x.shape}."
        )
    if x.shape[0] < n * n:
        raise ValueError(f"a {n} x {n} grid needs {n * n} images; x has {x.shape[0]}. Lower n.")
    images = x[: n * n].reshape((n, n, *shape))
    if len(shape) == 3:  # (rows, cols, C, H, W) -> (rows, H, cols, W, C)
        return images.transpose(0, 3, 1, 4, 2).reshape(n * shape[1], n * shape[2], shape[0])
    return images.transpose(0, 2, 1, 3).reshape(n * shape[0], n * shape[1])
