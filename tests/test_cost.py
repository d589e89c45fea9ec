"""`dcft.measure.cost`: a study's planned runs costed on a device, against hours computed by hand from a bench file
and a named GPU's figures written here."""

from __future__ import annotations

import json

import pytest

from dcft.measure import cost

MINILM = 6 * (4 * 384 * 384 + 2 * 384 * 1536)  # conf/model/minilm.yaml: 6 layers, hidden 384, FFN 1536
BENCH = {"model": "minilm", "device": "cpu", "device_name": "Test CPU", "batch": 32, "seq_len": 32,
         "rows": [{"phase": "train", "label": "lora-r1", "step_s_median": 1.0},
                  {"phase": "train", "label": "dcft-k8s8-fast", "step_s_median": 1.2},
                  {"phase": "train", "label": "full", "step_s_median": 2.0},
                  {"phase": "inference", "label": "base", "forward_s_median": 0.1}]}


def planned(setting, method, task, steps, batch, max_len, eval_steps, holdout, **extra):
    over = {"model": "minilm", "train.batch_size": batch, "train.max_len": max_len, "train.eval_steps": eval_steps,
            "data.holdout": holdout, **extra}
    return {"task": task, "setting": setting, "method": method, "overrides": over, "steps": steps, "lr": 1e-3,
            "seed": 6, "stage": "grid", "group": "core"}


RUNS = [planned("dcft8", "dcft", "rte", 400, 32, 64, 100, 0.1, kernel=8),
        planned("bitfit", "bitfit", "rte", 400, 32, 64, 100, 0.1),
        planned("full", "full", "sst2", 200, 32, 128, 100, 0.01)]
# tokens by hand: RTE 400 x 32 x 64 trained, 400 // 100 + 1 = 5 evaluations of 277 dev + round(0.1 x 2490) = 249
# held-out examples x 64 tokens at a third; SST-2 200 x 32 x 128, 3 evaluations of 872 + round(0.01 x 67349) = 673
RTE_TOKENS = 400 * 32 * 64 + 5 * (277 + 249) * 64 / 3
SST2_TOKENS = 200 * 32 * 128 + 3 * (872 + 673) * 128 / 3


@pytest.fixture
def bench_file(tmp_path):
    path = tmp_path / "2026-12-07-cpu-minilm.json"
    path.write_text(json.dumps(BENCH))
    return path


def test_a_bench_costs_each_run_by_its_own_method_s_row_scaled_to_its_tokens(bench_file):
    (row,) = cost.estimate(RUNS, device=bench_file)
    # a bench step is 32 x 32 = 1024 tokens: DCFT k8 1.2 s, BitFit (no row: LoRA r=1's) 1.0 s, full 2.0 s
    seconds = RTE_TOKENS * 1.2 / 1024 + RTE_TOKENS * 1.0 / 1024 + SST2_TOKENS * 2.0 / 1024
    assert row["runs"] == 3 and row["steps"] == 1000
    assert row["hours"] == pytest.approx(seconds / 3600)
    assert "Test CPU" in row["device"] and bench_file.name in row["source"]


def test_a_bench_of_another_model_is_scaled_by_the_backbones(tmp_path):
    other = tmp_path / "deberta.json"
    other.write_text(json.dumps({**BENCH, "model": "deberta-v3-base"}))
    (row,) = cost.estimate(RUNS[:1], device=other)
    deberta = 12 * (4 * 768 * 768 + 2 * 768 * 3072)
    assert row["hours"] == pytest.approx(RTE_TOKENS * 1.2 / 1024 * MINILM / deberta / 3600)


def test_named_gpus_step_time_and_timed_run_and_every_device_of_the_model(tmp_path, bench_file, monkeypatch):
    figures = tmp_path / "gpus.yaml"
    figures.write_text(
        "stepped: {source: stated, model: minilm, method: dcft, batch: 16, max_len: 64, step_s: 0.5}\n"
        "timed: {source: a run, model: minilm, method: lora, task: rte, batch: 32, max_len: 64, steps: 400,"
        " eval_steps: 100, hours: 2.0}\n")
    monkeypatch.setattr(cost, "FIGURES", figures)
    monkeypatch.setattr(cost, "BENCH_DIR", tmp_path)
    (tmp_path / "other-model.json").write_text(json.dumps({**BENCH, "model": "deberta-v3-base"}))
    older = [{**r, "step_s_median": 9.0} if r["phase"] == "train" else r for r in BENCH["rows"]]
    (tmp_path / "2026-12-01-cpu-minilm.json").write_text(json.dumps({**BENCH, "rows": older}))
    rows = cost.estimate(RUNS, device=None)
    # minilm's benches only, the newest of the device
    assert [r["device"] for r in rows] == ["stepped", "timed", f"cpu: Test CPU ({bench_file.name})"]
    assert rows[2] == cost.estimate(RUNS, device=bench_file)[0]
    # stepped: 0.5 s per 16 x 64 = 1024 tokens of a PEFT method, full fine-tuning at 1.5x
    stepped = (2 * RTE_TOKENS + 1.5 * SST2_TOKENS) * 0.5 / 1024
    assert rows[0]["hours"] == pytest.approx(stepped / 3600)
    # timed: a run of 400 x 32 x 64 tokens plus 5 evaluations of RTE's 277 dev examples took 2 h
    per_token = 2.0 * 3600 / (400 * 32 * 64 + 5 * 277 * 64 / 3)
    assert rows[1]["hours"] == pytest.approx((2 * RTE_TOKENS + 1.5 * SST2_TOKENS) * per_token / 3600)
    assert cost.estimate(RUNS, device="timed") == [rows[1]]
    text = cost.table(rows)
    assert "| stepped | 3 | 1,000 |" in text and "timed: a run" in text


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="train.max_len"):
        cost.estimate([{**RUNS[0], "overrides": {"model": "minilm", "train.batch_size": 32}}], device="authors-gpu")
    with pytest.raises(ValueError, match="model"):
        cost.estimate([{**RUNS[0], "overrides": {"train.batch_size": 32, "train.max_len": 64}}], device="authors-gpu")
    with pytest.raises(ValueError, match="no-such-gpu.*authors-gpu"):
        cost.estimate(RUNS, device="no-such-gpu")
