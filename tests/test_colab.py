"""The hidden Colab setup cell of every notebook: it names the repository configured in
_config.yml (the one address the launch buttons use too), and, run as Colab would run it, it clones
the repository, installs kdelib into a fresh environment and makes it importable.

The smoke test simulates Colab: `google.colab` is put into `sys.modules`, the clone address is
replaced by a local clone of this repository (its committed state), `/content` by a temporary
folder, and the cell runs under the python of a new virtual environment that has never seen the
project (built once per test session; pip installs from PyPI or its cache).
"""

import json
import re
import subprocess
import textwrap
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CLONE_URL = re.compile(r"https://github\.com/[^\s\"']+")


def _repository_url():
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")


def _setup_cell(path):
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_clones_the_configured_repository(path):
    urls = CLONE_URL.findall(_setup_cell(path))
    assert urls, f"{path.name}: the setup cell clones no https://github.com/ repository"
    for url in urls:
        url = url.rstrip("/").removesuffix(".git")
        assert url == _repository_url(), f"{path.name} clones {url}; _config.yml repository.url is {_repository_url()}"


def test_configured_repository_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", _repository_url())


# ---------------------------------------------------------------------------------------------
# The smoke test

RUNNER = textwrap.dedent(
    """
    import sys, types
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    sys.modules["google"], sys.modules["google.colab"] = google, google.colab
    exec(compile(open(sys.argv[1]).read(), "setup-cell", "exec"))
    import importlib.util
    import kdelib, kdelib.kde
    import numpy as np
    style = importlib.util.find_spec("_style")  # found, not run: Colab ships matplotlib, this venv need not
    kde = kdelib.GaussianKDE(bandwidth=0.5).fit(np.array([0.0, 1.0]))
    import sysconfig
    print("SITE", sysconfig.get_paths()["purelib"])
    print("VERSION", kdelib.__version__)
    print("STYLE", style.origin)
    print("CDF0", float(kde.cdf(0.5)))
    """
)


@pytest.fixture(scope="session")
def colab_machine(tmp_path_factory):
    """A local clone of the repository and a fresh virtual environment (no kdelib in it)."""
    base = tmp_path_factory.mktemp("colab")
    clone = base / "origin"
    subprocess.run(["git", "clone", "--quiet", "--no-local", str(ROOT), str(clone)], check=True, timeout=300)
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import kdelib"], capture_output=True, text=True, cwd=base)
    assert probe.returncode != 0, "the fresh environment must not already see kdelib"
    return clone, python


def _distinct_setup_cells():
    """Each distinct setup cell once, with the notebooks that use it (they are usually identical)."""
    cells = {}
    for path in NOTEBOOKS:
        cells.setdefault(_setup_cell(path), []).append(path.stem)
    return [pytest.param(cell, id="+".join(names)) for cell, names in cells.items()]


@pytest.mark.site
@pytest.mark.parametrize("cell", _distinct_setup_cells())
def test_setup_cell_installs_kdelib_as_in_colab(cell, colab_machine, tmp_path):
    clone, python = colab_machine
    assert _repository_url() in cell and '"/content/kdelib"' in cell
    content = tmp_path / "content"
    content.mkdir()
    cell = cell.replace(_repository_url(), str(clone)).replace('"/content/kdelib"', repr(str(content / "kdelib")))
    (tmp_path / "cell.py").write_text(cell)
    (tmp_path / "runner.py").write_text(RUNNER)
    workdir = tmp_path / "work"  # not the repository: nothing is importable from the checkout
    workdir.mkdir()
    result = subprocess.run(
        [str(python), str(tmp_path / "runner.py"), str(tmp_path / "cell.py")],
        capture_output=True, text=True, cwd=workdir, timeout=900,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line[:4] in ("SITE", "VERS", "STYL", "CDF0"))
    # kdelib was installed into the fresh environment (a real install, not an editable path) ...
    site = Path(lines["SITE"])
    assert site.is_relative_to(python.parents[1]), site
    assert (site / "kdelib" / "__init__.py").exists()
    assert [d.name for d in site.glob("kdelib-*.dist-info")] == [f"kdelib-{lines['VERSION']}.dist-info"]
    assert Path(lines["STYLE"]).parent == content / "kdelib"
    assert (content / "kdelib" / ".git").is_dir()
    assert abs(float(lines["CDF0"]) - 0.5) < 1e-12  # symmetric two-point KDE: F(midpoint) = 1/2
