"""How far training moved each layer: ||W - W0|| / ||W0|| over a layer's trainable weights.

Measured per stage against the weights the stage started from and against the source
network (through the same layer correspondence that initialised it from the source), so
that "five individual upper networks" that stayed copies of one are visible as numbers.
A frozen layer's drift is exactly 0.
"""

import collections

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.models import transfer


def snapshot(model):
  """{layer name: [arrays]} of every layer with trainable weights (prior layers have none)."""
  return {layer.name: [np.array(w) for w in layer.trainable_weights]
          for layer in model.layers if layer.trainable_weights}


def relative_drift(model, reference, pairs=None):
  """{layer: ||W - W0|| / ||W0||} for each of `model`'s layers that `reference` (a
  snapshot) holds, under `pairs` ({layer: reference layer}; default: the same name).
  Layers without a counterpart, or whose reference is all zeros, are left out."""
  current = snapshot(model)
  out = {}
  for name, weights in current.items():
    ref = reference.get(name if pairs is None else pairs.get(name))
    if ref is None or [r.shape for r in ref] != [w.shape for w in weights]:
      continue
    base = np.sqrt(sum(float(np.sum(np.square(r.astype(np.float64)))) for r in ref))
    if base == 0:
      continue
    diff = np.sqrt(sum(float(np.sum(np.square(w.astype(np.float64) - r.astype(np.float64))))
                       for w, r in zip(weights, ref)))
    out[name] = round(diff / base, 6)
  return out


# The source network and its snapshot, taken once per run.
Reference = collections.namedtuple("Reference", ["model", "weights"])


def from_source(model, source_model, source_weights):
  """Drift of `model` from the source network (`source_weights`: its snapshot)."""
  return relative_drift(model, source_weights,
                        transfer.layer_pairs(source_model, model, from_source=True))


def layer_kind(name):
  """"nat_fc6" -> "fc6", "fc7" -> "fc7", "dsc_fc1" -> "fc1": the layer without its modality."""
  head, _, rest = name.partition("_")
  return rest if head in mod_lib.ALL_MODALITIES and rest else name


def by_kind(drift):
  """{kind: mean drift over the modality copies of that layer} (e.g. BL-Individual's five
  fc7 copies -> one number), kinds in the order first seen."""
  groups = {}
  for name, value in drift.items():
    groups.setdefault(layer_kind(name), []).append(value)
  return {kind: round(float(np.mean(values)), 6) for kind, values in groups.items()}
