# kdelib: two commands matter.
#   make book   build the executed, strict HTML book into _build/html
#   make test   unit tests, doctests, notebook checks, workflow lint, Colab smoke test, the strict
#               build (API reference included) and a headless-browser test of the site (axe, alt text)
# Also: make stress (every hypothesis property at 10,000 examples), make floors (unit tests on the
# declared minimum versions), make linkcheck (external links).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
MATHJAX_VERSION := 3.2.2
MATHJAX_JS := _mathjax/mathjax/es5/tex-mml-chtml.js
AXE_VERSION := 4.14.1
AXE_JS := _axe/axe-core/axe.min.js

.PHONY: book test venv mathjax axe unit stress floors linkcheck strip serve clean

venv: $(VENV)/.installed

# Re-install whenever the pins or the package metadata change.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e .
	touch $@

# MathJax is served from the site itself, so pages render math offline.
mathjax: $(MATHJAX_JS)
$(MATHJAX_JS):
	rm -rf _mathjax.tmp && mkdir -p _mathjax.tmp
	cd _mathjax.tmp && npm pack --silent mathjax@$(MATHJAX_VERSION) >/dev/null && tar xzf mathjax-$(MATHJAX_VERSION).tgz
	mkdir -p _mathjax && rm -rf _mathjax/mathjax && mv _mathjax.tmp/package _mathjax/mathjax && rm -rf _mathjax.tmp

# axe-core, the accessibility engine of the browser test, loaded into each page from this local copy.
axe: $(AXE_JS)
$(AXE_JS):
	rm -rf _axe.tmp && mkdir -p _axe.tmp
	cd _axe.tmp && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && tar xzf axe-core-$(AXE_VERSION).tgz
	mkdir -p _axe && rm -rf _axe/axe-core && mv _axe.tmp/package _axe/axe-core && rm -rf _axe.tmp

# A clean _build plus --all and forced execution: every notebook runs against the current kdelib,
# and every warning (broken reference, missing citation or glue key, failing cell) fails the build.
book: venv mathjax
	rm -rf _build
	@start=$$(date +%s); \
	$(JB) build . -W -n --keep-going --all; \
	echo "Book built in $$(( $$(date +%s) - start )) s: open $(CURDIR)/_build/html/index.html (or: make serve)"

test: book axe
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest -m "not book and not browser and not site"

# A second environment with exactly the minimum versions that pyproject.toml declares
# (requirements-floors.txt), running the unit tests.
FLOORS_VENV := .venv-floors
floors: $(FLOORS_VENV)/.installed
	@start=$$(date +%s); \
	$(FLOORS_VENV)/bin/python -m pytest -m "not book and not browser and not site" -p no:cacheprovider; \
	echo "Floors: unit tests passed in $$(( $$(date +%s) - start )) s"

$(FLOORS_VENV)/.installed: requirements-floors.txt pyproject.toml
	rm -rf $(FLOORS_VENV)
	$(PYTHON) -m venv $(FLOORS_VENV)
	$(FLOORS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS_VENV)/bin/python -m pip install --quiet -r requirements-floors.txt -e .
	$(FLOORS_VENV)/bin/python -m pip check
	$(FLOORS_VENV)/bin/python -c "import numpy, scipy, sklearn; print('floors:', 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'scikit-learn', sklearn.__version__)"
	touch $@

# External links of every page, with notebook execution off (minutes, not a full build). Hosts that
# refuse automated checks are listed in _config.yml (linkcheck_ignore).
linkcheck: venv
	rm -rf _build/linkcheck && mkdir -p _build/linkcheck
	$(PY) -c "$$LINKCHECK_CONFIG" > _build/linkcheck_config.yml
	$(JB) build . --builder linkcheck --config _build/linkcheck_config.yml

# The book's configuration with execution off; local extension paths made absolute, since Jupyter
# Book resolves them against the folder of the configuration file.
define LINKCHECK_CONFIG
import sys, yaml
from pathlib import Path
config = yaml.safe_load(open("_config.yml"))
config["execute"]["execute_notebooks"] = "off"
extensions = config["sphinx"].get("local_extensions") or {}
config["sphinx"]["local_extensions"] = {name: str(Path(path).resolve()) for name, path in extensions.items()}
yaml.safe_dump(config, sys.stdout)
endef
export LINKCHECK_CONFIG

# The thorough profile: every property of every estimator and Gaussianizer at 10,000 examples,
# including extreme but finite data (1e-300 to 1e300, heavy ties, tiny spread).
stress: venv
	@start=$$(date +%s); \
	KDELIB_HYPOTHESIS=stress $(PY) -m pytest tests -m hypothesis -q; \
	echo "Stress run took $$(( $$(date +%s) - start )) s"

# Remove outputs and execution counts from every notebook before committing.
strip: venv
	$(VENV)/bin/nbstripout notebooks/*.ipynb

serve:
	$(PY) -m http.server --directory _build/html 8000 --bind 127.0.0.1

clean:
	rm -rf _build _mathjax _axe .venv-floors
