"""Entry point: compose a config with Hydra and run it (see README.md and conf/config.yaml).

    python run.py task=rte method=dcft kernel=8
    python run.py -m task=rte,mrpc method=dcft kernel=2,4,8 stride=1,2,8
    accelerate launch --num_processes 2 run.py task=rte method=dcft
"""

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dcft.config import register

register()
log = logging.getLogger("dcft")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from dcft.experiment import run

    hc = HydraConfig.get()
    try:
        run(cfg, hc.runtime.output_dir, choices=dict(hc.runtime.choices))
    except Exception as e:
        if hc.mode != RunMode.MULTIRUN:
            raise
        # In a sweep, one failed point (its result.json says why) must not stop the others.
        log.error("run %s failed: %s: %s", hc.runtime.output_dir, type(e).__name__, e)


if __name__ == "__main__":
    main()
