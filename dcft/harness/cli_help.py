"""What `python run.py --help` prints: Hydra's help template (`hydra.help.template` in
conf/config.yaml is `${dcft_help:}`, this module's `help_text`), in place of Hydra's raw dump of
every config group and sweep name.

It shows the main keys with their values and comments as conf/config.yaml writes them (read from
that file, so each comment is written once), the config groups with their options and the comment of
their defaults-list line (the sweep group only as `+sweep=NAME`: its names are listed by
`python -m dcft.harness.sweep list`), and five recipes.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from dcft.harness.config import CONF_DIR, model_preset

# The keys a first run touches, in this order; every key is in conf/config.yaml.
MAIN_KEYS = ("kernel", "stride", "targets", "seed", "output_root", "data.glue_dir", "data.squad_dir",
             "data.limit_train", "data.holdout", "train.lr", "train.batch_size", "train.max_steps", "train.epochs",
             "train.eval_steps", "train.progress", "train.overwrite", "train.checkpoint_steps", "train.device",
             "train.mixed_precision")
# Groups not offered on the command line: filled by the preset, internal schemas, or listed elsewhere.
HIDDEN_GROUPS = ("hp", "method_hp", "sweep", "hydra")
GROUP_ORDER = ("model", "task", "method", "preset", "baseline_hp", "debug", "logger")
RECIPES = (
    ("make demo", "a first result, offline: MiniLM, DCFT against LoRA on a generated SQuAD set"),
    ("python run.py model=minilm task=rte data.glue_dir=DIR",
     "one run on your GLUE folder (DIR/RTE/train.tsv, dev.tsv); model=minilm runs preset=cpu"),
    ("python run.py -m model=minilm task=rte data.glue_dir=DIR method=dcft,lora",
     "DCFT and LoRA, then compare them: python -m dcft.report.results"),
    ("python run.py task=rte method=dcft kernel=8", "the paper's DeBERTaV3-base setting (Hub, a GPU)"),
    ("python run.py +sweep=table4", "a paper table's runs (python -m dcft.harness.sweep plan +sweep=table4: dry run)"),
)
WIDTH = 100
_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")
_DEFAULT = re.compile(r"^\s*-\s+(?:optional\s+)?(?P<group>[\w/]+)(?:@[\w.]+)?:\s*(?P<value>[^#\s]+)\s*(?:#\s?(?P<comment>.*))?$")


def config_comments(path: Path = CONF_DIR / "config.yaml") -> dict[str, tuple[str, str]]:
    """`{dotted key: (value, comment)}` of every key line of a YAML config with a `# comment`
    (outside its defaults list)."""
    out: dict[str, tuple[str, str]] = {}
    stack: list[tuple[int, str]] = []
    in_defaults = False
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("defaults:"):
            in_defaults = True
            continue
        if in_defaults and line.lstrip().startswith("-"):
            continue
        in_defaults = False
        m = _LINE.match(line)
        if not m:
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [m["key"]])
        if m["value"].strip() == "":
            stack.append((indent, m["key"]))
        if m["comment"]:
            out[key] = (m["value"].strip(), m["comment"].strip())
    return out


def group_lines(path: Path = CONF_DIR / "config.yaml", conf_dir: Path = CONF_DIR) -> list[tuple[str, str, list[str], str]]:
    """`(group, default, options, comment)` of each group of the defaults list that a user chooses."""
    out = []
    for line in path.read_text().splitlines():
        m = _DEFAULT.match(line)
        if not m or m["group"] in HIDDEN_GROUPS or m["group"].startswith("/") or "${" in line:
            continue
        folder = conf_dir / m["group"]
        if not folder.is_dir():
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        comment = re.sub(r"^conf/\S+/:\s*", "", (m["comment"] or "").strip())
        out.append((m["group"], m["value"], options, comment))
    return sorted(out, key=lambda g: GROUP_ORDER.index(g[0]) if g[0] in GROUP_ORDER else len(GROUP_ORDER))


def _wrap(head: str, text: str, col: int) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - col) or [""]
    first = head.ljust(col) + lines[0] if len(head) < col else head
    rest = lines[1:] if len(head) < col else lines
    return [first] + [" " * col + x for x in rest]


def help_text() -> str:
    """The whole `python run.py --help` text (`$` doubled: Hydra passes it through `string.Template`)."""
    comments = config_comments()
    out = ["dcft: one run = model x task x method, fine-tuned and evaluated, written to one result folder",
           "(results/runs/<model>/<task>/<method>/<settings>-<hash>/result.json).", "",
           "  python run.py [key=value ...] [group=option ...]       one run",
           "  python run.py -m key=a,b [group=x,y ...]               a sweep: every combination", "",
           "== Main keys (key=value; all keys: conf/config.yaml; composed config: python run.py --cfg job) =="]
    for key in MAIN_KEYS:
        value, comment = comments[key]
        out += _wrap(f"  {key}={value}", comment, 34)
    out += ["", "== Groups (group=option; default first) =="]
    for group, default, options, comment in group_lines():
        others = [o for o in options if o != default]
        choice = f"{group}={default}" + (f" | {' '.join(others)}" if others else "")
        out += _wrap(f"  {group}", choice, 14)
        if group == "model":
            picked = [f"{m} runs preset={p}" for m in options if (p := model_preset(m))]
            comment += (f"; {', '.join(picked)} unless preset= is given" if picked else "")
        out += _wrap("", comment, 16)
    out += _wrap("  +sweep=NAME", "the runs of a paper table or of the CPU study (conf/sweep/): "
                                  "python -m dcft.harness.sweep list names them with their number of runs", 16)
    out += _wrap("  hydra/launcher=slurm", "submit a sweep to SLURM (conf/hydra/launcher/slurm.yaml)", 24)
    out += ["", "== Recipes =="]
    for cmd, what in RECIPES:
        out += [f"  {cmd}", f"      {what}"]
    out += ["", "Compare runs: python -m dcft.report.results [RUNS] [column=value ...]; every make target: make help;",
            "the whole guide: README.md."]
    return "\n".join(out).replace("$", "$$") + "\n"
