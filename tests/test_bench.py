"""`make bench` (dcft/measure/bench.py) on the tiny DeBERTa: every code path, the JSON schema, the ratios, and
that the DCFT fast and reference settings it times compute the same thing. Nothing here is timed."""

from __future__ import annotations

import json
import re

import pytest
import torch

from dcft.measure import bench

TINY = ["--model", "tiny-deberta", "--batch", "2", "--seq-len", "16", "--repeats", "1", "--threads", "1"]
ROW_KEYS = {"phase", "label", "method", "kernel", "stride", "impl", "step_s_median", "step_s_q1", "step_s_q3",
            "step_s_min", "step_s_max", "step_s_all", "peak_mem_bytes", "ratio_to_lora", "mem_ratio_to_lora"}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One benchmark run through the command line, and the JSON file it wrote."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    threads = torch.get_num_threads()
    returned = bench.main([*TINY, "--out", str(out)])
    assert torch.get_num_threads() == threads  # --threads is restored after the run
    written = json.loads(out.read_text())
    return returned, written


def test_json_schema_and_every_setting(result):
    _, res = result
    for key in ("device", "model", "batch", "seq_len", "machine", "rows", "repeats", "inference_repeats", "warmup",
                "checks"):
        assert key in res, key
    assert (res["device"], res["model"], res["batch"], res["seq_len"]) == ("cpu", "tiny-deberta", 2, 16)
    assert res["machine"]["threads"] == 1 and res["machine"]["torch"] == torch.__version__
    assert "cpu" in res["machine"] and res["machine"]["cpu_count"] >= 1
    train = [r for r in res["rows"] if r["phase"] == "train"]
    assert [r["label"] for r in train] == [s.label for s in bench.train_settings()]
    for r in res["rows"]:
        assert ROW_KEYS <= set(r), ROW_KEYS - set(r)
        assert len(r["step_s_all"]) == (1 if r["phase"] == "train" else 3) and r["step_s_median"] > 0
        assert r["step_s_min"] <= r["step_s_q1"] <= r["step_s_median"] <= r["step_s_q3"] <= r["step_s_max"]
        assert r["peak_mem_bytes"] > 0
    settings = {(r["method"], r["kernel"], r["stride"], r["impl"]) for r in train}
    for impl in ("fast", "reference"):
        for k, s in ((2, 2), (8, 8), (8, 4), (8, 2), (8, 1)):
            assert ("dcft", k, s, impl) in settings
    assert ("lora", None, None, None) in settings and ("full", None, None, None) in settings


def test_ratios_are_to_lora_of_the_same_run(result):
    _, res = result
    rows = {r["label"]: r for r in res["rows"]}
    lora = rows["lora-r1"]
    assert lora["ratio_to_lora"] == 1.0 and lora["mem_ratio_to_lora"] == 1.0
    for r in res["rows"]:
        if r["phase"] == "train":
            assert r["ratio_to_lora"] == pytest.approx(r["step_s_median"] / lora["step_s_median"])
            assert r["mem_ratio_to_lora"] == pytest.approx(r["peak_mem_bytes"] / lora["peak_mem_bytes"])
    # full fine-tuning holds gradients and AdamW state for every weight: more memory than LoRA
    assert rows["full"]["peak_mem_bytes"] > lora["peak_mem_bytes"]
    # the reference path builds a din x dout Delta per layer: never less memory than the fast path
    assert rows["dcft-k8s1-reference"]["peak_mem_bytes"] > rows["dcft-k8s1-fast"]["peak_mem_bytes"]


def test_inference_rows(result):
    _, res = result
    inf = {r["label"]: r for r in res["rows"] if r["phase"] == "inference"}
    assert list(inf) == ["base", "dcft-k8s8-merged", "dcft-k2s2-merged"]
    assert inf["base"]["ratio_to_base"] == 1.0
    for label in ("dcft-k8s8-merged", "dcft-k2s2-merged"):
        r = inf[label]
        assert r["merged"] and r["method"] == "dcft" and r["kernel"] == r["stride"]
        assert r["ratio_to_base"] == pytest.approx(r["step_s_median"] / inf["base"]["step_s_median"])
        assert r["ratio_to_lora"] is None


def test_fast_and_reference_rows_have_the_same_loss(result):
    _, res = result
    rows = {r["label"]: r for r in res["rows"]}
    for k, s in bench.DCFT_SHAPES:
        fast, ref = rows[f"dcft-k{k}s{s}-fast"]["loss_step0"], rows[f"dcft-k{k}s{s}-reference"]["loss_step0"]
        assert fast == pytest.approx(ref, rel=1e-5)
    loss_checks = [c for c in res["checks"] if "reference loss" in c["check"]]
    assert len(loss_checks) == len(bench.DCFT_SHAPES) and all(c["ok"] for c in loss_checks)
    assert {c["check"].split()[0] for c in res["checks"] if "inference" in c["check"]} == {
        "dcft-k8s8-merged", "dcft-k2s2-merged"}


