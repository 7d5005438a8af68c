"""The unit-alignment score: do a unit's activations detect the same object in every modality?

An objective stand-in for the paper's human study (section 5.4: 33% of units judged
aligned for method A, 25% for the baseline), computed from the synthetic data's
ground-truth objects:

1. For each modality, unit u and object o, the ROC AUC of u's activation as a score
   for "o is in the example" over that modality's validation examples. Objects in
   fewer than `min_positives` examples, or missing from fewer than `min_negatives`,
   are skipped in that modality (an AUC from a handful of examples is noise: with 10
   positives among 300, a random unit's AUC has a standard deviation of ~0.09).
2. A unit's best detector in a modality is the object of highest AUC there.
3. The unit is aligned when one object o is its best detector with AUC >= `threshold`
   (0.75) in the reference modality (NAT) and also in at least `min_other_modalities`
   (2) other modalities.

DSC records list the objects their description mentions, so DSC counts as one of
the other modalities whenever its records carry objects.

Many SynthCMP objects come with scene categories (snow, sand, road markings), so a unit
that responds to a category also "detects" the category's objects in every modality.
`run_alignment` therefore also reports the score from within-category AUCs (only pairs
of examples of the same category compared): units that follow an object beyond its
scene.

AUC is computed from ranks (the Mann-Whitney statistic with mid-ranks for ties), which
is exactly scikit-learn's `roc_auc_score`, for all units and objects at once.
"""

import collections

import numpy as np
from scipy import stats

from cmp_tf import modalities as mod_lib

THRESHOLD = 0.75
MIN_OTHER_MODALITIES = 2
MIN_POSITIVES = 10
MIN_NEGATIVES = 10
LAYERS = ("pool5", "fc7")
NO_OBJECT = -1


def object_vocabulary(*object_lists):
  """Sorted object names appearing in any of the given per-example name lists."""
  return sorted({name for names in object_lists for example in names for name in example})


def object_presence(object_names, vocabulary):
  """bool [N, O]: whether example n lists object vocabulary[o] (once or more)."""
  column = {name: i for i, name in enumerate(vocabulary)}
  presence = np.zeros((len(object_names), len(vocabulary)), bool)
  for n, names in enumerate(object_names):
    for name in names:
      if name in column:
        presence[n, column[name]] = True
  return presence


def auc_matrix(activations, presence, *, groups=None, min_positives=MIN_POSITIVES,
               min_negatives=MIN_NEGATIVES):
  """float [U, O]: ROC AUC of each unit's activation for each object's presence.

  Args:
    activations: float [N, U].
    presence: bool [N, O].
    groups: None, or [N] group ids (e.g. scene labels): then only pairs of a positive
      and a negative example of the same group are compared (a stratified AUC), so an
      object that merely comes with a scene category does not count.
    min_positives, min_negatives: objects with fewer examples that show (lack) them
      (within groups that have both) get NaN.
  """
  activations = np.asarray(activations, np.float64)
  presence = np.asarray(presence, bool)
  if activations.ndim != 2 or presence.ndim != 2 or len(activations) != len(presence):
    raise ValueError(f"auc_matrix: expected activations [N, U] and presence [N, O], got "
                     f"{activations.shape} and {presence.shape}")
  groups = np.zeros(len(presence), np.int64) if groups is None else np.asarray(groups)
  if groups.shape != (len(presence),):
    raise ValueError(f"auc_matrix: expected [N] groups for {len(presence)} examples, got "
                     f"{groups.shape}")
  wins = np.zeros((presence.shape[1], activations.shape[1]))  # [O, U] Mann-Whitney U
  pairs = np.zeros(presence.shape[1])
  positives = np.zeros(presence.shape[1])
  negatives = np.zeros(presence.shape[1])
  for group in np.unique(groups):
    rows = groups == group
    p = presence[rows]
    n1 = p.sum(axis=0).astype(np.float64)
    n0 = len(p) - n1
    mixed = (n1 > 0) & (n0 > 0)
    if not mixed.any():
      continue
    ranks = stats.rankdata(activations[rows], axis=0)  # mid-ranks for ties, as AUC needs
    rank_sums = p[:, mixed].T.astype(np.float64) @ ranks
    wins[mixed] += rank_sums - (n1[mixed] * (n1[mixed] + 1) / 2)[:, None]
    pairs[mixed] += n1[mixed] * n0[mixed]
    positives[mixed] += n1[mixed]
    negatives[mixed] += n0[mixed]
  with np.errstate(divide="ignore", invalid="ignore"):
    auc = wins / pairs[:, None]
  usable = (positives >= max(1, min_positives)) & (negatives >= max(1, min_negatives))
  auc[~usable] = np.nan
  return auc.T


