"""Evaluation of one run: metrics as pure functions (retrieval, zero-shot, subspace
alignment), network embeddings of a split, the rows of Tables 1-5 and the tables."""
