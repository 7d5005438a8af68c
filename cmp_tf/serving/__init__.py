"""Serving: per-modality SavedModel signatures, a photo index, and the embedders behind search."""
