"""The conditions a run's times were measured under, and which times may be compared.

A result file records (`machine`): the process's CPU time over the run (user + system seconds of
all its threads, `time.process_time`), torch's intra-op threads, the number of cores, and the
machine's load averages (1, 5, 15 minutes; `os.getloadavg`) when the run started and when it ended.
None of it is part of a run's identity: it describes the measurement, not the computation.

**Loaded** (the rule every report applies, `loaded`): a time is marked as measured under load when
other work kept more than half the machine's cores busy (`LOADED_FRACTION`) on average over the run:

* where the kernel counts busy CPU time (Linux `/proc/stat`), other work's cores = (the machine's busy
  CPU seconds over the run - the run's own CPU seconds x its processes on this machine) / wall seconds,
  recorded as `other_cores`: a direct measure, blind to the run that ran just before;
* elsewhere (and in files written before `other_cores`), the 1-minute load average at the start (the
  run has barely begun, so the load is other work's) and at the end less the run's own use (its CPU
  seconds over its wall seconds, times its processes). The load average lags by about a minute, so a
  run that starts right after another one reads as loaded by this fallback.

Times of loaded runs, of runs whose result files do not record the load (older files), and of runs
on different hardware are not comparable with each other: tables mark them, and no ratio is printed
between them (`comparable`). Hardware is the GPU's name, else the CPU's model name.
"""

from __future__ import annotations

import numbers
import os
import time
from typing import Any, Iterable, Mapping

LOADED_FRACTION = 0.5  # other work above this fraction of the cores = measured under load
RULE = (f"measured under load: other work kept more than {LOADED_FRACTION:g} x the cores busy over the run (the "
        "machine's busy CPU seconds less the run's own, per wall second; where not recorded, the 1-minute load "
        "average at the start or, less the run's own use, at the end)")
UNKNOWN = "unknown"  # the result file records no load (written before it was recorded)


def snapshot() -> dict[str, Any]:
    """The process and machine now: CPU seconds so far, load averages, torch threads, cores."""
    import torch

    return {"cpu_time_s": time.process_time(), "wall_s": time.perf_counter(), "load_avg": load_average(),
            "busy_cpu_s": busy_cpu_seconds(), "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def busy_cpu_seconds(stat: str = "/proc/stat") -> float | None:
    """Seconds all cores together have spent busy since boot (user, nice, system, irq, softirq, steal of
    the kernel's `cpu` line), or None where the kernel does not count them (not Linux)."""
    try:
        with open(stat, encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields))  # not idle (3), iowait (4)
    return busy / ticks


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15-minute load averages, or None where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return None


def machine_record(start: Mapping[str, Any], end: Mapping[str, Any] | None = None,
                   processes: int = 1) -> dict[str, Any]:
    """`result.json`'s `machine` section from a start and (once the run is over) an end `snapshot`."""
    rec = {"cpu_count": start["cpu_count"], "torch_threads": start["torch_threads"], "processes": processes,
           "load_start": start["load_avg"]}
    if end is not None:
        cpu, wall = end["cpu_time_s"] - start["cpu_time_s"], end["wall_s"] - start["wall_s"]
        rec.update(cpu_time_s=round(cpu, 2), wall_s=round(wall, 2), load_end=end["load_avg"])
        busy = [x.get("busy_cpu_s") for x in (start, end)]
        if None not in busy and wall > 0:
            rec["other_cores"] = round(max(0.0, (busy[1] - busy[0] - cpu * processes) / wall), 2)
    return rec


def loaded(machine: Mapping[str, Any] | None) -> bool | str:
    """Whether a run's times were measured under load (the module's rule): True, False, or `UNKNOWN`
    when the result file does not record the load."""
    machine = machine or {}
    start, end, cores = machine.get("load_start"), machine.get("load_end"), _number(machine.get("cpu_count"))
    other = _number(machine.get("other_cores"))
    if other is not None and cores:
        return other > LOADED_FRACTION * cores
    if not isinstance(start, (list, tuple)) or not start or not cores:
        return UNKNOWN
    limit = LOADED_FRACTION * cores
    if start[0] > limit:
        return True
    wall, cpu = _number(machine.get("wall_s")), _number(machine.get("cpu_time_s"))
    if not isinstance(end, (list, tuple)) or not end or not wall or cpu is None:
        return UNKNOWN  # the run did not finish recording
    own = cpu / wall * max(1, int(_number(machine.get("processes")) or 1))
    return end[0] - own > limit


def _number(v: Any) -> float | None:
    """A recorded number, or None (absent, NaN from a table of runs, not a number)."""
    return float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v else None  # numpy too


def condition(machine: Mapping[str, Any] | None) -> str:
    """"idle", "loaded" or "unknown": the time-measurement condition of one run."""
    state = loaded(machine)
    return UNKNOWN if state == UNKNOWN else "loaded" if state else "idle"


TIME_MARKS = {"loaded": "*", UNKNOWN: "?", "idle": ""}  # after a time: measured under load / load not recorded


def worst_condition(conds: Iterable[str]) -> str:
    """Of several runs' time conditions: loaded if any was, else unknown if any is (or none is known), else idle."""
    conds = set(conds)
    return "loaded" if "loaded" in conds else UNKNOWN if UNKNOWN in conds or not conds else "idle"


def hardware(gpu: Any, cpu: Any) -> str:
    """What a time was measured on: the GPU's name, else the CPU's model name ("?" when not recorded)."""
    for v in (gpu, cpu):
        if isinstance(v, str) and v:
            return v
    return "?"


def comparable(conditions: Iterable[str], hardwares: Iterable[str]) -> bool:
    """Whether times may be compared (a ratio printed): every run idle, all on one piece of hardware."""
    conditions, hardwares = list(conditions), set(hardwares)
    return bool(conditions) and all(c == "idle" for c in conditions) and len(hardwares) == 1 and "?" not in hardwares


def describe(machine: Mapping[str, Any] | None) -> str:
    """One line for a run summary: CPU time, threads, load at start and end, and the verdict."""
    if not machine:
        return "machine load not recorded"
    parts = []
    if machine.get("cpu_time_s") is not None:
        parts.append(f"CPU {machine['cpu_time_s']:.1f}s")
    parts.append(f"{machine.get('torch_threads')} threads on {machine.get('cpu_count')} cores")
    if _number(machine.get("other_cores")) is not None:
        parts.append(f"other work {machine['other_cores']:.2f} cores busy")
    load = [f"{k} {machine[f'load_{k}'][0]:.2f}" for k in ("start", "end") if machine.get(f"load_{k}")]
    if load:
        parts.append("load " + ", ".join(load))
    verdict = condition(machine)
    note = {"loaded": "times measured UNDER LOAD (not comparable with idle runs)", "idle": "idle machine",
            UNKNOWN: "load unknown"}[verdict]
    return "  ".join(parts) + f"  -> {note}"
