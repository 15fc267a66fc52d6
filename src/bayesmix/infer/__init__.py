"""Inference: initialization, MAP (Adam), the local variational posterior, collapsed NUTS."""
