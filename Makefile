# Two commands do everything on a fresh machine:  make lab  (learn)  and  make test  (verify).
PYTHON ?= python3
# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root,)
NBVAL = --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: install up down lab test lint bench

install:  ## the labkit package and its Python dependencies (editable)
	$(PYTHON) -m pip install --quiet 'setuptools>=68' wheel
	$(PYTHON) -m pip install --quiet --no-build-isolation -e '.[test]'

up: install  ## start (or reuse) the lab cluster; the first run builds its binaries (about 10 min on 2 cores)
	labkit up

down:
	labkit down

lab: up  ## the lab cluster plus JupyterLab on 127.0.0.1
	jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(ALLOW_ROOT)

lint:
	ruff check labkit tests benchmarks

test: install  ## unit + e2e + every notebook under nbval (strict), then every notebook again (run twice in a row).
# LABKIT_IN_TEST=1: notebooks shorten their waits and apply exercise solutions themselves (as stored).
	labkit up --backend kwok
	$(MAKE) lint
	LABKIT_IN_TEST=1 $(PYTHON) -m pytest tests notebooks $(NBVAL)
	LABKIT_IN_TEST=1 $(PYTHON) -m pytest notebooks $(NBVAL)

bench: install  ## prints build, start-up, memory and rollout figures (see README)
	$(PYTHON) benchmarks/lab_benchmark.py
