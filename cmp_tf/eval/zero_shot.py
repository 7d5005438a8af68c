"""Zero-shot metrics (the paper's section 5.2, Tables 4 and 5).

The held-out categories are missing from the training sets of CLP, SPT, LDR and DSC only; NAT
keeps them all. Classification accuracy is measured on the validation examples whose label is
held out, in one of two protocols:

  conventional  the argmax over the held-out categories only (the usual zero-shot protocol:
                chance is 1 / number held out);
  generalized   the argmax over all categories (chance 1 / number of categories), so seen
                categories compete with the held-out ones.

The paper's Table 4 says only "classification accuracy on the held-out categories"; its
BL-PlacesNet row (2.2 on SPT and DSC, where that network has nothing to go on) sits at the
55-way chance of 1.8 rather than the 205-way 0.49, which suggests the conventional one.
Zero-shot retrieval restricts both queries and targets to the
held-out categories and evaluates the 12 ordered pairs among CLP, SPT, LDR and DSC.
"""

import numpy as np

from cmp_tf.eval import retrieval
from cmp_tf.modalities import CLP, DSC, LDR, SPT

ZERO_SHOT_MODALITIES = (CLP, SPT, LDR, DSC)
CONVENTIONAL = "conventional"
GENERALIZED = "generalized"
PROTOCOLS = (CONVENTIONAL, GENERALIZED)


def zero_shot_pairs(modalities=ZERO_SHOT_MODALITIES):
  """The ordered (query, target) pairs of Table 5, grouped by query: 12 for the four."""
  return retrieval.default_pairs(modalities)


def heldout_label_indices(categories, heldout_categories):
  """Maps held-out category names to their label indices (positions in `categories`)."""
  index = {name: i for i, name in enumerate(categories)}
  unknown = [name for name in heldout_categories if name not in index]
  if unknown:
    raise ValueError(f"heldout_categories: {unknown[:5]} not among the {len(index)} categories")
  return np.array(sorted(index[name] for name in heldout_categories), dtype=np.int64)


def _check_label_set(label_set, name):
  if isinstance(label_set, (set, frozenset)):
    label_set = sorted(label_set)
  labels = np.asarray(label_set)
  if labels.ndim != 1 or labels.size == 0:
    raise ValueError(f"{name}: expected a non-empty list of labels, got {label_set!r}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
  return labels


def heldout_accuracy(predicted_labels, labels, heldout_labels):
  """Accuracy of `predicted_labels` on the examples whose true label is held out."""
  predicted = np.asarray(predicted_labels)
  labels = np.asarray(labels)
  if predicted.ndim != 1 or labels.ndim != 1 or predicted.shape != labels.shape:
    raise ValueError(f"predicted_labels: shape {predicted.shape} does not match labels' "
                     f"{labels.shape} (both must be [N])")
  heldout = _check_label_set(heldout_labels, "heldout_labels")
  mask = np.isin(labels, heldout)
  if not mask.any():
    raise ValueError(f"labels: no example has a held-out label (of {labels.size} examples, "
                     f"held-out labels {heldout[:10].tolist()}...)")
  return float(np.mean(predicted[mask] == labels[mask]))


def restricted_argmax(scores, classes, allowed):
  """The label (from `classes`, one per column of `scores`) of the best-scoring column
  among those whose label is in `allowed`."""
  keep = np.flatnonzero(np.isin(np.asarray(classes), allowed))
  if keep.size == 0:
    raise ValueError("restricted_argmax: none of the allowed labels is a column")
  return np.asarray(classes)[keep[np.argmax(np.asarray(scores)[:, keep], axis=1)]]


def zero_shot_accuracy(scores, labels, heldout_labels, protocol=GENERALIZED):
  """Accuracy on held-out categories from [N, C] logits or probabilities: argmax over all
  C (generalized) or over the held-out columns only (conventional)."""
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol: {protocol!r} is not one of {PROTOCOLS}")
  scores = np.asarray(scores)
  if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
    raise ValueError(f"scores: expected a non-empty [N, C] array, got shape {scores.shape}")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores: holds NaN or infinite values")
  labels = np.asarray(labels)
  if labels.shape != (scores.shape[0],):
    raise ValueError(f"labels: shape {labels.shape} does not match scores' {scores.shape[0]} rows")
  if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[1]):
    raise ValueError(f"labels: values outside [0, {scores.shape[1]}) for {scores.shape[1]} "
                     "classes")
  if protocol == CONVENTIONAL:
    heldout = _check_label_set(heldout_labels, "heldout_labels")
    if heldout.max() >= scores.shape[1] or heldout.min() < 0:
      raise ValueError(f"heldout_labels: outside [0, {scores.shape[1]})")
    predicted = restricted_argmax(scores, np.arange(scores.shape[1]), heldout)
  else:
    predicted = np.argmax(scores, axis=1)
  return heldout_accuracy(predicted, labels, heldout_labels)


def restrict_to_labels(features, labels, keep_labels):
  """Keeps, per modality, only the examples whose label is in `keep_labels`.

  Args:
    features: {modality: [N_m, D]}.
    labels: {modality: [N_m]}.
    keep_labels: the labels to keep (e.g. the held-out ones).

  Returns:
    (features, labels) dicts of the same modalities, restricted.
  """
  keep = _check_label_set(keep_labels, "keep_labels")
  kept_features, kept_labels = {}, {}
  for modality, feats in features.items():
    if modality not in labels:
      raise ValueError(f"labels: no labels for modality {modality!r}")
    feats, mod_labels = np.asarray(feats), np.asarray(labels[modality])
    if len(feats) != len(mod_labels):
      raise ValueError(f"labels[{modality!r}]: {len(mod_labels)} labels for {len(feats)} "
                       "feature rows")
    mask = np.isin(mod_labels, keep)
    if not mask.any():
      raise ValueError(f"features[{modality!r}]: no example has one of the labels kept "
                       f"({keep[:10].tolist()}...)")
    kept_features[modality] = feats[mask]
    kept_labels[modality] = mod_labels[mask]
  return kept_features, kept_labels


def zero_shot_retrieval(features, labels, heldout_labels, *, pairs=None, num_queries=None,
                        seed=0, k=10):
  """Table 5: retrieval among the held-out categories only, queries and targets alike.

  `pairs` defaults to the ordered pairs among CLP, SPT, LDR and DSC (those present in
  `features`). Returns {(query, target): {"map", "p@<k>", "num_queries"}}.
  """
  if pairs is None:
    pairs = zero_shot_pairs([m for m in ZERO_SHOT_MODALITIES if m in features])
  used = sorted({m for pair in pairs for m in pair})
  missing = [m for m in used if m not in features]
  if missing:
    raise ValueError(f"features: no features for modalities {missing} named in pairs")
  kept_features, kept_labels = restrict_to_labels(
      {m: features[m] for m in used}, {m: labels[m] for m in used if m in labels},
      heldout_labels)
  return retrieval.cross_modal_retrieval(kept_features, kept_labels, pairs=pairs,
                                         num_queries=num_queries, seed=seed, k=k)
