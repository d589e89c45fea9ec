"""`make gpu-check` (dcft/gpu_check/): it refuses without CUDA; its tolerances, verdicts, report and
result comparisons are right (checked on the CPU against hand-computed values and loop oracles);
its kernel checks pass on correct code and fail on broken code (run on the CPU); the CUDA-only run
itself is skipped here with the reason."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose_cfg
from dcft.harness import identity
from dcft.gpu_check import benchmark, kernels, parallel, report, training
from dcft.gpu_check.tolerance import (TF32_UNIT_ROUNDOFF, excess, merge_bound, storage_roundoff, tolerance,
                                      unit_roundoff)
from dcft.gpu_check.verdict import Verdict, exit_code, from_records, guarded, headline, markdown_table, within

FIXTURE = ROOT / "tests" / "fixtures" / "gpu-check-record.json"
NO_CUDA = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
SMALL = {"layer": (96, 160), "tokens": 16}  # a layer that every kernel / stride of the check fits, CPU-sized


# --- refusing without CUDA -------------------------------------------------------------------------------
def _assert_refusal(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    text = p.stdout + p.stderr
    assert "gpu-check: no CUDA device is visible" in text and "never passes on a CPU" in text, text
    assert "make install TORCH=" in text, text


def test_module_refuses_without_cuda_and_writes_nothing(tmp_path):
    p = subprocess.run([sys.executable, "-m", "dcft.gpu_check", "--out", str(tmp_path / "out")], cwd=ROOT,
                       env=NO_CUDA, capture_output=True, text=True, timeout=300)
    _assert_refusal(p)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_gpu_check_refuses_without_cuda():
    p = subprocess.run(["make", "--no-print-directory", "gpu-check", f"PYTHON={sys.executable}",
                        "GPU_CHECK_ARGS=--skip bench"], cwd=ROOT, env=NO_CUDA, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode != 0
    assert "gpu-check: no CUDA device is visible" in p.stdout + p.stderr


def test_main_refuses_when_torch_sees_no_device(monkeypatch, tmp_path):
    from dcft.gpu_check.__main__ import main
    from dcft.gpu_check.environment import NoCuda

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NoCuda) as e:
        main(["--out", str(tmp_path)])
    assert e.value.code == 2 and not any(tmp_path.iterdir())


@pytest.mark.parametrize("broken", [False, True], ids=["right", "broken"])
def test_main_runs_its_sections_and_writes_the_record(monkeypatch, tmp_path, broken):
    """The command's flow on the CPU standing in for a GPU: the kernel section (small layers), the
    data-parallel section skipped for want of a second GPU, one JSON and one report, exit 1 on a failure."""
    from dcft.gpu_check import __main__ as cli
    from dcft.gpu_check import environment

    monkeypatch.setattr(environment, "require_cuda", lambda: torch.device("cpu"))
    monkeypatch.setattr(environment, "environment", lambda device: json.loads(FIXTURE.read_text())["environment"])
    cpu = torch.device("cpu")
    checks = [("kernels", "fast = reference, fp32, kernel 8 stride 2",
               lambda: [kernels.fast_equals_reference(cpu, torch.float32, 8, 2, **SMALL)])]
    if broken:
        checks.append(("kernels", "a check that raises", lambda: [][0]))
    monkeypatch.setattr(kernels, "kernel_checks", lambda device: checks)
    code = cli.main(["--out", str(tmp_path), "--skip", "bench,training"])
    (json_path,) = tmp_path.glob("nvidia-a100-sxm4-80gb-*.json")
    record = json.loads(json_path.read_text())
    outcomes = [(v["section"], v["outcome"]) for v in record["verdicts"]]
    assert outcomes == [("kernels", "pass")] + [("kernels", "fail")] * broken + [("data parallel", "skipped")]
    assert code == int(broken) and set(record["minutes"]) == {"kernels", "parallel"}
    assert record["estimated_minutes"] == 2 and json_path.with_suffix(".md").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the GPU check's sections run on a CUDA device only")
def test_kernel_section_passes_on_this_gpu():
    from dcft.gpu_check.__main__ import kernel_rows

    rows = kernel_rows(torch.device("cuda", 0))
    assert rows and all(r.outcome == "pass" for r in rows), markdown_table(rows)


# --- tolerances ------------------------------------------------------------------------------------------
def test_unit_roundoffs_are_half_an_ulp_at_one():
    assert unit_roundoff(torch.float64) == 2.0 ** -53
    assert unit_roundoff(torch.float32) == 2.0 ** -24
    assert unit_roundoff(torch.float16) == 2.0 ** -11
    assert unit_roundoff(torch.bfloat16) == 2.0 ** -8
    assert storage_roundoff(torch.float32, tf32=True) == TF32_UNIT_ROUNDOFF == 2.0 ** -11
    assert storage_roundoff(torch.bfloat16, tf32=True) == 2.0 ** -8  # TF32 concerns float32 only


def test_tolerance_coefficient_by_hand():
    tol = tolerance(torch.bfloat16, roundings=24, terms=10_000)
    assert tol.coefficient == pytest.approx(8 * (24 ** 0.5 * 2.0 ** -8 + 100 * 2.0 ** -24))
    tol = tolerance(torch.float32, roundings=4, terms=1, tf32=True)
    assert tol.coefficient == pytest.approx(8 * (2 * 2.0 ** -11 + 2.0 ** -24))
    with pytest.raises(ValueError, match="terms=0"):
        tolerance(torch.float32, 1, 0)


def test_excess_by_hand():
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.5, 3.0])
    assert excess(a, b, torch.tensor([1.0, 1.0, 1.0])) == 0.5
    assert excess(a, b, torch.tensor([1.0, 0.25, 1.0])) == 2.0
    assert excess(a, b, torch.tensor([1.0, 0.0, 1.0])) == math.inf  # a difference where nothing may differ
    assert excess(a, a, torch.zeros(3)) == 0.0
    assert excess(torch.tensor([float("nan")]), torch.tensor([1.0]), torch.tensor([1e9])) == math.inf
    with pytest.raises(ValueError, match="shapes differ"):
        excess(a, b[:2], b[:2])


def test_merge_bound_by_hand():
    w0, upd = torch.tensor([0.5, -1.0]), torch.tensor([0.25, 0.0])
    expected = 2 * 2.0 ** -8 * torch.tensor([0.5 + 0.5, 1.0])
    torch.testing.assert_close(merge_bound(w0, upd, torch.bfloat16), expected.double())


def _loop_terms(case: kernels.LayerCase) -> dict[str, list[list[float]]]:
    """Every product summed into y[n, j], dx[n, i], dA[k, a], dC[p, q], listed by loops (the
    oracle of `squared_terms` and `term_counts`)."""
    x, g, W, b, A, B, C = (t.double().tolist() for t in (case.x, case.g, case.W, case.b, case.A, case.B, case.C))
    s, d, sc = case.stride, case.kernel, case.scaling
    N, din, dout, rank = len(x), len(x[0]), len(W), len(A)
    windows = [(k, a, c, p, q) for k in range(rank) for a in range(len(A[0])) for c in range(len(B))
               for p in range(d) for q in range(d)]  # input index a*s+p, output index c*s+q
    y = {(n, j): [x[n][i] * W[j][i] for i in range(din)] + [b[j]] for n in range(N) for j in range(dout)}
    dx = {(n, i): [g[n][j] * W[j][i] for j in range(dout)] for n in range(N) for i in range(din)}
    dA = {(k, a): [] for k in range(rank) for a in range(len(A[0]))}
    dC = {(p, q): [] for p in range(d) for q in range(d)}
    for n in range(N):
        for k, a, c, p, q in windows:
            i, j = a * s + p, c * s + q
            y[n, j].append(sc * x[n][i] * A[k][a] * B[c][k] * C[p][q])
            dx[n, i].append(g[n][j] * sc * A[k][a] * B[c][k] * C[p][q])
            dA[k, a].append(g[n][j] * sc * x[n][i] * B[c][k] * C[p][q])
            dC[p, q].append(g[n][j] * sc * x[n][i] * A[k][a] * B[c][k])
    return {"y": y, "dx": dx, "dA": dA, "dC": dC}


@pytest.mark.parametrize("kernel,stride,rank", [(2, 1, 1), (2, 2, 2), (4, 2, 1)])
def test_squared_terms_and_term_counts_equal_the_loop_oracle(kernel, stride, rank):
    case = kernels.draw_case(kernel, stride, torch.float64, "cpu", din=6, dout=8, tokens=2, rank=rank, seed=3)
    squares, counts = kernels.squared_terms(case), kernels.term_counts(case)
    for name, terms in _loop_terms(case).items():
        want = torch.zeros_like(squares[name])
        for index, products in terms.items():
            want[index] = sum(t * t for t in products)
        torch.testing.assert_close(squares[name], want, rtol=1e-12, atol=0)
        assert counts[name] == max(len(products) for products in terms.values())


# --- the kernel checks, run on the CPU -------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kernel,stride", kernels.SHAPES)
def test_fast_equals_reference_check_passes_on_the_cpu(dtype, kernel, stride):
    """bf16 at kernel 8 stride 1 also guards the factors' float32 transposed convolutions: torch's
    CPU bf16 conv_transpose1d (oneDNN on AMX CPUs) gives wrong input gradients there."""
    row = kernels.fast_equals_reference(torch.device("cpu"), dtype, kernel, stride, **SMALL)
    assert row.outcome == "pass", row


@pytest.mark.parametrize("dtype,size", [(torch.float32, 1e-4), (torch.bfloat16, 0.5)], ids=["fp32", "bf16"])
def test_fast_equals_reference_check_fails_on_a_wrong_fast_path(monkeypatch, dtype, size):
    """A fast path off by a relative `size` in one factor fails: 1e-4 in float32, a gross error in bf16."""
    from dcft.methods.dcft import ops

    right = ops.factors
    monkeypatch.setattr(ops, "factors", lambda A, B, C, s: (lambda m, g: (m * (1 + size), g))(*right(A, B, C, s)))
    row = kernels.fast_equals_reference(torch.device("cpu"), dtype, 8, 2, **SMALL)
    assert row.outcome == "fail", row


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_peft_equals_harness_check_passes(dtype):
    assert kernels.peft_equals_harness(torch.device("cpu"), dtype, **SMALL).outcome == "pass"


def test_peft_equals_harness_check_fails_when_the_tuner_scales_differently(monkeypatch):
    right = kernels.peft_layer

    def rescaled(case, impl):
        layer = right(case, impl)
        layer.dcft_scaling["default"] *= 1 + 1e-4
        return layer

    monkeypatch.setattr(kernels, "peft_layer", rescaled)
    assert kernels.peft_equals_harness(torch.device("cpu"), torch.float32, **SMALL).outcome == "fail"


@pytest.mark.parametrize("via", ["harness", "peft"])
def test_merge_round_trip_check_passes(via):
    rows = kernels.merge_round_trip(torch.device("cpu"), torch.bfloat16, via=via, **SMALL)
    assert [r.outcome for r in rows] == ["pass", "pass"], rows


def test_merge_round_trip_check_fails_when_unmerge_leaves_a_trace(monkeypatch):
    from dcft.methods.dcft import DCFTLinear

    unmerge = DCFTLinear.unmerge

    def leaky(self):
        unmerge(self)
        with torch.no_grad():
            self.base.weight.add_(self.base.weight.abs().max() * 0.05)

    monkeypatch.setattr(DCFTLinear, "unmerge", leaky)
    rows = kernels.merge_round_trip(torch.device("cpu"), torch.bfloat16, via="harness", **SMALL)
    assert [r.outcome for r in rows] == ["pass", "fail"], rows


def test_kernel_checks_cover_every_dtype_and_shape():
    names = [name for _, name, _ in kernels.kernel_checks(torch.device("cpu"))]
    for d in ("fp32", "bf16", "fp16"):
        for k, s in ((2, 1), (2, 2), (8, 1), (8, 2), (8, 8)):
            assert f"fast = reference, {d}, kernel {k} stride {s}" in names
    assert sum("peft tuner" in n for n in names) == 2 and sum("merge" in n for n in names) == 2


# --- verdicts and the report -----------------------------------------------------------------------------
def test_within_guarded_and_exit_code():
    assert within("s", "c", 1.0, 1.0, "<= 1", "1").outcome == "pass"
    assert within("s", "c", math.nan, 1.0, "<= 1", "nan").outcome == "fail"
    assert within("s", "c", 1.2, 1.0, "<= 1", "1.2", target=True).outcome == "missed"
    rows = guarded("bench", "make bench", lambda: (_ for _ in ()).throw(RuntimeError("CUDA out of memory. Tried")))
    assert rows[0].outcome == "fail" and "smaller --bench-batch" in rows[0].detail
    assert exit_code([Verdict("s", "c", "e", "m", "missed")]) == 0
    assert exit_code([Verdict("s", "c", "e", "m", "pass"), Verdict("s", "c", "e", "m", "fail")]) == 1
    with pytest.raises(ValueError, match="outcome='ok'"):
        Verdict("s", "c", "e", "m", "ok")


def test_verdict_table_and_report_from_a_fixture_record(tmp_path):
    record = json.loads(FIXTURE.read_text())
    rows = from_records(record["verdicts"])
    assert headline(rows) == ("WRONG: 2 check(s) failed; 1 speed or memory target(s) missed "
                              "(1 pass, 2 fail, 1 missed, 1 info, 1 skipped)")
    table = markdown_table(rows).splitlines()
    assert table[:2] == ["| section | check | expected | measured | outcome |", "|---|---|---|---|---|"]
    assert table[2] == ("| kernels | fast = reference, bf16, kernel 8 stride 1 | every excess <= 1 | "
                        "excess y 0.17, dx 0.17, dA 0.1, dB 0.16, dC 0.076 | pass |")
    assert table[4] == "| bench fp32 | dcft-k8s8-fast step time / LoRA | <= 1.05 | 1.210 | MISSED |"
    assert "0.94 on 2 AMD EPYC cores \\| CPU study" in table[5]  # a | inside a cell is escaped
    assert table[6].endswith("| skipped: 1 GPU visible |")
    assert "FAIL: OutOfMemoryError" in table[7] and "Traceback" not in table[7]  # first line of the detail only
    json_path, md_path = report.write(record, tmp_path)
    assert json_path.name == "nvidia-a100-sxm4-80gb-2027-01-15.json" and md_path.suffix == ".md"
    assert json.loads(json_path.read_text()) == record
    text = md_path.read_text()
    assert text.startswith("# GPU check: NVIDIA A100-SXM4-80GB, 2027-01-15T09:30:00+00:00")
    assert "| driver | 550.54.15 |" in text and "| peft | 0.21.2 |" in text
    assert "\n".join(table) in text
    assert "total 6.1 (estimated beforehand: 8)" in text


def test_bench_verdicts_classify_correctness_and_speed():
    result = {"precision": "bf16", "batch": 32, "seq_len": 320, "repeats": 10,
              "checks": [{"check": "dcft-k8s8-fast loss == reference loss (relative difference)", "value": 0.04,
                          "limit": 0.03125, "ok": False},
                         {"check": "dcft-k8s8-fast step time / LoRA", "value": 1.2, "limit": 1.05, "ok": False},
                         {"check": "dcft-k2s2-fast peak memory / LoRA", "value": 0.9, "limit": 1.05, "ok": True}],
              "rows": [{"phase": "train", "label": "lora-r1", "step_s_median": 0.1234, "peak_mem_bytes": 3 * 2**30},
                       {"phase": "inference", "label": "base", "step_s_median": 0.05, "peak_mem_bytes": 2**20}]}
    rows = benchmark.bench_verdicts(result)
    assert [r.outcome for r in rows] == ["fail", "missed", "pass", "info", "info", "info"]
    assert rows[0].section == "bench bf16" and rows[0].expected == "<= 0.03125"
    assert rows[3].measured == "lora-r1 123.4" and rows[4].measured == "lora-r1 3,072"


def test_bench_section_names_settings_the_bench_knows_and_checks_them(tmp_path):
    """The GPU bench's settings, run on the tiny DeBERTa on the CPU: every label exists, both precisions
    give their loss checks (fast = reference, peft = harness) and the info rows."""
    for precision in benchmark.PRECISIONS:
        result = benchmark.run_bench(torch.device("cpu"), precision, batch=2, seq_len=16, repeats=1,
                                     log=lambda m: None, model="tiny-deberta")
        labels = {r["label"] for r in result["rows"]}
        assert set(benchmark.ONLY) | {"lora-r1", "head-only", "base"} == labels
        rows = benchmark.bench_verdicts(result)
        loss = [r for r in rows if "loss" in r.check]
        assert len(loss) == 3 and all(r.outcome == "pass" for r in loss), loss
        assert [r.outcome for r in rows[-3:]] == ["info"] * 3


def test_bad_options_are_refused_before_anything_runs(capsys):
    from dcft.gpu_check.__main__ import parse_args

    for argv, message in ((["--train-steps", "250"], "multiple of 100"), (["--bench-batch", "0"], "must be >= 1"),
                          (["--skip", "bench,gpu"], "unknown sections ['gpu']")):
        with pytest.raises(SystemExit):
            parse_args(argv)
        assert message in capsys.readouterr().err


# --- the MiniLM runs ---------------------------------------------------------------------------------------
def test_gpu_runs_compose_the_committed_cpu_run_but_for_steps_precision_and_device(tmp_path):
    ref = training.read_run(training.REFERENCE_RUN)
    cfg = compose_cfg(training.run_overrides(ref, "bf16", tmp_path, "/some/glue"))
    from omegaconf import OmegaConf

    mine = identity.declared_config(OmegaConf.to_container(cfg, resolve=True))
    changed = identity.changed_keys(ref["identity"]["declared"], mine)
    # the device kind is part of a run (absent from the committed runs' identities: it is left out at "cpu")
    assert changed == [("launch.device", "(absent)", "cuda"), ("train.max_steps", 1000, training.STEPS),
                       ("train.mixed_precision", "no", "bf16")]
    assert cfg.train.device == "cuda" and cfg.data.glue_dir == "/some/glue" and cfg.logger.name == "none"


def _record(status="completed", precision="no", losses=None, dev=0.80, rate=30.0):
    return {"status": status, "precision": precision, "losses": losses or {10: 0.70, 300: 0.35},
            "metrics": {"final": {training.DEV_KEY: dev}}, "train": {"steps_per_s": rate}}


SEEDS = [{"losses": {300: v}, "metrics": {"history": [{"step": 300, training.DEV_KEY: a}]}}
         for v, a in ((0.30, 0.79), (0.35, 0.80), (0.40, 0.81))]  # standard deviations 0.05 and 0.01
CPU = {"run_dir": "runs/minilm/sst2/dcft/x-fdd007b7", "train": {"steps_per_s": 1.5},
       "environment": {"cpu": "AMD EPYC", "cpu_count": 2}}


def test_seed_spread_by_hand():
    assert training.seed_spread(300, SEEDS) == pytest.approx({"dev": 0.01, "loss": 0.05})


@pytest.mark.parametrize("bf16,outcomes", [
    (_record(precision="bf16", losses={10: 0.72, 300: 0.48}, dev=0.828), ["pass"] * 5 + ["info"] * 2),
    (_record(precision="bf16", losses={10: 0.73, 300: 0.35}, dev=0.80), ["pass", "pass", "fail", "pass", "pass"]),
    (_record(precision="bf16", losses={10: 0.70, 300: 0.50}, dev=0.80), ["pass", "pass", "pass", "fail", "pass"]),
    (_record(precision="bf16", losses={10: 0.70, 300: 0.35}, dev=0.83), ["pass", "pass", "pass", "pass", "fail"]),
    (_record(precision="no"), ["pass", "fail"]),
    (_record(status="failed", precision="bf16"), ["pass", "fail"]),
], ids=["close", "first-loss", "last-loss", "dev", "precision-not-recorded", "failed"])
def test_training_verdicts(bf16, outcomes):
    """Limits: first loss 8 u = 0.03125 relative of 0.70 (0.72 passes, 0.73 fails); last loss
    2 sqrt(2) x 0.05 = 0.141; dev 2 sqrt(2) x 0.01 = 0.0283."""
    rows = training.training_verdicts(_record(), bf16, CPU, SEEDS)
    assert [r.outcome for r in rows][:len(outcomes)] == outcomes
    if len(rows) == 7:
        assert rows[5].measured == "30.00 on the GPU, 1.50 on 2 AMD EPYC cores, CPU study run x-fdd007b7 (20.0x)"


# --- the data-parallel comparison --------------------------------------------------------------------------
def _fake_run(root: Path, processes: int, loss: float, scores: list[float], weight: float) -> None:
    run = root / "m" / "t" / "dcft" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({
        "processes": processes, "data": {"eval_examples": {"validation": 64}}, "train": {"final_loss": loss},
        "metrics": {"history": [{"score": s} for s in scores]}}))
    torch.save({"trainable": {"A": torch.full((2, 3), weight)}}, run / "checkpoints" / "last.pt")


@pytest.mark.parametrize("two,failing", [
    ((2, 0.5, [0.5, 0.9], 1.0), []),
    ((2, 0.5 + 2e-5, [0.5, 0.9], 1.0), ["final training loss, 2 processes vs 1"]),
    ((2, 0.5, [0.5, 0.875], 1.0), ["dev score of every evaluation"]),
    ((2, 0.5, [0.5, 0.9], 1.0 + 2e-4), ["trained tensors, 2 processes vs 1"]),
    ((1, 0.5, [0.5, 0.9], 1.0), ["processes recorded"]),
], ids=["equal", "loss", "score", "weights", "processes"])
def test_same_run_flags_each_difference(tmp_path, two, failing):
    _fake_run(tmp_path / "one", 1, 0.5, [0.5, 0.9], 1.0)
    _fake_run(tmp_path / "two", *two)
    rows = parallel.same_run(tmp_path / "one", tmp_path / "two")
    assert len(rows) == 6 and [r.check for r in rows if r.outcome == "fail"] == failing


# --- the GPU-hours estimate --------------------------------------------------------------------------------
def test_backbone_size_and_optimizer_steps_by_hand():
    from dcft.gpu_check import hours

    arch = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12}
    assert hours.backbone_size(arch) == 12 * (4 * 768 * 768 + 2 * 768 * 3072) == 84_934_656
    sst2 = {"batch_size": 32, "epochs": 24, "max_steps": -1}
    assert hours.optimizer_steps(sst2, 67349) == 24 * 2105 == 50_520  # ceil(67349 / 32) = 2105
    assert hours.optimizer_steps({**sst2, "grad_accum": 2}, 67349) == 24 * 1053
    assert hours.optimizer_steps({**sst2, "max_steps": 1000}, 67349) == 1000
    assert hours.optimizer_steps({"batch_size": 32, "epochs": 0.5, "max_steps": -1}, 100) == 2  # ceil(0.5 x 4)
    assert [hours.table_of(s) for s in ("table4_full", "table1_lr_roberta-large_lora", "figures", "table5")] == [
        "Table 4", "Table 1, lr grids", "Figures 2-3", "Table 5"]


def test_estimate_costs_runs_once_per_table_and_once_in_the_total():
    from dcft.measure.cost import StepTime
    from dcft.gpu_check.hours import Run, estimate

    def run(d, method="dcft", steps=100, task="rte"):
        return Run(d, "m", task, method, 8, steps, 32, 128, 2, 1000)

    a, b, full = run("a"), run("b", steps=300), run("c", method="full")
    # rte: 277 dev examples; cost = (steps x 32 x 128 + 2 x 277 x 128 / 3) x 1000 (x 1.5 for full)
    assert a.cost == pytest.approx((100 * 32 * 128 + 2 * 277 * 128 / 3) * 1000)
    assert full.cost == pytest.approx(1.5 * a.cost)
    rows = estimate({"table4": [a, b], "table4_full": [full], "table5": [a]}, StepTime("gpu", "stated", 3600.0))
    assert [(r["table"], r["runs"], r["steps"]) for r in rows] == [
        ("Table 4", 3, 500), ("Table 5", 1, 100), ("all (each run once)", 3, 500)]
    assert rows[0]["hours"] == pytest.approx(a.cost + b.cost + full.cost)
    assert rows[1]["hours"] == pytest.approx(a.cost)


def test_sweep_runs_compose_each_job_as_run_py_does():
    from omegaconf import OmegaConf

    from dcft.gpu_check import hours
    from dcft.harness.sweep import SWEEP_DIR

    (runs,) = hours.sweep_runs([SWEEP_DIR / "table3_dcft.yaml"]).values()
    preset = OmegaConf.load(ROOT / "conf" / "hp" / "authors" / "deberta-v3-base" / "squad.yaml").train
    squad = next(r for r in runs if r.task == "squad")
    steps = preset.epochs * math.ceil(87599 / preset.batch_size)
    assert (squad.steps, squad.batch, squad.max_len, squad.evals) == (
        steps, preset.batch_size, preset.max_len, steps // preset.eval_steps + 1)
    assert squad.run_dir.startswith("deberta-v3-base/squad/dcft/kernel=2,stride=2,targets=all")


def test_the_authors_gpu_gives_back_the_paper_s_time_of_the_run_it_is_calibrated_on():
    """conf/cost/gpus.yaml's authors-gpu entry costs Table 4's DCFT kernel 8 SST-2 run, composed as run.py
    composes it, at the 5.01 h the paper reports for it."""
    from dcft.measure.cost import figures
    from dcft.gpu_check import hours
    from dcft.harness.sweep import SWEEP_DIR

    (runs,) = hours.sweep_runs([SWEEP_DIR / "table4.yaml"]).values()
    sst2 = next(r for r in runs if (r.task, r.kernel) == ("sst2", 8))
    assert (sst2.steps, sst2.batch, sst2.max_len, sst2.evals) == (24 * 2105, 32, 128, 24 * 2105 // 3000 + 1)
    assert figures()[hours.AUTHORS_GPU].seconds(sst2) / 3600 == pytest.approx(5.01)


def test_time_per_token_from_a_gpu_check_is_each_fp32_row_s_step_per_token_parameter(tmp_path):
    import json

    from dcft.measure.cost import Run, from_file

    record = {"environment": {"gpu": "Some GPU"},
              "bench": {"fp32": {"model": "deberta-v3-base", "batch": 32, "seq_len": 320,
                                 "rows": [{"label": "lora-r1", "step_s_median": 0.3},
                                          {"label": "dcft-k8s8-fast", "step_s_median": 0.2}]}}}
    (tmp_path / "check.json").write_text(json.dumps(record))
    time = from_file(tmp_path / "check.json")
    backbone = 84_934_656  # DeBERTaV3-base: 12 x (4 x 768^2 + 2 x 768 x 3072)
    assert time.per_cost["dcft-k8s8-fast"] == pytest.approx(0.2 / (32 * 320 * backbone))
    # one bench-shaped step of each method, no evaluation: DCFT k8 its row, BitFit LoRA r=1's row
    dcft, bitfit = (Run("r", "deberta-v3-base", "rte", m, 8, 1, 32, 320, 0, backbone) for m in ("dcft", "bitfit"))
    assert time.seconds(dcft) == pytest.approx(0.2) and time.seconds(bitfit) == pytest.approx(0.3)
