"""Measurements of the methods themselves, not of training runs: parameter counts (`params`) and
speed and memory per training step (`bench`).

They build models (`dcft.harness.models`) but never import the training loop, one run end to end,
checkpoints, trackers, export or sweeps (`tests/test_layout.py`).
"""
