"""Accuracy of deployed models: the confusion-matrix metrics and the evaluation through the
runtime (``cifrenet-edge eval``, the INT8 gate on a labelled set)."""
