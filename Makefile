# kdelib: two commands matter.
#   make book   build the executed, strict HTML book into _build/html
#   make test   unit tests, doctests, notebook checks, the strict build and a headless-browser test
#   make stress every hypothesis property at 10,000 examples (slow; not part of make test)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
JB := $(VENV)/bin/jupyter-book
MATHJAX_VERSION := 3.2.2
MATHJAX_JS := _mathjax/mathjax/es5/tex-mml-chtml.js

.PHONY: book test venv mathjax unit stress strip serve clean

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

# A clean _build plus --all and forced execution: every notebook runs against the current kdelib,
# and every warning (broken reference, missing citation or glue key, failing cell) fails the build.
book: venv mathjax
	rm -rf _build
	@start=$$(date +%s); \
	$(JB) build . -W -n --keep-going --all; \
	echo "Book built in $$(( $$(date +%s) - start )) s: open $(CURDIR)/_build/html/index.html (or: make serve)"

test: book
	$(PY) -m pytest

unit: venv
	$(PY) -m pytest -m "not book and not browser"

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
	rm -rf _build _mathjax