def test_markdown_table(result):
    returned, res = result
    assert returned["rows"] == res["rows"]
    text = bench.markdown(res)
    assert "| setting | impl |" in text and "| model | latency (s) |" in text
    for r in res["rows"]:
        assert f"| {r['label']} |" in text


@pytest.mark.parametrize("k,s", bench.DCFT_SHAPES)
def test_benchmarked_fast_and_reference_settings_compute_the_same_step(k, s):
    """Built the benchmark's way from one backbone, the fast and reference settings give the same loss
    on the same batch and take the same optimizer step."""
    from conftest import model_cfg

    base = bench.build_base(model_cfg("tiny-deberta"), torch.device("cpu"), seed=0)
    data = bench.make_batch(base, 2, 16, torch.device("cpu"), seed=0)
    runners = {impl: bench.make_trainer(base, bench.Setting("dcft", k, s, impl), 3, 1e-3, compile=False)
               for impl in ("fast", "reference")}
    losses = {}
    for impl, runner in runners.items():
        torch.manual_seed(1)
        losses[impl] = bench.train_step(runner, data)
    torch.testing.assert_close(losses["fast"], losses["reference"], rtol=1e-5, atol=1e-6)
    after = {impl: dict(r.method.own_parameters(r.module)) for impl, r in runners.items()}
    for name, p in after["fast"].items():
        torch.testing.assert_close(p, after["reference"][name], rtol=1e-4, atol=1e-6)


def test_peft_settings_share_the_frozen_backbone_and_merging_leaves_it_alone():
    from conftest import model_cfg

    base = bench.build_base(model_cfg("tiny-deberta"), torch.device("cpu"), seed=0)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    lora = bench.make_trainer(base, bench.LORA, 0, 1e-3, compile=False)
    full = bench.make_trainer(base, bench.Setting("full"), 0, 1e-3, compile=False)
    merged = bench.make_inferer(base, bench.Setting("dcft", 8, 8, "fast", phase="inference"), 0, compile=False)
    word, head = "deberta.embeddings.word_embeddings.weight", "classifier.weight"
    params = {name: dict(m.named_parameters()) for name, m in (("base", base), ("lora", lora.module),
                                                               ("full", full.module))}
    assert params["lora"][word] is params["base"][word]  # one frozen backbone for every PEFT setting
    assert params["full"][word] is not params["base"][word]  # full fine-tuning trains its own copy
    assert params["lora"][head] is not params["base"][head]  # the head trains: one copy per setting
    data = bench.make_batch(base, 2, 16, torch.device("cpu"), seed=0)
    bench.train_step(lora, data)
    bench.train_step(full, data)
    for n, p in base.named_parameters():  # neither training nor merging changed the shared backbone
        torch.testing.assert_close(p, before[n], rtol=0, atol=0, msg=n)
    assert not merged.module.training
    query = "deberta.encoder.layer.0.attention.self.query_proj"
    assert not torch.equal(merged.module.get_submodule(query).base.weight, base.get_submodule(query).weight)


def test_peak_memory_counts_what_a_call_allocates():
    def allocate():
        a = torch.ones(1024, 1024)  # 4 MiB live ...
        b = a * 2  # ... 8 MiB live at once
        return float(b.sum())

    peak = bench.peak_memory(allocate, torch.device("cpu"))
    assert 8 * 2**20 <= peak < 9 * 2**20


def test_quantiles_and_spread():
    assert bench.quantile([3.0], 0.25) == 3.0
    assert bench.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert bench.quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.25) == 2.0
    sp = bench.spread([5.0, 1.0, 3.0], "t")
    assert sp == {"t_median": 3.0, "t_q1": 2.0, "t_q3": 4.0, "t_min": 1.0, "t_max": 5.0}


def test_default_output_path(result):
    _, res = result
    default = dict(res, model=bench.DEFAULT_MODEL, layers=12)
    assert re.fullmatch(r"results/bench/\d{4}-\d\d-\d\d-cpu\.json", bench.default_path(default).as_posix())
    assert bench.default_path(dict(default, compile=True)).name.endswith("-cpu-compile.json")
    assert bench.default_path(res).name.endswith("-cpu-tiny-deberta.json")


