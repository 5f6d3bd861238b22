"""Shared fixtures."""

import pytest

import hypothesis_profiles  # noqa: F401  (loads the hypothesis profile before any test module)
import mnist_paths


@pytest.fixture(scope="session", name="mnist_dir")
def mnist_dir_fixture():
    """The MNIST folder (skips the test without the files); see :mod:`mnist_paths`."""
    return mnist_paths.mnist_dir()
