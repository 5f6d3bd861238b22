"""Where the MNIST files are, and how tests skip without them (one place for every test file)."""

import os
from pathlib import Path

import pytest

from kdelib.datasets import MNIST_FILES

# Read once at import: some tests unset KDELIB_DATA to check the error messages.
MNIST_FOLDER = os.environ.get("KDELIB_DATA", "")


def mnist_dir():
    """The folder holding the four MNIST IDX files; the calling test skips when it is absent."""
    folder = Path(MNIST_FOLDER) if MNIST_FOLDER else None
    if folder is None or not all((folder / f"{name}.gz").is_file() for name in MNIST_FILES):
        pytest.skip("MNIST files not found: set KDELIB_DATA to the folder holding the four IDX "
                    ".gz files (e.g. ../shared/data/mnist)")
    return folder
