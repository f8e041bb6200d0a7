# The two README commands: `make demo` (main job) and `make test` (whole suite).
# Both build .venv first; nothing else has to be installed by hand.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test release release-check bundle autograder-zip clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

demo: venv
	RCNN_KIT_OFFLINE=$${RCNN_KIT_OFFLINE:-1} $(VENV)/bin/rcnn-kit demo --out runs/demo

test: venv
	$(VENV)/bin/rcnn-kit release --check
	RCNN_KIT_OFFLINE=1 $(PY) -m pytest -q --timeout=900

release: venv
	$(VENV)/bin/rcnn-kit release

release-check: venv
	$(VENV)/bin/rcnn-kit release --check

bundle: venv
	$(VENV)/bin/rcnn-kit bundle

autograder-zip: venv
	$(VENV)/bin/rcnn-kit autograder-zip

clean:
	rm -rf $(VENV) dist runs .pytest_cache .hypothesis
