"""Studies as configurations: a study file (`conf/study/<name>.yaml`, read by `spec`) declares the
runs that answer its claims; `planner` turns the finished runs into the runs still to do and the
decisions they made; `report` writes the tables, figures and claim verdicts; `python -m dcft.study
plan|next|run|report` drives them. The report reads the planner's public API only; the planner never
imports the report."""
