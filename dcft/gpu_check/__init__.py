"""`make gpu-check` (`python -m dcft.gpu_check`): whether the harness is right and fast on this GPU.

Without a visible CUDA device it refuses at once with what to do and exit status 2: it never runs,
let alone passes, on a CPU. On a GPU it runs these sections, each check a function returning
verdict rows (check, expected, measured, outcome), and writes `results/gpu-check/<gpu>-<date>.json`
with the Markdown report beside it:

* `kernels` (`kernels.py`): DCFT's fast path = the authors' reference path in fp32, bf16 and fp16 at
  kernels 2 and 8, strides 1, 2 and 8 (those a kernel allows), output and gradients; the peft tuner's
  layer = the harness layer; merge -> unmerge restores the bf16 weight. Tolerances derived from each
  dtype's unit roundoff and the sizes of the sums (`tolerance.py`);
* `bench` (`benchmark.py`): `make bench` on DeBERTaV3-base at the authors' batch and length, fp32
  and bf16: step time and peak memory of DCFT k8 / k2 (fast, reference, peft), LoRA r=1, full
  fine-tuning and the head-only floor, merged inference;
* `training` (`training.py`): MiniLM on SST-2 through `run.py`, the CPU study's DCFT k8 run for 300
  steps in fp32 and in bf16: losses and dev accuracy close, time per step beside the CPU's;
* `parallel` (`parallel.py`, with 2+ GPUs): `accelerate launch --num_processes 2` = one process at
  the same global batch (the same comparison the CPU test makes).

Exit status: 1 when a check fails (the harness computes something wrong here), else 0; a missed
speed or memory target is reported (`MISSED`) without failing. The logic that needs no GPU
(tolerances, verdicts, the report, the comparisons of results) runs and is tested on the CPU; the
kernel checks take the device as an argument and are tested on the CPU as well.

Time: about 8 minutes on one A100-class GPU (`ESTIMATED_MINUTES`, an estimate before any GPU run:
the kernel checks are small; the bench is 2 precisions x 8 training settings x 12 steps of
DeBERTaV3-base at 32 x 320 tokens, ~0.1-0.5 s each, plus merged inference; each MiniLM run is ~1 min
of loading and tokenising SST-2 and 300 steps of ~30 ms; a slower card takes longer). The JSON
records each section's measured minutes.
"""

SECTIONS = ("kernels", "bench", "training", "parallel")
ESTIMATED_MINUTES = {"kernels": 1, "bench": 3, "training": 3, "parallel": 1}