def best_detectors(auc):
  """(object index [U], AUC [U]) of each unit's best detector; NO_OBJECT / NaN if none."""
  auc = np.asarray(auc, np.float64)
  best = np.full(auc.shape[0], NO_OBJECT, np.int64)
  value = np.full(auc.shape[0], np.nan)
  has = ~np.all(np.isnan(auc), axis=1) if auc.shape[1] else np.zeros(auc.shape[0], bool)
  if has.any():
    best[has] = np.nanargmax(auc[has], axis=1)
    value[has] = auc[has, best[has]]
  return best, value


def alignment_score(activations, presence, object_names, *, groups=None,
                    reference=mod_lib.NAT, threshold=THRESHOLD,
                    min_other_modalities=MIN_OTHER_MODALITIES, min_positives=MIN_POSITIVES,
                    min_negatives=MIN_NEGATIVES):
  """Which units detect the same object in the reference and in other modalities.

  Args:
    activations: {modality: float [N_m, U]}, the same U units in every modality.
    presence: {modality: bool [N_m, O]}, columns = `object_names`.
    object_names: the O object names.
    groups: None, or {modality: [N_m] group ids}: AUCs within groups (see `auc_matrix`).
    reference: the modality whose best detector a unit must keep (NAT in the paper).
    threshold: the AUC a best detector needs to count.
    min_other_modalities: in how many other modalities the same object must also be the
      unit's best detector with AUC >= threshold.
    min_positives, min_negatives: see `auc_matrix`.

  Returns:
    A dict: "fraction" (aligned units / units), "num_aligned", "num_units", "aligned"
    (bool [U]), "object" ([U] names, None where not aligned), "detected_objects"
    ({name: aligned units} by count), "best" ({modality: {"object": [U] names or None,
    "auc": [U]}}), "detector_fraction" ({modality: share of units whose best AUC >=
    threshold}), and the settings.
  """
  if reference not in activations:
    raise ValueError(f"alignment_score: no activations of the reference modality "
                     f"{reference!r} (got {', '.join(activations)})")
  if set(presence) != set(activations):
    raise ValueError(f"alignment_score: activations of {sorted(activations)} but object "
                     f"presence of {sorted(presence)}")
  units = {np.shape(a)[1] for a in activations.values()}
  if len(units) != 1:
    raise ValueError(f"alignment_score: the modalities have different unit counts {units}")
  num_units = units.pop()
  names = list(object_names)
  for modality, p in presence.items():
    if np.shape(p)[1] != len(names):
      raise ValueError(f"alignment_score: presence of {modality!r} has {np.shape(p)[1]} "
                       f"columns for {len(names)} object names")
  best = {}
  for modality in activations:
    auc = auc_matrix(activations[modality], presence[modality],
                     groups=None if groups is None else groups[modality],
                     min_positives=min_positives, min_negatives=min_negatives)
    index, value = best_detectors(auc)
    index = np.where(value >= threshold, index, NO_OBJECT)
    best[modality] = (index, value)
  ref_index = best[reference][0]
  agreeing = np.zeros(num_units, np.int64)
  for modality, (index, _) in best.items():
    if modality != reference:
      agreeing += (index == ref_index) & (ref_index != NO_OBJECT)
  aligned = (ref_index != NO_OBJECT) & (agreeing >= min_other_modalities)
  aligned_objects = [names[i] if a else None for i, a in zip(ref_index, aligned)]
  counts = collections.Counter(name for name in aligned_objects if name is not None)
  return {
      "fraction": float(aligned.mean()) if num_units else 0.0,
      "num_aligned": int(aligned.sum()), "num_units": int(num_units),
      "aligned": aligned, "object": aligned_objects,
      "detected_objects": dict(counts.most_common()),
      "best": {m: {"object": [names[i] if i != NO_OBJECT else None for i in index],
                   "auc": value} for m, (index, value) in best.items()},
      "detector_fraction": {m: float(np.mean(index != NO_OBJECT)) if num_units else 0.0
                            for m, (index, _) in best.items()},
      "reference": reference, "threshold": threshold,
      "min_other_modalities": min_other_modalities, "min_positives": min_positives,
      "min_negatives": min_negatives, "modalities": list(activations),
  }


