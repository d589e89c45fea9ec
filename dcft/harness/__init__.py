"""The harness: a configuration becomes a run, a run becomes its result file.

Composing and checking the configuration (`config`, `cli_help`), the run's identity and whether a
finished one is reused (`identity`, `reuse`, `revisions`), building the model (`models`), the training
loop (`train`) and one run end to end (`experiment`), checkpoints, experiment trackers, the console and
run log, library versions, exporting an adapter (`export`) and the end-of-sweep report (`sweep`).
"""
