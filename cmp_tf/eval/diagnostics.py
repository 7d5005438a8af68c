"""How much of a cross-modal retrieval score is alignment and how much is feature quality.

A cross-modal mAP can be low because the two modalities' features live in different places
(misalignment, what the paper's methods fix) or because a modality's features do not
separate the categories even among themselves. Within-modality retrieval bounds what
alignment can reach: when every example of a modality retrieves the rest of its own modality
with mAP w, a perfectly aligned other modality can hardly do better. So, per modality,

  within      mAP of each validation example retrieving the rest of its own modality
              (leave-one-out, same protocol as the cross-modal tables)
  as_query    mean mAP of its 4 cross-modal pairs as the query modality
  as_target   mean mAP of the 4 pairs that retrieve it
  alignment   as_target / within: near 1, the others find its examples as well as it
              finds its own; near chance / within, they are not aligned at all.
  premise     as_query / within: how much of what its queries find among their own modality
              they find in the others. The paper's premise (BL-Individual's description
              queries near chance, 0.9 mAP, on CMPlaces) is a small value for DSC.
  premise_above_chance
              (as_query - its chance) / (within - its chance), each chance the expected
              mAP of a random ranking of the same queries and targets: 0 for queries that
              find no more than chance in the others, 1 for as much as among their own.
"""

import numpy as np

from cmp_tf.eval import retrieval
from cmp_tf.eval import rows as rows_lib


def within_modality_ap(features, labels, *, dtype=np.float32):
  """[N] leave-one-out AP of each example retrieving the other examples of its modality.

  Exact: the query itself is put below every other target (similarity -3), where it leaves
  the other relevant targets' ranks unchanged, and its own term is removed from the AP.
  A label held by one example only leaves that example without a relevant target: an error.
  """
  features = retrieval.check_features(features, "features")
  labels = retrieval.check_labels(labels, len(features), "labels", "features")
  counts = np.bincount(np.unique(labels, return_inverse=True)[1])
  alone = np.unique(labels)[counts == 1]
  if alone.size:
    raise ValueError(f"labels: {alone.size} label(s) occur once ({alone[:5].tolist()}...); "
                     "leave-one-out retrieval needs two examples of every label")
  similarity = retrieval.cosine_similarity(features, features, dtype=dtype).astype(np.float64)
  np.fill_diagonal(similarity, -3.0)  # below any cosine similarity
  with_self = retrieval.average_precision(similarity, labels, labels)
  relevant = (labels[:, None] == labels[None, :]).sum(axis=1)  # R + 1, the query included
  n = len(labels)
  return (relevant * with_self - relevant / n) / (relevant - 1)


def alignment_diagnostic(features, labels, cross_scores):
  """{modality: {"within", "within_chance", "as_query", "as_query_chance", "as_target",
  "alignment", "premise", "premise_above_chance"}} (fractions; the chances are a random
  ranking's expected mAP of the same queries and targets, leave-one-out within;
  "within", "alignment" and "premise" are None for a modality with a label seen once, where leave-one-out fails).

  Args:
    features, labels: {modality: [N, D]} and {modality: [N]}, e.g. validation fc7.
    cross_scores: `retrieval.cross_modal_retrieval(features, labels)`'s result.
  """
  out = {}
  for modality in features:
    try:
      within = float(np.mean(within_modality_ap(features[modality], labels[modality])))
    except ValueError:
      within = None
    as_query = [s["map"] for (q, _), s in cross_scores.items() if q == modality]
    as_target = [s["map"] for (_, t), s in cross_scores.items() if t == modality]
    counts = np.unique(labels[modality], return_counts=True)[1]
    # Leave-one-out: each query ranks the N - 1 others, R - 1 of them relevant.
    within_chance = float(np.sum(counts * retrieval.random_ranking_ap(
        counts - 1, len(labels[modality]) - 1)) / counts.sum()) if counts.sum() > 1 else None
    query_chance = [rows_lib.chance_map(labels[q], labels[t]) for q, t in cross_scores
                    if q == modality]
    entry = {"within": within, "within_chance": within_chance,
             "as_query": float(np.mean(as_query)) if as_query else None,
             "as_query_chance": float(np.mean(query_chance)) if query_chance else None,
             "as_target": float(np.mean(as_target)) if as_target else None}
    entry["alignment"] = (entry["as_target"] / within
                          if entry["as_target"] is not None and within else None)
    entry["premise"] = (entry["as_query"] / within
                        if entry["as_query"] is not None and within else None)
    above = (None if None in (entry["as_query"], entry["as_query_chance"], within,
                              within_chance) else within - within_chance)
    entry["premise_above_chance"] = (
        (entry["as_query"] - entry["as_query_chance"]) / above if above else None)
    out[modality] = entry
  return out
