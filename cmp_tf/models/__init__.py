"""Cross-modal scene networks: per-modality branches under a shared fc6/fc7/classifier."""

from cmp_tf.models.cross_modal import (
    CrossModalModel,
    branch_layers,
    build_cross_modal_model,
    feature_model,
    upper_layers,
)
from cmp_tf.models.flops import count_flops
from cmp_tf.models.layers import LocalResponseNormalization
from cmp_tf.models.spec import CrossModalSpec
from cmp_tf.models.transfer import transfer_weights
from cmp_tf.models.variants import VARIANTS, get_variant

__all__ = [
    "CrossModalModel", "CrossModalSpec", "LocalResponseNormalization", "VARIANTS",
    "branch_layers", "build_cross_modal_model", "count_flops", "feature_model",
    "get_variant", "transfer_weights", "upper_layers",
]
