"""Tasks the loop can run, chosen by `task.kind` (`glue` or `squad`)."""

from __future__ import annotations

from typing import Any

from dcft.tasks.base import Task, TaskData

KINDS = ("glue", "squad")


def build_task(task_cfg: Any, data_cfg: Any) -> Task:
    """The `Task` for a `task` config (`dcft.harness.config.TaskConf`) and a `data` config."""
    if task_cfg.kind == "glue":
        from dcft.tasks.glue import GlueTask

        return GlueTask(task_cfg.name, glue_dir=data_cfg.glue_dir, holdout=getattr(data_cfg, "holdout", 0.0),
                        pad_to_max_length=getattr(data_cfg, "pad_to_max_length", False))
    if task_cfg.kind == "squad":
        from dcft.tasks.squad import SquadTask

        for key, off in (("holdout", 0.0), ("pad_to_max_length", False)):
            if getattr(data_cfg, key, off) != off:
                raise ValueError(f"data.{key}={getattr(data_cfg, key)!r} is implemented for GLUE tasks only; "
                                 f"task={task_cfg.name} needs data.{key}={off}")
        version = {"squad": "v1", "squad_v2": "v2"}.get(task_cfg.name)
        if version is None:
            raise ValueError(f"task={task_cfg.name!r} is not a SQuAD task; valid: squad, squad_v2")
        return SquadTask(version=version, squad_dir=data_cfg.squad_dir, doc_stride=task_cfg.doc_stride,
                         n_best=task_cfg.n_best, max_answer_length=task_cfg.max_answer_length,
                         null_threshold=task_cfg.null_threshold)
    raise ValueError(f"task.kind={task_cfg.kind!r}; valid: {', '.join(KINDS)}")


__all__ = ["Task", "TaskData", "build_task"]