def permuted_presence(presence, seed=0, groups=None):
  """The same presence rows shuffled among each modality's examples (within each group
  of `groups`, {modality: [N_m]}, when given): a chance baseline."""
  rng = np.random.default_rng(seed)
  shuffled = {}
  for m, p in presence.items():
    p = np.asarray(p)
    order = np.arange(len(p))
    labels = np.zeros(len(p)) if groups is None else np.asarray(groups[m])
    for group in np.unique(labels):
      rows = np.flatnonzero(labels == group)
      order[rows] = rng.permutation(rows)
    shuffled[m] = p[order]
  return shuffled


def run_alignment(acts, *, layers=LAYERS, reference=mod_lib.NAT, threshold=THRESHOLD,
                  min_other_modalities=MIN_OTHER_MODALITIES, min_positives=MIN_POSITIVES,
                  min_negatives=MIN_NEGATIVES, seed=0):
  """The alignment score of each layer from {modality: Activations}, JSON-ready.

  Only modalities whose records carry ground-truth objects take part. Each layer also
  gets "chance_fraction": the score with each modality's object lists shuffled among
  its examples (seed `seed`), what alignment by luck alone would give; and
  "within_category": the same score from AUCs over pairs of examples of one scene
  category (chance: objects shuffled within categories). SynthCMP's objects come with
  categories (snow, sand, road markings), so a unit that detects a category also
  "detects" its objects in every modality; the within-category score counts only
  units that follow the object beyond its category.
  """
  with_objects = [m for m, a in acts.items() if a.has_objects]
  without = [m for m in acts if m not in with_objects]
  if reference not in with_objects:
    raise ValueError(f"unit alignment needs ground-truth objects in {reference.upper()} "
                     "records (synthetic data); this dataset has none")
  vocabulary = object_vocabulary(*(acts[m].object_names for m in with_objects))
  presence = {m: object_presence(acts[m].object_names, vocabulary) for m in with_objects}
  categories = {m: acts[m].labels for m in with_objects}
  shuffled = permuted_presence(presence, seed=seed)
  shuffled_within = permuted_presence(presence, seed=seed, groups=categories)
  settings = dict(reference=reference, threshold=threshold,
                  min_other_modalities=min_other_modalities, min_positives=min_positives,
                  min_negatives=min_negatives)
  result = {"modalities": with_objects, "modalities_without_objects": without,
            "objects": vocabulary, "examples": {m: len(acts[m]) for m in with_objects},
            "object_counts": {m: dict(zip(vocabulary, presence[m].sum(0).tolist()))
                              for m in with_objects},
            **settings, "layers": {}}
  for layer in layers:
    units = {m: acts[m].units(layer) for m in with_objects}
    result["layers"][layer] = _layer_result(units, presence, shuffled, vocabulary, settings)
    result["layers"][layer]["within_category"] = _layer_result(
        units, presence, shuffled_within, vocabulary, settings, groups=categories)
  return result


def _layer_result(units, presence, shuffled, vocabulary, settings, groups=None):
  score = alignment_score(units, presence, vocabulary, groups=groups, **settings)
  chance = alignment_score(units, shuffled, vocabulary, groups=groups, **settings)
  modalities = list(units)
  return {
      "fraction": score["fraction"], "num_aligned": score["num_aligned"],
      "num_units": score["num_units"], "chance_fraction": chance["fraction"],
      "detected_objects": score["detected_objects"],
      "detector_fraction": score["detector_fraction"],
      "units": [{"unit": int(u), "object": score["object"][u],
                 "auc": {m: _rounded(score["best"][m]["auc"][u]) for m in modalities},
                 "best": {m: score["best"][m]["object"][u] for m in modalities}}
                for u in np.flatnonzero(score["aligned"])],
  }


def _rounded(value):
  return None if not np.isfinite(value) else round(float(value), 4)
