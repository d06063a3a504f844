# Two commands do everything on a fresh machine:  make lab  (learn)  and  make test  (verify).
# Python: PYTHON=... when given; else the active virtualenv's or conda env's python3; else a venv of our own (.venv),
# because Debian's, Ubuntu's and Homebrew's own Pythons refuse pip installs (PEP 668).
VENV_PYTHON = .venv/bin/python
ifeq ($(origin PYTHON),undefined)
PYTHON := $(if $(VIRTUAL_ENV)$(CONDA_PREFIX),python3,$(VENV_PYTHON))
endif
# That Python's scripts first on PATH: `jupyter lab` runs the jupyter-lab it finds there, and kernels, terminals and
# tests then use this environment's tools rather than another install's.
PY_SCRIPTS = $(shell $(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
SCRIPTS = $(if $(filter $(VENV_PYTHON),$(PYTHON)),$(CURDIR)/.venv/bin,$(PY_SCRIPTS))
RUN = PATH="$(SCRIPTS):$$PATH"
# JupyterLab refuses to run as root unless told; containers and CI machines often are root.
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root,)
LINT = $(PYTHON) -m ruff check labkit tests benchmarks
NBVAL = --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

# The learner's language, read as labkit.i18n reads it: LABKIT_LANG, else the locale (LC_ALL, LC_MESSAGES, LANG: the
# first one set). Chinese (zh, zh_CN, zh-CN, zh_CN.UTF-8, ...) makes `make lab` add JupyterLab's zh-CN language pack
# and open JupyterLab in Chinese; labkit's own messages follow the same variables, which the kernels inherit.
LAB_LOCALE = $(or $(LABKIT_LANG),$(LC_ALL),$(LC_MESSAGES),$(LANG))
LAB_CHINESE = $(filter zh%,$(LAB_LOCALE))
# JupyterLab 4 reads default settings from labconfig/default_setting_overrides.json in each Jupyter config directory
# (jupyterlab_server's settings_utils); JUPYTER_CONFIG_PATH adds the lab's own, under build/. A default, not a user
# setting: a learner who picks another language in Settings > Language keeps it.
LAB_ZH_CONFIG = $(CURDIR)/build/lab-zh_CN
LAB_ZH_SETTINGS = {"@jupyterlab/translation-extension:plugin": {"locale": "zh_CN"}}
LAB_CONFIG_PATH = $(if $(LAB_CHINESE),$(LAB_ZH_CONFIG)$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH},$$JUPYTER_CONFIG_PATH)

.PHONY: install up down lab lab-language test test-browser test-unit lint bench

$(VENV_PYTHON):
	python3 -m venv .venv

# pip's build isolation gives each sdist among the dependencies (gpustat) the build tools it asks for
# (setuptools_scm), fetched from PyPI, rather than whatever this Python happens to have.
install: $(filter $(VENV_PYTHON),$(PYTHON))  ## the labkit package and its Python dependencies (editable)
	$(PYTHON) -m pip install --quiet -e '.[test]' -c constraints.txt

up: install  ## start (or reuse) the lab cluster; the first run builds its binaries (about 10 min on 2 cores)
	$(RUN) $(PYTHON) -m labkit up

down:
	$(RUN) $(PYTHON) -m labkit down

# With a Chinese LABKIT_LANG or locale only; otherwise nothing to do.
lab-language: install  ## JupyterLab's Chinese UI when the learner's language is Chinese (see LAB_LOCALE above)
	$(if $(LAB_CHINESE),$(PYTHON) -m pip install --quiet jupyterlab-language-pack-zh-CN -c constraints.txt)
	$(if $(LAB_CHINESE),mkdir -p $(LAB_ZH_CONFIG)/labconfig)
	$(if $(LAB_CHINESE),echo '$(LAB_ZH_SETTINGS)' > $(LAB_ZH_CONFIG)/labconfig/default_setting_overrides.json)

# JupyterLab's terminals inherit its environment: `labkit env` gives them the lab's KUBECONFIG and kubectl.
lab: up lab-language  ## the lab cluster plus JupyterLab on 127.0.0.1 (LAB_ARGS: more jupyter lab options, e.g. --port=8899)
	eval "$$($(RUN) $(PYTHON) -m labkit env)" && JUPYTER_CONFIG_PATH="$(LAB_CONFIG_PATH)" $(RUN) $(PYTHON) -m jupyter lab --ip=127.0.0.1 --no-browser --notebook-dir=notebooks $(ALLOW_ROOT) $(LAB_ARGS)

lint:
	$(LINT)

test-unit: install  ## unit tests only: no cluster needed (quick checks while editing)
	$(RUN) $(PYTHON) -m pytest tests/unit -p no:cacheprovider

# The two passes run at once, so that their waits (rollouts, scrapes, alerts' `for:`) overlap. The strict pass runs
# the English notebooks first, on the lab `labkit up` has just started, in a shuffled order (the seed is printed), then
# the unit, e2e and conformance tests; the browser pass runs the Chinese edition (notebooks/zh-CN) on a lab of its own
# (build/browser-lab), shuffled too (its seed is in the test ids). So each edition is executed on every run, and no
# notebook may need another to have run first.
BROWSER_LAB = $(CURDIR)/build/browser-lab

test: install  ## lint, unit + e2e + every notebook under nbval (strict) and, beside it, every notebook in a browser
	$(LINT)
	$(RUN) $(PYTHON) -m labkit up --backend kwok
	mkdir -p build && rm -f build/browser-pass.log build/browser-pass.rc
	port=$$($(PYTHON) -c 'from labkit.cluster.ports import free_port; print(free_port())'); \
	( LABKIT_STATE_DIR=$(BROWSER_LAB) LABKIT_API_PORT=$$port LABKIT_NOTEBOOK_ORDER=shuffled LABKIT_BROWSER_EDITION=zh-CN \
	    $(MAKE) --no-print-directory test-browser PYTHON="$(PYTHON)" > build/browser-pass.log 2>&1; \
	  echo $$? > build/browser-pass.rc; \
	  LABKIT_STATE_DIR=$(BROWSER_LAB) $(RUN) $(PYTHON) -m labkit down > /dev/null 2>&1 ) & \
	LABKIT_IN_TEST=1 LABKIT_NOTEBOOK_ORDER=shuffled $(RUN) $(PYTHON) -m pytest tests notebooks $(NBVAL) \
	    --ignore=tests/browser --ignore=notebooks/zh-CN --durations=15; \
	strict=$$?; wait; \
	echo "== the browser pass, run beside the strict pass (build/browser-pass.log) =="; cat build/browser-pass.log; \
	[ $$strict -eq 0 ] && [ "$$(cat build/browser-pass.rc)" = 0 ]

# As a learner runs them (no LABKIT_IN_TEST): JupyterLab served by `make lab`, each notebook opened in headless
# Chromium and run with Run > Run All Cells; any error output fails. Screenshots: build/browser/.
test-browser: install  ## every notebook in a real browser as a learner runs it (needs chromium and chromium-driver)
	env -u LABKIT_IN_TEST $(RUN) $(PYTHON) -m pytest tests/browser -p no:cacheprovider

bench: install  ## prints build, start-up, memory and rollout figures (see docs/benchmarks.md)
	$(RUN) $(PYTHON) benchmarks/lab_benchmark.py
