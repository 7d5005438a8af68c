"""Training: method recipes, the source network, the generic stage trainer, checkpoints.

`config` and `recipes` import no TensorFlow, so settings are checked before any work.
"""