def test_bf16_autocast_rows_record_their_precision_and_are_checked_at_its_tolerance(result, tmp_path):
    """`--precision bf16`: the forward pass runs under bfloat16 autocast (the first loss moves off
    the fp32 run's by rounding, within the bf16 tolerance 8 u = 2^-5), fast and reference are
    compared at that tolerance, and the file name and table say bf16."""
    _, fp32 = result
    res = bench.main([*TINY, "--precision", "bf16", "--shapes", "8:8", "--no-inference",
                      "--only", "dcft-k8s8-fast,dcft-k8s8-reference", "--out", str(tmp_path / "b.json")])
    assert res["precision"] == "bf16" and json.loads((tmp_path / "b.json").read_text())["precision"] == "bf16"
    rows, before = ({r["label"]: r for r in x["rows"]} for x in (res, fp32))
    for label in ("lora-r1", "dcft-k8s8-fast", "dcft-k8s8-reference"):
        a, b = before[label]["loss_step0"], rows[label]["loss_step0"]
        assert a != b and abs(a - b) <= 2.0 ** -5 * abs(a), (label, a, b)
    (check,) = [c for c in res["checks"] if "reference loss" in c["check"]]
    assert check["limit"] == bench.LOSS_RTOL["bf16"] == 2.0 ** -5 and check["ok"]
    assert bench.default_path(res).name.endswith("-cpu-bf16-tiny-deberta.json")
    assert ", bf16, torch" in bench.markdown(res)
    with pytest.raises(SystemExit, match="--precision fp16: valid: fp32, bf16"):
        bench.run(model="tiny-deberta", precision="fp16")


def test_bad_arguments_fail_clearly():
    with pytest.raises(SystemExit, match="unknown settings"):
        bench.main([*TINY, "--only", "dcft-k9s9-fast"])
    with pytest.raises(SystemExit, match="max_position_embeddings"):
        bench.main(["--model", "tiny-deberta", "--batch", "2", "--seq-len", "4096"])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA is not available"):
            bench.main([*TINY, "--device", "cuda"])


def test_peft_and_conv1d_rows_compute_the_harness_step_and_are_checked_against_it(result):
    """The peft tuner and the Conv1D path start from the same A, B, C as the harness nn.Linear row:
    the same first loss (to float rounding), and their step-time limits are taken against that row."""
    _, res = result
    rows = {r["label"]: r for r in res["rows"]}
    harness = rows["dcft-k8s8-fast"]
    for via, limit in (("peft", bench.LIMIT_PEFT), ("conv1d", bench.LIMIT_CONV1D)):
        r = rows[f"dcft-k8s8-fast-{via}"]
        assert r["via"] == via and r["method_params"] == harness["method_params"]
        assert r["loss_step0"] == pytest.approx(harness["loss_step0"], rel=1e-6)
        check = {c["check"]: c for c in res["checks"]}[f"dcft-k8s8-fast-{via} step time / dcft-k8s8-fast"]
        assert check["limit"] == limit and check["value"] == pytest.approx(r["step_s_median"] /
                                                                           harness["step_s_median"])


def test_floor_row_trains_the_head_only_and_every_row_reports_its_overhead(result):
    _, res = result
    train = [r for r in res["rows"] if r["phase"] == "train"]
    floor = next(r for r in train if r["label"] == "head-only")
    assert floor["method_params"] == 0 and floor["trainable_params"] > 0 and floor["over_floor_s"] == 0.0
    for r in train:
        assert r["over_floor_s"] == pytest.approx(r["step_s_median"] - floor["step_s_median"])
        assert r["ratio_to_floor"] == pytest.approx(r["step_s_median"] / floor["step_s_median"])
    assert "| head-only |" in bench.markdown(res) and "over floor (s)" in bench.markdown(res)


def test_peft_and_conv1d_trainers_share_the_backbone_and_change_only_their_own_tensors():
    from conftest import model_cfg
    from transformers.pytorch_utils import Conv1D

    base = bench.build_base(model_cfg("tiny-deberta"), torch.device("cpu"), seed=0)
    before = {n: p.detach().clone() for n, p in base.named_parameters()}
    data = bench.make_batch(base, 2, 16, torch.device("cpu"), seed=0)
    peft_runner, conv_runner, head_runner = (bench.make_trainer(base, s, 0, 1e-3, compile=False)
                                             for s in (*bench.VIA, bench.HEAD_ONLY))
    word = "deberta.embeddings.word_embeddings.weight"
    for runner in (peft_runner, conv_runner, head_runner):
        assert dict(runner.module.named_parameters())[word] is dict(base.named_parameters())[word]
        bench.train_step(runner, data)
    query = "deberta.encoder.layer.0.attention.self.query_proj"
    assert isinstance(conv_runner.module.get_submodule(query).base, Conv1D)
    assert type(peft_runner.module.get_submodule(query)).__name__ == "DcftLinear"
    assert dict(head_runner.method.own_parameters(head_runner.module)) == {}
    for n, p in base.named_parameters():  # the shared backbone never moved
        torch.testing.assert_close(p, before[n], rtol=0, atol=0, msg=n)


def test_shapes_choose_the_dcft_rows(tmp_path):
    out = bench.main([*TINY, "--shapes", "4:4,8:2", "--only", "dcft-k4s4-fast,dcft-k8s2-fast", "--no-inference",
                      "--out", str(tmp_path / "b.json")])
    dcft_rows = sorted((r["kernel"], r["stride"]) for r in out["rows"] if r["method"] == "dcft")
    assert dcft_rows == [(4, 4), (8, 2)]
    with pytest.raises(SystemExit, match="'8:9' is not kernel:stride"):
        bench.main([*TINY, "--shapes", "8:9"])
