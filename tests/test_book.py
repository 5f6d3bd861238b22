"""The strict build fails loudly: a raising cell, a broken reference, a missing citation or a
missing glue key each make `jupyter-book build -W -n --keep-going --all` exit non-zero.

Each case builds a one-page book in a temporary folder with the project's own `_config.yml`, so
the settings under test are the ones `make book` uses.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.book

GOOD_MARKDOWN = "# Page\n\nThe value is {glue:text}`answer:.1f` {cite:p}`silverman1986`.\n"
CASES = {
    "good": ("answer = 42.0", GOOD_MARKDOWN),
    "raising_cell": ("answer = 42.0\nraise RuntimeError('planted failure in the book test')", GOOD_MARKDOWN),
    "broken_reference": ("answer = 42.0", GOOD_MARKDOWN + "\nSee {numref}`fig-that-does-not-exist`.\n"),
    "missing_citation": ("answer = 42.0", GOOD_MARKDOWN + "\nAs shown by {cite:p}`nobody1900`.\n"),
    "missing_glue_key": ("answer = 42.0", GOOD_MARKDOWN + "\nAnd {glue:text}`no_such_key:.2f`.\n"),
}


def _write_book(folder, code, markdown):
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    # The offline MathJax copy is irrelevant here; everything else is the project's configuration.
    config["sphinx"]["config"].pop("html_extra_path", None)
    config["sphinx"]["config"].pop("mathjax_path", None)
    (folder / "_config.yml").write_text(yaml.safe_dump(config))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: probe\n  - file: references\n")
    (folder / "intro.md").write_text("# Probe book\n")
    (folder / "references.md").write_text("# References\n\n```{bibliography}\n```\n")
    shutil.copy(ROOT / "references.bib", folder)
    shutil.copytree(ROOT / "_ext", folder / "_ext")
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(f"from myst_nb import glue\n{code}\nglue('answer', answer, display=False)"),
            nbformat.v4.new_markdown_cell(markdown),
        ],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(notebook, folder / "probe.ipynb")


def _strict_build(folder):
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    return subprocess.run(
        [str(jupyter_book), "build", str(folder), "-W", "-n", "--keep-going", "--all"],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_strict_build(case, tmp_path):
    _write_book(tmp_path, *CASES[case])
    result = _strict_build(tmp_path)
    log = result.stdout + result.stderr
    if case == "good":
        assert result.returncode == 0, log[-3000:]
        assert "42.0" in (tmp_path / "_build" / "html" / "probe.html").read_text()
    else:
        assert result.returncode != 0, f"the {case} page built without error:\n{log[-3000:]}"
    if case == "raising_cell":
        # The failure names the notebook and shows the failing cell's source.
        assert "probe" in log
        assert "planted failure in the book test" in log
