"""Copies weights between the models of successive training stages, by layer name."""

from cmp_tf import modalities as mod_lib
from cmp_tf.layer_names import UPPER_LAYERS
from cmp_tf.models import cross_modal
from cmp_tf.priors.activation_prior import ActivationPrior

SOURCE_MODALITY = mod_lib.NAT


def _copy(src_layer, dst_layer):
  src_weights = src_layer.get_weights()
  dst_shapes = [w.shape for w in dst_layer.get_weights()]
  src_shapes = [w.shape for w in src_weights]
  if src_shapes != dst_shapes:
    raise ValueError(
        f"transfer_weights: layer {src_layer.name!r} has weights {src_shapes} but "
        f"{dst_layer.name!r} expects {dst_shapes}")
  dst_layer.set_weights(src_weights)


def _weighted_layers(model):
  return {layer.name: layer for layer in model.layers
          if layer.weights and not isinstance(layer, ActivationPrior)}


def layer_pairs(src_model, dst_model, *, from_source=False, fresh_upper=()):
  """{dst layer name: src layer name} of the layers `transfer_weights` copies (see there)."""
  src_layers = _weighted_layers(src_model)
  dst_layers = _weighted_layers(dst_model)
  pairs = {name: name for name in dst_layers if name in src_layers}
  if from_source:
    src_spec = cross_modal._spec_of(src_model)
    dst_spec = cross_modal._spec_of(dst_model)
    if SOURCE_MODALITY not in src_spec.modalities:
      raise ValueError(
          f"transfer_weights(from_source=True): source model {src_model.name!r} has no "
          f"{SOURCE_MODALITY!r} branch")
    src_lower = [n for n in cross_modal.lower_layer_names(src_spec, SOURCE_MODALITY)
                 if n in src_layers]
    for modality in dst_spec.modalities:
      if mod_lib.is_image(modality):
        for name in src_lower:
          target = modality + name[len(SOURCE_MODALITY):]
          if target in dst_layers:
            pairs[target] = name
      own_upper = not dst_spec.share_upper
      for layer in UPPER_LAYERS:
        if own_upper and modality in fresh_upper:
          continue
        target = cross_modal.upper_name(dst_spec, modality, layer)
        pairs[target] = cross_modal.upper_name(src_spec, SOURCE_MODALITY, layer)
  for dst_name, src_name in pairs.items():
    if src_name not in src_layers:
      raise ValueError(
          f"transfer_weights: source model {src_model.name!r} has no layer {src_name!r} "
          f"for {dst_name!r}")
  return pairs


def transfer_weights(src_model, dst_model, *, from_source=False, fresh_upper=()):
  """Copies weights from `src_model` into `dst_model`; returns the dst layer names set.

  Every layer with weights present under the same name in both is copied (prior
  layers excepted: their values come from the destination's spec). With
  `from_source=True`, `src_model` is the NAT-only source network (the paper's
  Places-CNN) and, as in the paper, every image branch of `dst_model` starts from
  its NAT convolutions and every per-modality upper copy from its fc6/fc7/classifier.
  The DSC MLP has no counterpart and keeps its N(0, 0.1) initialisation; so do the own
  upper copies (fc6, fc7, classifier) of the modalities in `fresh_upper` in a model without
  a shared upper (a shared upper is the source's for every branch).

  A layer present in both with different weight shapes is an error.
  """
  src_layers = _weighted_layers(src_model)
  dst_layers = _weighted_layers(dst_model)
  copied = []
  pairs = layer_pairs(src_model, dst_model, from_source=from_source, fresh_upper=fresh_upper)
  for dst_name, src_name in pairs.items():
    _copy(src_layers[src_name], dst_layers[dst_name])
    copied.append(dst_name)
  return copied
