"""Analytic forward cost of one example through one modality's branch and the upper part.

Counts 2 FLOPs per multiply-add of convolutions and dense layers (bias, ReLU, LRN,
pooling and priors are left out), the usual convention for AlexNet's ~1.4 GFLOPs.
"""

from cmp_tf import modalities as mod_lib
from cmp_tf.models import variants as variants_lib


def count_flops(spec, modality):
  """Forward FLOPs (2 x multiply-adds) per example of `modality` through to the logits."""
  if modality not in spec.modalities:
    raise ValueError(f"count_flops: spec has no {modality!r} branch")
  variant = spec.variant
  macs = 0
  if mod_lib.is_image(modality):
    size, channels = spec.image_size, 3
    for index, conv in enumerate(variant.convs, start=1):
      size = variants_lib._output_size(size, conv.kernel, conv.stride, conv.padding)
      macs += size * size * conv.filters * conv.kernel * conv.kernel * channels
      channels = conv.filters
      if index in variants_lib.POOLED_CONVS:
        size = variants_lib._output_size(
            size, variant.pool_size, variant.pool_stride, variant.pool_padding)
  else:
    macs += 2 * spec.text_dim * spec.text_dim + spec.text_dim * spec.pool5_size
  macs += spec.pool5_size * spec.fc_units + spec.fc_units * spec.fc_units
  macs += spec.fc_units * spec.num_classes
  return 2 * macs
