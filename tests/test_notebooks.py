"""Stored notebooks: no outputs, a hidden Colab setup cell first, and listed in the table of contents."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return {ch["file"] for part in toc["parts"] for ch in part["chapters"]}


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stripped(path):
    """nbstripout --verify exits non-zero if the notebook carries outputs, counts or random ids."""
    nbstripout = Path(sys.executable).with_name("nbstripout")
    result = subprocess.run([str(nbstripout), "--verify", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, f"{path.name} has outputs; run `make strip`.\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cell_is_the_hidden_colab_setup(path):
    first = json.loads(path.read_text())["cells"][0]
    source = "".join(first["source"])
    assert first["cell_type"] == "code"
    assert "remove-cell" in first["metadata"].get("tags", [])
    assert '"google.colab" in sys.modules' in source
    assert "pip" in source and "install" in source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_in_the_toc(path):
    assert f"notebooks/{path.stem}" in _toc_files()
