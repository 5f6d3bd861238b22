"""Shared test configuration: the book root and the data location."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def book_root():
    return ROOT


@pytest.fixture(scope="session")
def mnist_dir():
    """The MNIST folder named by KDELIB_DATA; tests that need it skip when it is absent."""
    path = os.environ.get("KDELIB_DATA")
    if not path or not Path(path).is_dir():
        pytest.skip("MNIST files not found: set KDELIB_DATA to the folder holding the four IDX .gz files")
    return Path(path)
