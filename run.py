"""Entry point: compose a config with Hydra and run it (see README.md and conf/config.yaml).

    python run.py task=rte method=dcft kernel=8
    python run.py -m task=rte,mrpc method=dcft kernel=2,4,8 stride=1,2,8
    accelerate launch --num_processes 2 run.py task=rte method=dcft

A user error prints one line and exits 1 (HYDRA_FULL_ERROR=1 shows the traceback); in a sweep each
job's outcome goes to the end-of-sweep summary (`dcft.harness.sweep.SweepReport`) instead.
"""

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dcft.harness.config import register, unknown_key_hint

register()
log = logging.getLogger("dcft")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> dict:
    from dcft.harness.experiment import run
    from dcft.harness.reuse import RunRefused

    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    try:
        rec = run(cfg, run_dir, choices=dict(hc.runtime.choices),
                  overridden=[o.split("=", 1)[0] for o in hc.overrides.task])
        return {"run_dir": run_dir, "outcome": rec["outcome"]}
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
        if hc.mode == RunMode.MULTIRUN:  # one failed point must not stop the others
            log.error("run %s: %s", run_dir, reason)
            return {"run_dir": run_dir, "outcome": "refused" if isinstance(e, RunRefused) else "failed",
                    "reason": reason.splitlines()[0]}
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    hint = unknown_key_hint(sys.argv[1:])
    if hint:
        print(f"error: {hint}", file=sys.stderr)
        sys.exit(2)
    main()
