"""Cross-modal scene networks: per-modality branches under a shared fc6/fc7/classifier.

The names below are imported on first use, so that `cmp_tf.models.variants` (plain
data, read when flags are checked) can be imported without TensorFlow. A Keras
deserialisation by class name (`keras.saving.load_model`) needs `cmp_tf.models.cross_modal`
imported first: its classes register themselves then.
"""

import importlib

_EXPORTS = {
    "CrossModalModel": "cross_modal", "branch_layers": "cross_modal",
    "build_cross_modal_model": "cross_modal", "feature_model": "cross_modal",
    "upper_layers": "cross_modal", "count_flops": "flops",
    "LocalResponseNormalization": "layers", "CrossModalSpec": "spec",
    "transfer_weights": "transfer", "layer_pairs": "transfer", "VARIANTS": "variants", "get_variant": "variants",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f"module 'cmp_tf.models' has no attribute {name!r}")
  return getattr(importlib.import_module(f"cmp_tf.models.{_EXPORTS[name]}"), name)
