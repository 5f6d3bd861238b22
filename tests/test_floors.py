"""Declared versions agree everywhere: the floors file pins exactly pyproject.toml's lower bounds,
requirements.txt (the tested set) satisfies them, and environment.yml pins what requirements.txt pins.

`make floors` runs the unit tests in an environment built from requirements-floors.txt; these checks
keep that file, the declaration and the pinned sets from drifting apart.
"""

import re
try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")
LOWER_BOUND = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*>=\s*([^\s,;]+)$")


def _name(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _release(version):
    """Numeric release tuple, with trailing zeros dropped: 1.26 == 1.26.0."""
    parts = [int(p) for p in re.match(r"^\d+(\.\d+)*", version).group(0).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _pins(path):
    pins = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            pins[_name(match.group(1))] = match.group(2)
    return pins


def _declared_floors():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for requirement in project["dependencies"]:
        match = LOWER_BOUND.match(requirement.replace(" ", ""))
        assert match, f"{requirement!r}: declare each dependency with a single lower bound (name>=X)"
        floors[_name(match.group(1))] = match.group(2)
    return floors


def _environment_pins(path=ROOT / "environment.yml"):
    environment = yaml.safe_load(path.read_text())
    pins = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, dict):
            for line in entry.get("pip", []):
                match = PIN.match(line)
                if match:
                    pins[_name(match.group(1))] = match.group(2)
                else:
                    assert line == "-e .", f"environment.yml pip entry {line!r} is not pinned with =="
        elif entry not in ("pip",) and not entry.startswith("python="):
            name, sep, version = entry.partition("=")
            assert sep and version and "=" not in version, f"environment.yml entry {entry!r}: pin it as name=X.Y.Z"
            pins[_name(name)] = version
    return pins


def test_floors_file_pins_exactly_the_declared_minimums():
    floors = _declared_floors()
    pinned = _pins(ROOT / "requirements-floors.txt")
    for name, floor in floors.items():
        assert name in pinned, f"requirements-floors.txt does not pin {name}"
        assert _release(pinned[name]) == _release(floor), f"{name}: floor {floor}, floors file {pinned[name]}"


def test_floors_file_pins_test_tools_as_the_tested_set():
    """Besides the floors, the floors environment uses the test tools of requirements.txt."""
    floors = _declared_floors()
    tested = _pins(ROOT / "requirements.txt")
    for name, version in _pins(ROOT / "requirements-floors.txt").items():
        if name not in floors and name in tested:
            assert version == tested[name], f"{name}: {version} in the floors file, {tested[name]} in requirements.txt"


def test_tested_set_satisfies_the_floors():
    tested = _pins(ROOT / "requirements.txt")
    for name, floor in _declared_floors().items():
        assert name in tested, f"requirements.txt does not pin the dependency {name}"
        assert _release(tested[name]) >= _release(floor), f"{name}: requirements.txt {tested[name]} < floor {floor}"


def test_environment_pins_the_same_versions_as_requirements():
    tested = _pins(ROOT / "requirements.txt")
    environment = _environment_pins()
    for name, version in environment.items():
        assert name in tested, f"environment.yml pins {name}, which requirements.txt does not"
        assert version == tested[name], f"{name}: environment.yml {version}, requirements.txt {tested[name]}"
    # The book needs the runtime dependencies and the toolchain in both.
    missing = (set(_declared_floors()) | {"jupyter-book", "sphinx", "myst-nb", "matplotlib"}) - set(environment)
    assert not missing, f"environment.yml lacks {sorted(missing)}"


def test_a_loose_conda_pin_is_read_as_written(tmp_path):
    """`numpy=2.4` is not `numpy==2.4.6`: the comparison above would report it."""
    (tmp_path / "environment.yml").write_text("dependencies:\n  - numpy=2.4\n  - pip:\n      - sphinx==7.4.7\n")
    assert _environment_pins(tmp_path / "environment.yml") == {"numpy": "2.4", "sphinx": "7.4.7"}
    (tmp_path / "environment.yml").write_text("dependencies:\n  - numpy\n")
    with pytest.raises(AssertionError, match="pin it"):
        _environment_pins(tmp_path / "environment.yml")
