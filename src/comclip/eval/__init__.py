"""Evaluation: metric functions over precomputed score arrays (checkable without a model)."""
