"""Give run folders written before run identities existed (no `identity` in result.json) the folder
name and effective configuration the harness now uses, so a relaunch of the same command reuses
them instead of training again. Says what it changed, run by run; `--dry-run` changes nothing.

    python scripts/migrate_runs.py results/cpu-study/runs --dry-run
    python scripts/migrate_runs.py results/cpu-study/runs

For each old run: the command's overrides (`.hydra/overrides.yaml`) are composed with today's
configs; the run is migrated only if every setting the old result recorded composes to the same
value today (otherwise it is left where it is, and the keys that now compose differently are
printed: the command means another run today). Keys the old config did not have are listed as
"assumed" with today's default. The inputs (data files, model files) are fingerprinted now, at
migration, from the paths the run used — the script says so in the result (`migrated`); code
revisions are 1, the revision of every method and of the loop before run identities existed.
The folder is moved to its new name and `result.json` gains `identity`, `hp_sources` (the preset
file its choices name), the new `run_dir` and `migrated` (from, at, assumed keys); nothing else in it
changes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DROP = ("train.overwrite", "train.progress", "output_root", "hydra")  # launch details, not the run


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from dcft.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def _hp_sources(choices):
    from dcft.reuse import hp_sources

    try:
        return hp_sources(choices)
    except ValueError:  # the preset had no file: the run used the generic defaults
        return {k: None for k in (choices or {}) if k.split("@")[0] == "hp"}


def migrate_one(result_path: Path, output_root: Path, dry_run: bool) -> str:
    from dcft import identity
    from dcft.experiment import precheck
    from dcft.results import atomic_write_json

    old_dir = result_path.parent
    rec = json.loads(result_path.read_text(encoding="utf-8"))
    if "identity" in rec:
        return f"skip     {old_dir}: already has an identity"
    over_file = old_dir / ".hydra" / "overrides.yaml"
    if not over_file.exists():
        return f"skip     {old_dir}: no .hydra/overrides.yaml to recompose the command from"
    overrides = [o for o in yaml.safe_load(over_file.read_text()) if not o.split("=")[0].lstrip("+~") in DROP]
    cfg = compose(overrides)
    new = OmegaConf.to_container(cfg, resolve=True)
    old_declared = identity.declared_config(rec.get("config") or {})
    new_declared = identity.declared_config(new)
    old_flat, new_flat = identity.flatten(old_declared), identity.flatten(new_declared)
    changed = [f"{k}: recorded {old_flat[k]!r}, composes today to {new_flat.get(k, '(absent)')!r}"
               for k in old_flat if old_flat[k] != new_flat.get(k, "(absent)")]
    if changed:
        return f"left     {old_dir}: the command composes to another run today: " + "; ".join(changed)
    assumed = {k: v for k, v in new_flat.items() if k not in old_flat}
    from dcft.methods import method_class

    revision = method_class(new_declared["method"]["name"]).revision
    if revision != 1:
        return (f"left     {old_dir}: method {new_declared['method']['name']} is at revision {revision} today; "
                f"this run was made by revision 1, which today's config cannot describe")
    try:
        method, task = precheck(cfg)
        ident = identity.effective_config(new, task, method_revision=1)
    except Exception as e:  # noqa: BLE001 - an input that is not there now cannot be fingerprinted
        return f"left     {old_dir}: its inputs cannot be fingerprinted now ({type(e).__name__}: {e})"
    ident["code"] = {"loop": 1, "method": 1}
    new_dir = output_root / identity.run_subdir(new_declared)
    if new_dir.exists():
        return f"left     {old_dir}: {new_dir} exists already (a second copy of this run?)"
    if dry_run:
        return f"would    {old_dir} -> {new_dir}" + (f" (assumed {assumed})" if assumed else "")
    new_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(old_dir), str(new_dir))
    rec.setdefault("hp_sources", _hp_sources(rec.get("choices")))
    rec.update(identity=ident, run_dir=str(new_dir),
               migrated={"from": str(old_dir), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "assumed": assumed,
                         "note": "inputs fingerprinted at migration from the paths the run used; code revisions 1"})
    atomic_write_json(new_dir / "result.json", rec)
    for parent in old_dir.parents:  # remove the old folder's parents this left empty
        if parent == output_root or output_root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break
    return f"moved    {old_dir} -> {new_dir}" + (f" (assumed {assumed})" if assumed else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", help="folder of run folders (an output_root), e.g. results/cpu-study/runs")
    ap.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    args = ap.parse_args(argv)
    root = Path(args.runs)
    lines = [migrate_one(p, root, args.dry_run) for p in sorted(root.rglob("result.json"))]
    for line in lines:
        print(line)
    kinds = [ln.split()[0] for ln in lines]
    print(f"{len(lines)} result files: " + ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
