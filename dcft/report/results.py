"""One self-describing `result.json` per run, written atomically, and loading them all.

A result file holds: `status` (`running`, `completed`, `failed` with `error`), the resolved
config, the group choices (model/task/method/preset), metrics (best with its step, final, the
full evaluation history), parameter counts (method's own, head, total), wall times, optimizer
steps per second, peak memory, device, precision, library versions and the git commit.

    import dcft.report.results as R; df = R.load_all()          # every run under results/runs
    pd.json_normalize([json.load(open(p)) for p in Path("results/runs").rglob("result.json")])
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import IO, Any, Callable

from dcft import conditions, units
from dcft.harness.identity import config_hash
from dcft.report.selection import SEED_KEY, condition_key, describe_differences, differing_keys, identity_facts
from dcft.harness.versions import lock_warning

RESULT_FILE = "result.json"
SCHEMA_VERSION = 1
_PACKAGES = ("torch", "transformers", "accelerate", "peft", "datasets", "hydra-core", "omegaconf", "numpy",
             "scikit-learn", "scipy")


def current_umask() -> int:
    """The process's file-creation mask, read without changing it where Linux allows
    (`/proc/self/status`); elsewhere set and restored at once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a file so that a reader sees the old file or the new one, never half: `write` fills a
    temporary file in the same folder, which is flushed to disk, then renamed over `path`. The file
    gets the mode a plain `open()` would give (0666 less the umask: 0644 usually), so colleagues
    on a shared machine can read results and checkpoints."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600; give what open() would (0644 at umask 022)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def share_files(folder: str | Path) -> list[Path]:
    """Give files under `folder` that a library created private (mode 0600, e.g. safetensors'
    `save_file`) the mode a plain `open()` gives (0644 at umask 022); returns those changed."""
    mode = 0o666 & ~current_umask()
    changed = []
    for p in Path(folder).rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and (p.stat().st_mode & 0o777) == 0o600 and mode != 0o600:
                os.chmod(p, mode)
                changed.append(p)
        except OSError:
            continue
    return changed


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _jsonable(obj: Any) -> Any:
    """Plain JSON values; non-finite floats become null (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _jsonable(obj.item())
    return obj


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """`atomic_write_text` of `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_result(run_dir: str | Path) -> dict | None:
    """The result of a run folder, or None if there is none (or it is unreadable)."""
    p = Path(run_dir) / RESULT_FILE
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on, and Python's."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in _PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_commit(cwd: str | Path | None = None) -> dict[str, Any]:
    """The repository's commit and whether the work tree had uncommitted changes."""
    cwd = cwd or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty if sha else None}


def cpu_model() -> str | None:
    """The CPU's model name (Linux `/proc/cpuinfo`), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def gpu_name() -> str | None:
    """The name of the first visible CUDA device, or None."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def environment() -> dict[str, Any]:
    """Where a run ran: host, hardware, platform, command line, versions, commit."""
    return {"host": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": gpu_name(),
            "platform": platform.platform(), "argv": sys.argv, "versions": library_versions(), "git": git_commit()}


def load_all(root: str | Path = "results/runs", completed_only: bool = False):
    """Every result file under `root` as one flat `pandas.DataFrame` (nested keys joined by '.'),
    with the folder of each run in `run_dir`."""
    import pandas as pd

    rows = []
    for p in sorted(Path(root).rglob(RESULT_FILE)):
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            warnings.warn(f"skipping unreadable result file {p}: {e}")
            continue
        rec["run_dir"] = str(p.parent)
        rows.append(rec)
    df = pd.json_normalize(rows) if rows else pd.DataFrame()
    if completed_only and not df.empty:
        df = df[df["status"] == "completed"].reset_index(drop=True)
    return df


# --- reading one result ---------------------------------------------------------------------------
def _fmt_num(v: Any, spec: str = ".4f") -> str:
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def summary(rec: dict) -> str:
    """A readable end-of-run summary of a result record: what ran (model, task, method and its
    setting, seed, preset and its file, learning rate, smoke or not), parameter counts, best and
    final scores, optimizer steps and epochs, times, where the result, log and adapter are, and a warning
    when the run's library versions (else the installed ones) differ from the lock (`dcft.harness.versions`)."""
    cfg, m = rec.get("config") or {}, rec.get("metrics") or {}
    best = m.get("best") or {}
    p, t = rec.get("params") or {}, rec.get("train") or {}
    choices = rec.get("choices") or {}
    method = cfg.get("method") or {}
    tcfg = cfg.get("train") or {}
    setting = (f"kernel={method['kernel']} stride={method.get('stride') or method['kernel']} "
               if "kernel" in method else "")
    smoke = " [SMOKE: debug=smoke, a few steps on a few examples, not a result]" if choices.get("debug") == "smoke" else ""
    preset = choices.get("preset", "-")
    files = [f for f in (rec.get("hp_sources") or {}).values() if f]
    lines = [
        f"== {(cfg.get('model') or {}).get('name')} / {(cfg.get('task') or {}).get('name')} / {method.get('name')} "
        f"{setting}targets={method.get('targets', '-')} seed={cfg.get('seed')}: {rec.get('status')}{smoke}",
        f"   preset {preset} ({', '.join(files) if files else 'no preset file: conf/config.yaml defaults'})  "
        f"lr {_fmt_num(tcfg.get('lr'), '.3g')}  batch {tcfg.get('batch_size', '-')}  max_len {tcfg.get('max_len', '-')}",
        f"   params: method {p.get('method', 0):,}  head {p.get('head', 0):,}  total {p.get('total', 0):,}",
    ]
    if best:
        lines.extend(score_lines(rec))
    if t:
        loss = (f"  final loss {_fmt_num(t.get('final_task_loss'))} task"
                + (f" + {_fmt_num(t['final_loss'] - t['final_task_loss'])} regulariser"
                   if isinstance(t.get("final_loss"), float) and isinstance(t.get("final_task_loss"), float)
                   and t["final_loss"] != t["final_task_loss"] else "")) if t.get("final_task_loss") is not None else ""
        lines.append(f"   trained {t.get('steps')} optimizer steps, {t.get('epochs')} full epoch(s){loss}")
        lines.append(f"   time: train {_fmt_num(t.get('train_time_s', 0), '.1f')}s  eval "
                     f"{_fmt_num(t.get('eval_time_s', 0), '.1f')}s  {_fmt_num(t.get('steps_per_s') or 0, '.2f')} steps/s"
                     f"  ({conditions.describe(rec.get('machine'))})")
    if rec.get("error"):
        lines.append(f"   error: {rec['error']['type']}: {rec['error']['message']}")
    run_dir = Path(rec.get("run_dir") or ".")
    kept = [f for f in (RESULT_FILE, "log.jsonl", "run.log", "tracking") if (run_dir / f).exists()]
    lines.append(f"   folder: {run_dir}" + (f"  ({', '.join(kept)})" if kept else ""))
    adapter = rec.get("adapter")
    if isinstance(adapter, dict) and adapter.get("dir"):
        kinds = [k for k in ("best", "final") if k in adapter]
        lines.append(f"   adapter saved to: {run_dir / str(adapter['dir'])}" + (f" ({', '.join(kinds)})" if kinds else ""))
    elif isinstance(adapter, dict) and adapter.get("reason"):
        lines.append(f"   adapter: not saved ({adapter['reason']})")
    lines += filter(None, [lock_warning((rec.get("environment") or {}).get("versions"))])  # versions other than the lock's
    return "\n".join(lines)


def score_lines(rec: dict) -> list[str]:
    """The summary's score lines: best and final metrics as a person reads them (x100 for GLUE, each
    set named: dev or held-out, `dcft.units`), which one picked the best step, and the chance level of
    the task with a warning when the run's score is at or below it (`at_or_below_chance`)."""
    cfg, m = rec.get("config") or {}, rec.get("metrics") or {}
    task = (cfg.get("task") or {}).get("name")
    best, final = m.get("best") or {}, m.get("final") or {}
    keys = [k for k in best if "/" in k and isinstance(best[k], (int, float))]
    holdout = (cfg.get("data") or {}).get("holdout")
    picked = dev_score_key(task, holdout)
    by = f"  [best step picked by {units.key_name(dev_key(task) if picked == 'score' else _selection_key(task))}]"
    lines = [f"   best (step {best.get('step')}): " + "  ".join(units.shown(task, k, best[k]) for k in keys) + by,
             f"   final (step {final.get('step')}): " + "  ".join(units.shown(task, k, final[k]) for k in keys
                                                               if isinstance(final.get(k), (int, float)))]
    chance = {k: v for k, v in (rec.get("baseline") or {}).items() if k in keys}
    if chance:
        lines.append("   chance level: " + "  ".join(units.shown(task, k, v) for k, v in chance.items())
                     + " (the evaluated set's majority class; MCC and correlations 0)")
    below = at_or_below_chance(rec)
    if below:
        lines.append("   WARNING: at or below chance: " + ", ".join(
            f"{units.shown(task, k, best[k])} (chance {units.shown(task, k, rec['baseline'][k]).rpartition(' ')[2]})"
            for k in below) + ": the run has not learned the task")
    return lines


def _selection_key(task: Any) -> str:
    return f"holdout/{score_metric(task)}"


def at_or_below_chance(rec: dict) -> list[str]:
    """The main-metric keys (dev, and the held-out slice) whose best score is at or below the run's
    recorded chance level (`result.json`'s `baseline`)."""
    cfg = rec.get("config") or {}
    task = (cfg.get("task") or {}).get("name")
    best, chance = (rec.get("metrics") or {}).get("best") or {}, rec.get("baseline") or {}
    keys = [dev_key(task), _selection_key(task)]
    return [k for k in keys if isinstance(best.get(k), (int, float)) and isinstance(chance.get(k), (int, float))
            and best[k] <= chance[k] + 1e-12]


# --- the tidy view and the compact comparison (`python -m dcft.report.results`) ------------------------------
# Tidy column -> where it comes from in the flat view of `load_all` (first present key wins).
TIDY_SOURCES: dict[str, tuple[str, ...]] = {
    "run_dir": ("run_dir",),                                  # the run's folder
    "status": ("status",),                                    # completed | running | failed
    "model": ("config.model.name", "choices.model"),          # backbone
    "task": ("config.task.name", "choices.task"),             # GLUE task or SQuAD version
    "method": ("config.method.name", "choices.method"),       # fine-tuning method
    "preset": ("choices.preset",),                            # hyperparameter source (authors, paper, cpu, none)
    "debug": ("choices.debug",),                              # debug profile (smoke) or empty
    "seed": ("config.seed",),                                 # random seed
    "kernel": ("config.method.kernel",),                      # DCFT kernel size d
    "stride": ("config.method.stride",),                      # DCFT stride s (null in the config = kernel)
    "rank": ("config.method.rank",),                          # DCFT subspace rank
    "r": ("config.method.r",),                                # LoRA / SoRA rank; DCFT: scaling denominator
    "init_r": ("config.method.init_r",),                      # AdaLoRA initial rank
    "target_r": ("config.method.target_r",),                  # AdaLoRA final average rank
    "bottleneck": ("config.method.bottleneck",),              # adapter bottleneck width
    "targets": ("config.method.targets",),                    # target matrices
    "init": ("config.method.init",),                          # DCFT initialisation (normal: the authors')
    "lr": ("config.train.lr",),                               # peak learning rate
    "batch_size": ("config.train.batch_size",),               # examples per device per micro-batch
    "max_len": ("config.train.max_len",),                     # tokens
    "score": ("metrics.best.score",),                         # dev score at the best step (main metric, result-file scale)
    "selection_score": ("metrics.best.score",),               # the score that picked the best step: dev, or held-out
    "holdout": ("config.data.holdout",),                      # fraction of train held out for selection (0: none)
    "best_step": ("metrics.best.step",),                      # optimizer step of the best (selection) score
    "final_score": ("metrics.final.score",),                  # dev score at the end
    "params_method": ("params.method",),                      # the method's own trainable parameters (paper's #Params)
    "params_head": ("params.head",),                          # classifier / QA head parameters
    "params_total": ("params.total",),                        # all parameters of the model
    "steps": ("train.steps",),                                # optimizer steps done
    "epochs": ("train.epochs",),                              # full passes over the training set
    "final_loss": ("train.final_loss",),                      # objective of the last logged window
    "final_task_loss": ("train.final_task_loss",),            # task loss alone, same window
    "train_time_s": ("train.train_time_s",),                  # training loop time, evaluation excluded, seconds
    "eval_time_s": ("train.eval_time_s",),                    # evaluation time, seconds
    "steps_per_s": ("train.steps_per_s",),                    # optimizer steps per second of training time
    "wall_time_s": ("wall_time_s",),                          # whole run, loading included, seconds
    "cpu_time_s": ("machine.cpu_time_s",),                    # process CPU seconds over the run (all threads)
    "torch_threads": ("machine.torch_threads",),              # torch intra-op threads
    "load_start": ("machine.load_start",),                    # machine load averages (1, 5, 15 min) at the start
    "load_end": ("machine.load_end",),                        # ... and at the end
    "other_cores": ("machine.other_cores",),                  # cores other work kept busy over the run (Linux)
    "time_condition": (),                                     # idle | loaded | unknown (dcft.conditions' rule)
    "hardware": (),                                           # GPU name, else CPU model: what the time was measured on
    "chance": (),                                             # chance level of the dev score (result-file scale)
    "peak_memory_bytes": ("memory.bytes",),                   # CUDA allocator peak or CPU peak RSS
    "device": ("device",),                                    # cpu, cuda:0 ...
    "processes": ("processes",),                              # Accelerate processes
    "gpu": ("environment.gpu",),                              # GPU name or empty
    "cpu": ("environment.cpu",),                              # CPU model
    "host": ("environment.host",),                            # machine name
    "git_commit": ("environment.git.commit",),                # code version
    "finished_at": ("finished_at",),                          # local time the run ended
    "error": ("error.message",),                              # why a failed run failed
}
SETTING_KEYS = {"dcft": ("kernel", "stride", "targets", "rank", "init"), "lora": ("r", "targets"), "lorafa": ("r", "targets"),
                "sora": ("r", "targets"), "adalora": ("init_r", "target_r", "targets"),
                "hadapter": ("bottleneck",), "padapter": ("bottleneck",)}  # what tells two runs of a method apart


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def tidy(raw):
    """The tidy view of a `load_all` frame: the `TIDY_SOURCES` columns (a null stride filled
    with the kernel), plus `smoke` (bool), `setting` (e.g. "kernel=8 stride=8 rank=1 targets=all"),
    `facts` (the run's whole identity, `dcft.report.selection.identity_facts`) and `condition` (a short hash of
    that identity without the seed: runs that differ only in their seed share it)."""
    import pandas as pd

    cols = {}
    for name, keys in TIDY_SOURCES.items():
        col = pd.Series([None] * len(raw), index=raw.index, dtype=object)
        for k in reversed(keys):
            if k in raw:
                col = raw[k].where(raw[k].map(_present), col)
        cols[name] = col
    df = pd.DataFrame(cols)
    _dev_scores(raw, df)
    _measurement_columns(raw, df)
    df["stride"] = df["stride"].where(df["stride"].map(_present), df["kernel"])
    df["smoke"] = df["debug"] == "smoke"
    for k in ("seed", "kernel", "stride", "rank", "r", "init_r", "target_r", "bottleneck", "steps", "epochs",
              "best_step", "params_method", "params_head", "params_total", "batch_size", "max_len", "processes"):
        df[k] = pd.Series([_as_int(v) for v in df[k]], index=df.index, dtype=object)  # json_normalize made them floats
    df["setting"] = [_setting(r) for r in df.to_dict(orient="records")]
    df["facts"] = [identity_facts(r) for r in raw.to_dict(orient="records")]
    df["condition"] = [config_hash(json.loads(condition_key(f, axes=()))) for f in df["facts"]]
    return df


def dev_key(task: Any) -> str:
    """The metrics key of a task's dev score: `<first dev split>/<main metric>` for GLUE (MNLI: matched),
    `validation/f1` for SQuAD."""
    if str(task).startswith("squad"):
        from dcft.tasks.squad import EVAL_NAME

        return f"{EVAL_NAME}/f1"
    from dcft.data.glue import GLUE_TASKS

    spec = GLUE_TASKS.get(str(task))
    return f"{spec.eval_splits[0]}/{spec.main_metric}" if spec is not None else "score"


def dev_score_key(task: Any, holdout: Any) -> str:
    """The key of a run's dev score in its `metrics.best` / `final` / `history` entries: `score` itself
    without a held-out slice, `dev_key(task)` with one (`score` is then the held-out score)."""
    return dev_key(task) if _present(holdout) and float(holdout) > 0 else "score"


def _dev_scores(raw, df) -> None:
    """With a held-out slice (`data.holdout > 0`), a result file's `score` is the held-out score that
    picked the best step (`Task.score`); the run's score is then the dev score at that step (and at the
    end), and the held-out one stays in `selection_score`. Without a holdout both are the dev score."""
    for i in df.index:
        key = dev_score_key(df.at[i, "task"], df.at[i, "holdout"])
        if key == "score":
            continue
        for col, part in (("score", "best"), ("final_score", "final")):
            v = raw.at[i, f"metrics.{part}.{key}"] if f"metrics.{part}.{key}" in raw else None
            df.at[i, col] = v if _present(v) else None


def _measurement_columns(raw, df) -> None:
    """`time_condition` and `hardware` (`dcft.conditions`: what a time was measured under and on) and
    `chance` (the recorded chance level of the run's dev score, `result.json`'s `baseline`)."""
    machine_cols = [c for c in raw.columns if c.startswith("machine.")]
    for i in df.index:
        machine = {c[len("machine."):]: raw.at[i, c] for c in machine_cols if _present_value(raw.at[i, c])}
        df.at[i, "time_condition"] = conditions.condition(machine or None)
        df.at[i, "hardware"] = conditions.hardware(df.at[i, "gpu"], df.at[i, "cpu"])
        col = f"baseline.{dev_key(df.at[i, 'task'])}"
        v = raw.at[i, col] if col in raw else None
        df.at[i, "chance"] = v if _present(v) else _chance_from_files(raw.loc[i])


_CHANCE_CACHE: dict[tuple, float | None] = {}


def _chance_from_files(row) -> float | None:
    """The dev chance level of a GLUE run whose result file predates `baseline`: recomputed from its
    dev file when `data.glue_dir` still holds the very file the run read (same SHA-256), else None."""
    from dcft.data.glue import GLUE_TASKS, load_glue, subsample, tsv_path

    task, glue_dir = row.get("config.task.name"), row.get("config.data.glue_dir")
    spec = GLUE_TASKS.get(str(task))
    if spec is None or not isinstance(glue_dir, str) or not glue_dir:
        return None
    split = spec.eval_splits[0]
    sha = row.get(f"identity.inputs.data.files.{split}.sha256")
    limit, seed = row.get("config.data.limit_eval"), row.get("config.seed")
    key = (str(task), glue_dir, sha, limit if _present(limit) else None, seed)
    if key not in _CHANCE_CACHE:
        _CHANCE_CACHE[key] = None
        path = tsv_path(spec, glue_dir, split)
        try:
            from dcft.harness.identity import file_sha256
            from dcft.tasks.glue import chance_metrics

            if isinstance(sha, str) and path.is_file() and file_sha256(path) == sha:
                ds = load_glue(spec, glue_dir, splits=[split])[split]
                ds = subsample(ds, int(limit) if _present(limit) else None, int(seed) if _present(seed) else 0)
                _CHANCE_CACHE[key] = chance_metrics(spec.name, ds["label"])[spec.main_metric]
        except (OSError, ValueError):
            pass
    return _CHANCE_CACHE[key]


def _present_value(v: Any) -> bool:
    return isinstance(v, (list, tuple)) or _present(v)


def _as_int(v: Any) -> Any:
    if not _present(v):
        return None
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _setting(r: dict[str, Any]) -> str:
    """What tells a run apart from other runs of its method, e.g. "kernel=8 stride=4 targets=all";
    DCFT's subspace rank and initialisation only when they are not the paper's (1, "normal")."""
    keys = [k for k in SETTING_KEYS.get(r["method"], ())
            if not (k == "rank" and r[k] == 1) and not (k == "init" and r[k] == "normal")]
    return " ".join(f"{k}={r[k]}" for k in keys if _present(r[k]))


def _setting_order(g) -> tuple:
    """Numbers in their order (kernel 2 before 12), text after them."""
    first = g.iloc[0]
    keys = SETTING_KEYS.get(first["method"], ())
    return tuple((0, float(first[k]), "") if isinstance(first[k], (int, float)) and _present(first[k])
                 else (1, 0.0, str(first[k])) for k in keys)


def load_tidy(root: str | Path = "results/runs", completed_only: bool = False):
    """`tidy(load_all(root))`: one row per run, a few dozen named columns."""
    return tidy(load_all(root, completed_only=completed_only))


GROUP_KEYS = ("model", "task", "method", "setting", "preset", "lr", "steps", "smoke")  # all but the seed


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """`["task=rte", "method=dcft,lora"]` -> {"task": ["rte"], "method": ["dcft", "lora"]}."""
    out: dict[str, list[str]] = {}
    for it in items:
        key, sep, val = it.partition("=")
        if not sep or not key:
            raise ValueError(f"filter {it!r}: write column=value or column=v1,v2 (e.g. task=rte method=dcft,lora)")
        if key not in TIDY_SOURCES and key not in ("smoke", "setting"):
            raise ValueError(f"filter {it!r}: no column {key!r}; columns: {', '.join(list(TIDY_SOURCES) + ['smoke', 'setting'])}")
        out.setdefault(key, []).extend(v for v in val.split(",") if v != "")
    return out


def _matches(value: Any, wanted: list[str]) -> bool:
    for w in wanted:
        if str(value) == w:
            return True
        try:
            if float(value) == float(w):
                return True
        except (TypeError, ValueError):
            pass
    return False


def compare(df, filters: dict[str, list[str]] | None = None, include: str = "completed"):
    """Runs grouped over seeds: one row per `GROUP_KEYS` and whole identity but the seed (`condition`:
    runs on other data, code, process counts ... are never averaged together) with score mean, std
    (sample; None for one seed), n, the seeds, #Params (method), mean steps, mean training time (s), and
    `differs`: for a row alike in every shown column to a bigger one, the identity keys that set it
    apart. `include`: "completed" (non-smoke completed runs), "smoke" (completed, smoke too) or "all"."""
    import pandas as pd

    for key, wanted in (filters or {}).items():
        df = df[df[key].map(lambda v, w=wanted: _matches(v, w))]
    if include != "all":
        df = df[df["status"] == "completed"]
        if include != "smoke" and not (filters or {}).get("smoke"):
            df = df[~df["smoke"]]
    rows = []
    groups = list(df.groupby([*GROUP_KEYS, "condition"], dropna=False, sort=True))
    shown: dict[tuple, list] = {}  # groups alike in every column shown, apart in their identity
    for key, g in groups:
        shown.setdefault(tuple(map(str, key[:-1])), []).append(g)
    for key, g in groups:
        twins = shown[tuple(map(str, key[:-1]))]
        ref = max(twins, key=len) if len(twins) > 1 else g
        key = key[:-1]
        scores = [float(s) for s in g["score"] if _present(s)]
        times = [float(t) for t in g["train_time_s"] if _present(t)]
        rows.append({"_order": (key[0], key[1], key[2], _setting_order(g), str(key[4]), key[5] or 0, key[6] or 0),
                     **dict(zip(GROUP_KEYS, key)), "metric": score_metric(key[1]),
                     "score_mean": statistics.fmean(scores) if scores else None,
                     "score_std": statistics.stdev(scores) if len(scores) > 1 else None,
                     "n": len(g), "seeds": ",".join(str(s) for s in sorted(g["seed"].dropna())),
                     "params_method": g["params_method"].dropna().iloc[0] if g["params_method"].notna().any() else None,
                     "train_time_s_mean": statistics.fmean(times) if times else None,
                     "statuses": ",".join(sorted(set(map(str, g["status"])))), **_group_measurement(g),
                     "differs": "" if ref is g else "identity: " + describe_differences(
                         differing_keys(g["facts"].iloc[0], ref["facts"].iloc[0], {SEED_KEY}))})
    rows.sort(key=lambda r: r.pop("_order"))
    return pd.DataFrame(rows, columns=list(GROUP_KEYS) + ["metric", "score_mean", "score_std", "n", "seeds", "params_method",
                                                          "train_time_s_mean", "statuses", "time_condition", "hardware",
                                                          "chance", "differs"])


def _group_measurement(g) -> dict[str, Any]:
    """A group's time condition (loaded if any run was, else unknown if any is, else idle), hardware
    (its runs' distinct ones) and chance level."""
    cond = conditions.worst_condition(g["time_condition"] if "time_condition" in g else ())
    hw = " / ".join(sorted(set(g["hardware"]))) if "hardware" in g else "?"
    chance = [float(c) for c in g["chance"] if _present(c)] if "chance" in g else []
    return {"time_condition": cond, "hardware": hw, "chance": chance[0] if chance else None}


def score_metric(task: Any) -> str:
    """The metric a task's `score` is (`Task.score`): SQuAD's F1, each GLUE task's main metric."""
    if str(task).startswith("squad"):
        return "f1"
    from dcft.data.glue import GLUE_TASKS

    spec = GLUE_TASKS.get(str(task))
    return spec.main_metric if spec is not None else "score"


def _score_scale(task: Any) -> float:
    """GLUE scores shown ×100 as in the paper's tables; SQuAD's EM/F1 already are (`dcft.units`)."""
    return units.score_scale(task)


def _fmt_params(n: Any) -> str:
    if not _present(n):
        return "-"
    n = float(n)
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{int(n)}"


CHANCE_MARK = "!"  # after a score at or below its chance level


def _at_or_below_chance(r: dict[str, Any]) -> bool:
    return _present(r.get("score_mean")) and _present(r.get("chance")) and r["score_mean"] <= r["chance"] + 1e-12


def _hardware_letters(table) -> dict[str, str]:
    """A letter per distinct hardware of the table's rows, when there is more than one."""
    hws = list(dict.fromkeys(table["hardware"])) if "hardware" in table else []
    return {hw: chr(ord("A") + i) for i, hw in enumerate(hws)} if len(hws) > 1 else {}


def format_compare(table) -> str:
    """The comparison as an aligned text table: dev score ×100 (GLUE) as mean ± std (n), its chance
    level, #Params, steps, training time in minutes; marks explained by `compare_notes`."""
    if table.empty:
        return "no runs match"
    lines = []
    letters = _hardware_letters(table)
    for r in table.to_dict(orient="records"):
        sc = _score_scale(r["task"])
        score = f"{r['score_mean'] * sc:.2f}" if _present(r["score_mean"]) else "-"
        if _present(r["score_std"]):
            score += f" ± {r['score_std'] * sc:.2f}"
        if _at_or_below_chance(r):
            score += CHANCE_MARK
        name = r["method"] + (" [smoke]" if r["smoke"] else "")
        minutes = f"{r['train_time_s_mean'] / 60:.2f}" if _present(r["train_time_s_mean"]) else "-"
        if minutes != "-":
            minutes += conditions.TIME_MARKS.get(r.get("time_condition"), "?")
        lines.append({"model": r["model"], "task": r["task"], "method": name, "setting": r["setting"] or "-",
                      "preset": r["preset"] or "-", "lr": f"{r['lr']:.3g}" if _present(r["lr"]) else "-",
                      "metric": f"dev {score_metric(r['task'])}", "score": score,
                      "chance": f"{r['chance'] * sc:.2f}" if _present(r.get("chance")) else "-",
                      "n": str(r["n"]), "#Params": _fmt_params(r["params_method"]),
                      "steps": "-" if not _present(r["steps"]) else str(int(r["steps"])),
                      "train min": minutes, **({"hw": letters.get(r["hardware"], "?")} if letters else {}),
                      **({"differs": r["differs"] or "-"} if any(table["differs"]) else {})})
    cols = list(lines[0])
    width = {c: max(len(c), *(len(x[c]) for x in lines)) for c in cols}
    right = {"score", "chance", "n", "#Params", "steps", "train min", "lr"}
    fmt = lambda x: "  ".join(x[c].rjust(width[c]) if c in right else x[c].ljust(width[c]) for c in cols)  # noqa: E731
    out = [fmt({c: c for c in cols}), "  ".join("-" * width[c] for c in cols)] + [fmt(x) for x in lines]
    return "\n".join(s.rstrip() for s in out)


def compare_notes(table) -> list[str]:
    """What the comparison's marks mean, for the lines under it: scores at or below chance, times
    measured under load or without a recorded load, several hardwares (times comparable only between
    unmarked rows on one hardware; `dcft.conditions`)."""
    if table.empty:
        return []
    rows = table.to_dict(orient="records")
    notes = ["score: the dev score at the run's best step (GLUE ×100; mean ± sample std over seeds, n runs); "
             "chance: what always predicting the dev set's majority class scores (MCC and correlations: 0)"]
    below = [r for r in rows if _at_or_below_chance(r)]
    if below:
        notes.append(f"{CHANCE_MARK} at or below chance: {len(below)} row(s) have not learned the task")
    conds = {r.get("time_condition") for r in rows if _present(r.get("train_time_s_mean"))}
    if "loaded" in conds:
        notes.append(f"{conditions.TIME_MARKS['loaded']} {conditions.RULE}")
    if conditions.UNKNOWN in conds:
        notes.append(f"{conditions.TIME_MARKS[conditions.UNKNOWN]} the result file records no machine load: conditions unknown")
    letters = _hardware_letters(table)
    if letters:
        notes.append("hw: " + "; ".join(f"{v} = {k}" for k, v in letters.items()))
    if conds - {"idle"} or letters:
        notes.append("times are comparable only between unmarked rows on one hardware")
    return notes


def _excluded_note(df, filters, include: str) -> str:
    for key, wanted in (filters or {}).items():
        df = df[df[key].map(lambda v, w=wanted: _matches(v, w))]
    if include == "all" or df.empty:
        return ""
    parts = []
    for label, mask in (("failed", df["status"] == "failed"), ("running or interrupted", df["status"] == "running"),
                        ("smoke", (df["status"] == "completed") & df["smoke"] & (include != "smoke"))):
        if mask.sum():
            parts.append(f"{int(mask.sum())} {label}")
    return f"not shown: {', '.join(parts)} (--all shows every run, --smoke adds smoke runs)" if parts else ""


def main(argv: list[str] | None = None) -> int:
    """`python -m dcft.report.results [RUNS] [column=value[,value] ...] [--csv FILE] [--all | --smoke]`."""
    import argparse

    from dcft.harness.console import help_text

    ap = argparse.ArgumentParser(
        prog="python -m dcft.report.results",
        description="Compare runs in one table: completed runs under RUNS grouped over seeds (score mean ± sample "
                    "std and n; GLUE scores ×100), with #Params (the method's own), optimizer steps and "
                    "training time. " + help_text(__doc__),
        epilog="example: python -m dcft.report.results results/cpu-study/runs task=rte method=dcft,lora")
    ap.add_argument("args", nargs="*", help="a runs folder (default results/runs) and filters column=value[,value]")
    ap.add_argument("--csv", metavar="FILE", help="also write the grouped table as CSV (raw numbers; '-' = stdout)")
    ap.add_argument("--tidy-csv", metavar="FILE", help="write the tidy per-run view (one row per run) as CSV")
    ap.add_argument("--all", action="store_true", help="include failed, unfinished and smoke runs")
    ap.add_argument("--smoke", action="store_true", help="include completed smoke runs (debug=smoke)")
    a = ap.parse_args(argv)
    roots = [x for x in a.args if "=" not in x]
    if len(roots) > 1:
        ap.error(f"one runs folder at most, got {roots}")
    root = Path(roots[0] if roots else "results/runs")
    if not root.is_dir():
        if not roots:  # the default folder of a fresh clone
            print(f"no runs yet: {root} does not exist (python run.py ... or make demo writes runs)")
            return 0
        ap.error(f"runs folder {str(root)!r} does not exist")
    try:
        filters = parse_filters([x for x in a.args if "=" in x])
    except ValueError as e:
        ap.error(str(e))
    include = "all" if a.all else "smoke" if a.smoke else "completed"
    df = load_tidy(root)
    if df.empty:
        print(f"no result files under {root}")
        return 0
    table = compare(df, filters, include)
    if a.csv == "-":
        print(table.to_csv(index=False), end="")
        return 0
    print(format_compare(table))
    for line in compare_notes(table):
        print(line)
    note = _excluded_note(df, filters, include)
    if note:
        print(note)
    if a.csv:
        atomic_write_text(a.csv, table.to_csv(index=False))
        print(f"wrote {a.csv}")
    if a.tidy_csv:
        atomic_write_text(a.tidy_csv, df.drop(columns=["facts"]).to_csv(index=False))
        print(f"wrote {a.tidy_csv} ({len(df)} runs, {len(df.columns)} columns)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
