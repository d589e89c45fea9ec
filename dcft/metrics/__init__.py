"""Evaluation metrics (GLUE, SQuAD) as small numpy / scikit-learn / scipy functions: no Hub scripts."""
