"""Readers of result files: loading and comparing runs (`results`), choosing a run per condition
(`selection`), the paper's tables and figures (`tables`, `figures`) and claim tests (`claims`).

Nothing here imports the harness's training side (training loop, one run end to end, model building,
checkpoints, trackers, export, sweeps): reading results needs neither torch nor a model
(`tests/test_layout.py`).
"""
