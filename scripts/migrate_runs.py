"""Give run folders written before run identities existed (no `identity` in result.json) the folder
name and effective configuration the harness now uses, so a relaunch of the same command reuses
them instead of training again. Says what it changed, run by run; `--dry-run` changes nothing.

    python scripts/migrate_runs.py results/cpu-study/runs --dry-run
    python scripts/migrate_runs.py results/cpu-study/runs

For each old run: the command's overrides (`.hydra/overrides.yaml`) are composed with today's
configs; the run is migrated only if every setting the old result recorded composes to the same
value today (otherwise it is left where it is, and the keys that now compose differently are
printed: the command means another run today). A key the old config did not have is given the
value that reproduces what the harness did before the key existed (`dcft.harness.identity.BEFORE_KEY_EXISTED`:
no held-out slice, padding per batch, plain shuffling), never today's default, and listed as
"assumed"; `launch.processes` and `launch.device` come from the result's own record (`processes`,
`device`). A run lacking any other key is left where it is (what it did is not known). So a
migrated run is the run it was: a dev-selected, plainly shuffled old run keeps `data.holdout: 0.0`
even where today's preset holds out a slice, and a relaunch of its command today is another run.
The inputs (data files, model files) are fingerprinted now, at migration, from the paths the run
used — the script says so in the result (`migrated`); code revisions are 1, the revision of every
method and of the loop before run identities existed; library versions are those the result
recorded. The folder is moved to its new name and `result.json` gains `identity`, `hp_sources` (the
preset file its choices name), the new `run_dir` and `migrated` (from, at, assumed keys); nothing
else in it changes.
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

    from dcft.harness.config import register

    register()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def _hp_sources(choices):
    from dcft.harness.reuse import hp_sources

    try:
        return hp_sources(choices)
    except ValueError:  # the preset had no file: the run used the generic defaults
        return {k: None for k in (choices or {}) if k.split("@")[0] == "hp"}


def _device_kind(device: str | None) -> str | None:
    return str(device).split(":")[0] if device else None


def as_run_made(rec: dict, today: dict) -> tuple[dict, dict, list[str]]:
    """The resolved config of an old run as today's harness spells it: `today` (its command composed
    now) with every key the old config lacked set to the behaviour before that key existed, and
    `launch.*` from the result's record. Returns (config, assumed {key: value}, keys whose old
    behaviour is unknown)."""
    from dcft.harness import identity

    old_flat = identity.flatten(identity.declared_config(rec.get("config") or {}))
    made = json.loads(json.dumps(today))
    made["launch"] = {"processes": rec.get("processes"), "device": _device_kind(rec.get("device"))}
    assumed, unknown = {}, []
    for key in identity.flatten(identity.declared_config(today)):
        if key in old_flat or key.startswith("launch."):
            continue
        if key not in identity.BEFORE_KEY_EXISTED:
            unknown.append(key)
            continue
        assumed[key] = identity.BEFORE_KEY_EXISTED[key]
        node = made
        *parents, last = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = assumed[key]
    unknown += [f"launch.{k} (the result records no {'processes' if k == 'processes' else 'device'})"
                for k, v in made["launch"].items() if v is None]
    return made, assumed, unknown


def migrate_one(result_path: Path, output_root: Path, dry_run: bool) -> str:
    from dcft.harness import identity
    from dcft.harness.experiment import precheck
    from dcft.report.results import atomic_write_json

    old_dir = result_path.parent
    rec = json.loads(result_path.read_text(encoding="utf-8"))
    if "identity" in rec:
        return f"skip     {old_dir}: already has an identity"
    over_file = old_dir / ".hydra" / "overrides.yaml"
    if not over_file.exists():
        return f"skip     {old_dir}: no .hydra/overrides.yaml to recompose the command from"
    overrides = [o for o in yaml.safe_load(over_file.read_text()) if not o.split("=")[0].lstrip("+~") in DROP]
    today = OmegaConf.to_container(compose(overrides), resolve=True)
    made, assumed, unknown = as_run_made(rec, today)
    if unknown:
        return (f"left     {old_dir}: its result lacks {', '.join(unknown)}; what the harness did before "
                f"{'that key' if len(unknown) == 1 else 'those keys'} existed is not known")
    old_flat = identity.flatten(identity.declared_config(rec.get("config") or {}))
    new_declared = identity.declared_config(made)
    new_flat = identity.flatten(new_declared)
    changed = [f"{k}: recorded {old_flat[k]!r}, composes today to {new_flat.get(k, '(absent)')!r}"
               for k in old_flat if old_flat[k] != new_flat.get(k, "(absent)")]
    if changed:
        return f"left     {old_dir}: the command composes to another run today: " + "; ".join(changed)
    from dcft.methods import method_class

    revision = method_class(new_declared["method"]["name"]).revision
    if revision != 1 or identity.CODE_REVISION != 1:
        what = (f"method {new_declared['method']['name']} is" if revision != 1 else "the training loop is")
        return (f"left     {old_dir}: {what} at revision {max(revision, identity.CODE_REVISION)} today; "
                f"this run was made by revision 1, which today's code cannot describe")
    try:
        method, task = precheck(OmegaConf.create(made))
        ident = identity.effective_config(made, task, method_revision=1)
    except Exception as e:  # noqa: BLE001 - an input that is not there now cannot be fingerprinted
        return f"left     {old_dir}: its inputs cannot be fingerprinted now ({type(e).__name__}: {e})"
    ident["code"] = {"loop": 1, "method": 1}
    ident["versions"] = identity.versions_of((rec.get("environment") or {}).get("versions"))
    new_dir = output_root / identity.run_subdir(ident["declared"])
    said = f" (assumed, as before the key existed: {assumed})" if assumed else ""
    if new_dir.exists():
        return f"left     {old_dir}: {new_dir} exists already (a second copy of this run?)"
    if dry_run:
        return f"would    {old_dir} -> {new_dir}{said}"
    new_dir.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(old_dir), str(new_dir))
    rec.setdefault("hp_sources", _hp_sources(rec.get("choices")))
    rec.update(identity=ident, run_dir=str(new_dir),
               migrated={"from": str(old_dir), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "assumed": assumed,
                         "note": "inputs fingerprinted at migration from the paths the run used; code revisions 1; "
                                 "keys the old config lacked set to the behaviour before they existed"})
    atomic_write_json(new_dir / "result.json", rec)
    for parent in old_dir.parents:  # remove the old folder's parents this left empty
        if parent == output_root or output_root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break
    return f"moved    {old_dir} -> {new_dir}{said}"


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
