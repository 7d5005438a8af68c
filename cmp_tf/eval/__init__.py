"""Evaluation as pure functions: retrieval and zero-shot metrics, subspace alignment, tables."""
