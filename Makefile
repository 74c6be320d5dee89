# xfer-course: `make lab` opens the course, `make test` checks everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.xfer-installed
PORT   ?= 8888
export OMP_WAIT_POLICY ?= PASSIVE
# Jupyter refuses to run as root unless told; containers and CI often are root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test unit run smoke bench site student instructor clean help

help:
	@echo "make lab     open the course in JupyterLab (sets everything up on first use;"
	@echo "             TORCH=cpu installs CPU-only PyTorch: about 2 GB in all instead of 6.5)"
	@echo "make test    run the whole test suite"
	@echo "make setup   create .venv and install the kit (seconds when nothing changed)"
	@echo "make run     execute every notebook headless, print a table of times"
	@echo "make smoke   the same with SMOKE=True (seconds per notebook)"
	@echo "make bench   benchmarks against the cheatsheet's recipes, written to docs/benchmarks.md"
	@echo "make site    the course website from the executed lessons, in build/site/ (nothing re-runs)"
	@echo "make student     student editions (solutions stubbed out) in build/student/"
	@echo "make instructor  instructor editions (with solutions) in build/instructor/"

setup: $(STAMP)

# PyTorch build: TORCH=default takes PyPI's (on Linux the CUDA build, about 5 GB in .venv);
# TORCH=cpu takes PyTorch's CPU-only wheels (about 2 GB in all; for laptops and workshops). Chosen once,
# when .venv is made: to switch, remove .venv and run make again.
TORCH ?= default
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
ifeq ($(filter $(TORCH),default cpu),)
$(error TORCH=$(TORCH) is not a PyTorch build this kit knows: use TORCH=default or TORCH=cpu)
endif

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -f $(VENV)/.xfer-torch ] && [ "$$(cat $(VENV)/.xfer-torch)" != "$(TORCH)" ]; then \
	  echo "$(VENV) holds the '$$(cat $(VENV)/.xfer-torch)' PyTorch build, not TORCH=$(TORCH): remove $(VENV) to switch" >&2; exit 2; fi
ifeq ($(TORCH),cpu)
	$(PY) -m pip install --disable-pip-version-check -q --index-url $(TORCH_CPU_INDEX) 'torch>=2.4' 'torchvision>=0.19'
endif
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	@echo $(TORCH) > $(VENV)/.xfer-torch
	@touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.port=$(PORT) $(LAB_ARGS)

test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg tests notebooks

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests -m "not notebook and not slow"

run: $(STAMP)
	$(PY) bench/run_notebooks.py

smoke: $(STAMP)
	$(PY) bench/run_notebooks.py --smoke

bench: $(STAMP)
	$(PY) bench/bench.py

site: $(STAMP)
	$(PY) website/build.py

student: $(STAMP)
	$(PY) -m xferlib.editions student notebooks build/student

instructor: $(STAMP)
	$(PY) -m xferlib.editions instructor notebooks build/instructor

clean:
	rm -rf build .pytest_cache
