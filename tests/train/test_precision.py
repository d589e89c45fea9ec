"""Mixed precision through the harness on the CPU: `train.mixed_precision=bf16` (Accelerate's bf16
autocast) trains DCFT and LoRA like float32 does, the result file and the run's identity record the
precision, the committed float32 runs keep their folders, and fp16 without CUDA is refused before any
work.

The oracle of each bf16 run is the float32 run of the same configuration in the same process (same
data order, same initial weights). Tolerances:

* the first logged loss (mean of the first 5 steps, before training has amplified any difference)
  within 8 u relative, u = 2^-8 the unit roundoff of bfloat16 (8 significant bits): bf16 autocast
  rounds the inputs of every matrix product to u, and the 2-layer model's loss carries a handful
  of such relative errors;
* every later logged loss within 0.1 nats (an eighth of the starting loss of about 0.8): training
  amplifies rounding differences, but not into a different kind of run;
* the dev accuracy within 4 of the 64 dev examples, and above 0.9 for both (the task is learnable);
* and the bf16 losses are NOT identical to float32's: autocast really ran (a run that silently
  trains in float32 while recording bf16, which is what Accelerate does with fp16 on a CPU, fails).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose_cfg
from dcft.harness import identity
from dcft.report import results
from dcft.data.toy import write_learnable_rte
from dcft.harness.experiment import run

U_BF16 = 2.0 ** -8  # unit roundoff of bfloat16
FIRST_LOSS_RTOL = 8 * U_BF16
LOSS_ATOL = 0.1
DEV_ATOL = 4 / 64
RUN = ["model=tiny-bert", "preset=none", "task=rte", "train.max_steps=40", "train.batch_size=16", "train.lr=1e-2",
       "train.eval_steps=20", "train.max_len=48", "train.progress=false", "train.log_steps=5", "train.device=cpu"]
METHODS = {"dcft": ["method=dcft", "kernel=8"], "lora": ["method=lora"]}


def logged_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "log.jsonl").read_text().splitlines()
    return [rec["loss"] for rec in map(json.loads, lines) if rec["type"] == "train"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """fp32 and bf16 runs of DCFT (kernel 8) and LoRA r=1, all in this one process, in the order
    fp32, bf16, fp32 again (a process may change precision between runs)."""
    tmp = tmp_path_factory.mktemp("precision")
    glue = write_learnable_rte(tmp / "glue")
    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a module fixture runs before the autouse one-thread fixture
    try:
        for name, method in METHODS.items():
            for precision in ("no", "bf16", "no"):
                key = (name, precision) if (name, precision) not in out else (name, "no-again")
                run_dir = tmp / "-".join(key)
                rec = run(compose_cfg(RUN + method + [f"data.glue_dir={glue}", f"train.mixed_precision={precision}"]),
                          run_dir)
                out[key] = (rec, run_dir)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.parametrize("method", METHODS)
def test_bf16_trains_like_fp32_within_the_stated_tolerance(runs, method):
    (fp32, fp32_dir), (bf16, bf16_dir) = runs[method, "no"], runs[method, "bf16"]
    a, b = logged_losses(fp32_dir), logged_losses(bf16_dir)
    assert len(a) == len(b) == 8
    assert abs(b[0] - a[0]) <= FIRST_LOSS_RTOL * abs(a[0]), (a[0], b[0])
    assert max(abs(x - y) for x, y in zip(a, b)) <= LOSS_ATOL, list(zip(a, b))
    assert a != b, "the bf16 run computed exactly what fp32 computed: autocast did not run"
    assert b[-1] < 0.6 * b[0]  # bf16 trains
    dev_a, dev_b = fp32["metrics"]["best"]["score"], bf16["metrics"]["best"]["score"]
    assert min(dev_a, dev_b) > 0.9 and abs(dev_a - dev_b) <= DEV_ATOL


@pytest.mark.parametrize("method", METHODS)
def test_a_float32_run_after_a_bf16_run_in_one_process_is_float32_again(runs, method):
    (_, first), (_, again) = runs[method, "no"], runs[method, "no-again"]
    assert logged_losses(again) == logged_losses(first)


@pytest.mark.parametrize("method", METHODS)
def test_result_file_and_identity_record_the_precision(runs, method):
    (_, fp32_dir), (_, bf16_dir) = runs[method, "no"], runs[method, "bf16"]
    fp32, bf16 = results.read_result(fp32_dir), results.read_result(bf16_dir)
    assert (fp32["precision"], bf16["precision"]) == ("no", "bf16")
    assert bf16["status"] == "completed"
    assert bf16["identity"]["declared"]["train"]["mixed_precision"] == "bf16"
    assert fp32["identity"]["hash"] != bf16["identity"]["hash"]  # another run, another folder
    changed = identity.changed_keys(fp32["identity"]["declared"], bf16["identity"]["declared"])
    assert changed == [("train.mixed_precision", "no", "bf16")]


REFERENCE_RUNS = ("minilm/sst2/dcft/kernel=8,stride=8,targets=all,lr=0.005,seed=6-fdd007b7",
                  "minilm/sst2/lora/r=1,targets=all,lr=0.005,seed=6-bedae27e")


@pytest.mark.parametrize("folder", REFERENCE_RUNS)
def test_committed_float32_runs_keep_their_folder(folder):
    """The CPU study's runs (float32, `mixed_precision: "no"`) land in the folder they were written to."""
    rec = json.loads((ROOT / "results" / "cpu-study" / "runs" / folder / "result.json").read_text())
    assert rec["precision"] == "no"
    assert identity.run_subdir(identity.declared_config(rec["config"])) == folder


def test_fp16_without_cuda_is_refused_before_any_folder_is_written(tmp_path):
    cfg = compose_cfg(RUN + METHODS["dcft"] + [f"data.glue_dir={write_learnable_rte(tmp_path / 'glue')}",
                                               "train.mixed_precision=fp16"])
    with pytest.raises(ValueError, match=r"train.mixed_precision=fp16 needs a CUDA device.*use train.mixed_precision=bf16"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 autocast (with loss scaling) needs a CUDA device")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_on_cuda_trains_like_fp32(tmp_path, precision):
    """On a GPU, bf16 and fp16 (Accelerate's GradScaler) autocast train DCFT like float32, with the
    tolerances above (fp16's unit roundoff 2^-11 is below bf16's, so bf16's first-loss bound serves)."""
    glue = write_learnable_rte(tmp_path / "glue")
    out = {}
    for p in ("no", precision):
        run_dir = tmp_path / p
        on_gpu = [o for o in RUN if not o.startswith("train.device=")] + ["train.device=cuda"]
        run(compose_cfg(on_gpu + METHODS["dcft"] + [f"data.glue_dir={glue}", f"train.mixed_precision={p}"]), run_dir)
        out[p] = (results.read_result(run_dir), logged_losses(run_dir))
    (fp32, a), (half, b) = out["no"], out[precision]
    assert half["precision"] == precision and half["status"] == "completed" and half["device"].startswith("cuda")
    assert abs(b[0] - a[0]) <= FIRST_LOSS_RTOL * abs(a[0]) and max(abs(x - y) for x, y in zip(a, b)) <= LOSS_ATOL
    assert a != b and b[-1] < 0.6 * b[0]
    assert abs(fp32["metrics"]["best"]["score"] - half["metrics"]["best"]["score"]) <= DEV_ATOL
