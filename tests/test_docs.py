"""Every public function, class and method of kdelib documents itself with a runnable example.

The examples themselves run as doctests (``--doctest-modules`` over ``kdelib`` in the test run);
this test makes sure none is missing.
"""

import importlib
import inspect

import pytest

import kdelib


def public_objects():
    for module_name in kdelib._SUBMODULES:
        module = importlib.import_module(f"kdelib.{module_name}")
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue  # constants and registries are documented in their module
            yield f"{module_name}.{name}", obj
            if inspect.isclass(obj):
                for method_name, method in inspect.getmembers(obj, inspect.isfunction):
                    if not method_name.startswith("_") and method.__module__.startswith("kdelib"):
                        yield f"{module_name}.{name}.{method_name}", method


PUBLIC = dict(public_objects())


def test_the_public_api_is_found():
    assert "kde.GaussianKDE.logcdf" in PUBLIC and "normal_mixture.mixture_ppf" in PUBLIC


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_has_a_runnable_example(name):
    doc = inspect.getdoc(PUBLIC[name]) or ""
    assert "Examples\n--------" in doc and ">>> " in doc, f"{name} has no Examples section"
