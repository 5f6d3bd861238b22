"""The GitHub Actions workflows: linted with actionlint (installed from PyPI with the pinned set), and
checked for what publishing needs (Pages permissions and concurrency, the data cache key, shells
that stop on errors, the same `.ci/run` as local CI).
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))

pytestmark = pytest.mark.site


def _actionlint():
    path = Path(sys.executable).with_name("actionlint")
    if not path.exists():
        found = shutil.which("actionlint")
        if not found:
            pytest.fail("actionlint not found: it is pinned in requirements.txt (`make venv` installs it)")
        path = Path(found)
    return str(path)


def _load(name):
    # PyYAML reads the key `on` as True (YAML 1.1); map it back.
    data = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def _steps(workflow):
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_there_are_workflows():
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "pages.yml", "linkcheck.yml"}


def test_actionlint_passes():
    result = subprocess.run([_actionlint(), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "planted, message",
    [
        ("${{ github.evnt.name }}", "evnt"),  # a misspelt context property
        ("${{ steps.no-such-step.outputs.key }}", "no-such-step"),  # an output of a missing step
    ],
)
def test_actionlint_catches_a_broken_workflow(tmp_path, planted, message):
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    broken = tmp_path / "ci.yml"
    broken.write_text(text.replace("bash .ci/run", f'echo "{planted}"\n          bash .ci/run'))
    result = subprocess.run([_actionlint(), str(broken)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_login_shells_stop_on_errors(path):
    """GitHub runs `bash -l {0}` without -e: each script must say `set -eo pipefail` first."""
    workflow = _load(path.name)
    assert workflow.get("defaults", {}).get("run", {}).get("shell") == "bash -l {0}"
    for step in _steps(workflow):
        if "run" in step:
            first = step["run"].strip().splitlines()[0]
            assert first == "set -eo pipefail", f"{path.name}: step {step.get('name')!r} starts with {first!r}"


def test_ci_runs_the_local_ci_script_and_the_floors():
    workflow = _load("ci.yml")
    assert {"pull_request", "push"} <= set(workflow["on"])
    runs = [step.get("run", "") for step in _steps(workflow)]
    assert any("bash .ci/run" in run for run in runs)
    assert any("make floors" in run for run in runs)


def test_pages_deployment():
    workflow = _load("pages.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["permissions"]["pages"] == "write"
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["concurrency"]["group"] == "pages"
    uses = [step.get("uses", "") for step in _steps(workflow)]
    upload = [step for step in _steps(workflow) if step.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/html"
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    assert workflow["jobs"]["deploy"]["environment"]["name"] == "github-pages"


@pytest.mark.parametrize("name", ["ci.yml", "pages.yml"])
def test_data_cache_is_keyed_on_the_registry(name):
    steps = _steps(_load(name))
    key_steps = [s for s in steps if "data_cache_key.py" in s.get("run", "")]
    caches = [s for s in steps if s.get("uses", "").startswith("actions/cache@")]
    assert len(key_steps) == 1 and len(caches) == 1
    assert caches[0]["with"]["key"] == "${{ steps.%s.outputs.key }}" % key_steps[0]["id"]
    assert caches[0]["with"]["path"] == "~/.cache/kdelib"  # pooch.os_cache("kdelib") on Linux


def test_linkcheck_is_weekly_and_does_not_execute():
    workflow = _load("linkcheck.yml")
    assert len(workflow["on"]["schedule"]) == 1
    cron = workflow["on"]["schedule"][0]["cron"].split()
    assert cron[2:4] == ["*", "*"] and cron[4].isdigit(), "once a week: a fixed weekday"
    assert any("make linkcheck" in s.get("run", "") for s in _steps(workflow))
    makefile = (ROOT / "Makefile").read_text()
    assert "--builder linkcheck" in makefile and "execute_notebooks" in makefile
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["sphinx"]["config"]["linkcheck_ignore"], "unstable hosts are listed explicitly"


def _key_module():
    spec = importlib.util.spec_from_file_location("data_cache_key", ROOT / ".ci" / "data_cache_key.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_cache_key_follows_the_registry_only():
    keys = _key_module()
    source = (ROOT / "kdelib" / "datasets.py").read_text()
    found = keys.registry(source)
    assert "MNIST_FILES" in found and "CIFAR100_ARCHIVE" in found
    key = keys.cache_key(source)
    # Prose and code changes keep the key; a changed checksum changes it.
    assert keys.cache_key(source + "\n\ndef helper():\n    return 1\n") == key
    some_hash = found["MNIST_FILES"]["train-images-idx3-ubyte"]["sha256"]
    assert keys.cache_key(source.replace(some_hash, "0" * 64)) != key
    with pytest.raises(SystemExit):
        keys.cache_key("X = 1\n")
