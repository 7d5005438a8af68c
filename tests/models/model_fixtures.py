"""Tiny cross-modal models and inputs shared by the model tests."""

import numpy as np

from cmp_tf.models.spec import CrossModalSpec

TEXT_DIM = 12
NUM_CLASSES = 4


def tiny_spec(modalities=("nat", "clp", "dsc"), **kwargs):
  kwargs.setdefault("image_variant", "alexnet_tiny")
  return CrossModalSpec(modalities=modalities, num_classes=NUM_CLASSES, text_dim=TEXT_DIM,
                        **kwargs)


def random_inputs(spec, batch=6, seed=0):
  rng = np.random.default_rng(seed)
  return {m: (rng.standard_normal((batch, spec.text_dim)) if m == "dsc"
              else rng.random((batch, spec.image_size, spec.image_size, 3))).astype(np.float32)
          for m in spec.modalities}


def random_labels(spec, batch=6, seed=0):
  rng = np.random.default_rng(seed + 100)
  return {m: rng.integers(0, spec.num_classes, batch) for m in spec.modalities}
