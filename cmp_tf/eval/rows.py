"""One method's rows of the paper's Tables 1-5, computed from its feature sets.

Every number comes from the metric functions of `retrieval`, `zero_shot` and
`subspace_alignment`; this module only picks the features, pairs and label sets
each table is defined on (the paper's sections 5.1 and 5.2):

  table1  mAP of the 20 ordered (query, target) pairs on fc7 of the validation sets
  table2  precision@10 of the same retrievals
  table3  the mean over the 20 pairs of the mAP, per layer (pool5, fc6, fc7)
  table4  zero-shot classification accuracy on the held-out categories (CLP, SPT, LDR, DSC)
  table5  zero-shot retrieval mAP among CLP, SPT, LDR and DSC on the held-out categories

A row is {column: fraction or None}; columns are (query, target) pairs, layer names
or modalities, as `cmp_tf.eval.tables` shows them. A column whose modality has no
features is None ("-" in the tables).
"""

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.eval import retrieval, subspace_alignment, zero_shot
from cmp_tf.layer_names import FC7, LOGITS

RETRIEVAL_PAIRS = tuple(retrieval.default_pairs(mod_lib.ALL_MODALITIES))  # Tables 1 and 2: 20 pairs
ZERO_SHOT_PAIRS = tuple(zero_shot.zero_shot_pairs())  # Table 5: 12 pairs
K = 10
# Which chance levels the tables state (part of an evaluation's protocol: results made
# under another definition are evaluated again).
CHANCE_DEFINITION = ("mAP: the expected AP of a random ranking; precision@k: the share of "
                     "relevant targets; classification: 1 / classes of the protocol")
PRECISION = f"p@{K}"
TABLE4_CONVENTIONAL = "table4_conventional"  # argmax over the held-out categories only
TABLE_IDS = ("table1", "table2", "table3", TABLE4_CONVENTIONAL, "table4", "table5")
# Table 4 under each zero-shot protocol (table4 keeps its id: the generalized one).
TABLE4_BY_PROTOCOL = {zero_shot.CONVENTIONAL: TABLE4_CONVENTIONAL,
                      zero_shot.GENERALIZED: "table4"}


def available_pairs(pairs, modalities):
  """The pairs of `pairs` whose two modalities are both in `modalities`."""
  return [p for p in pairs if p[0] in modalities and p[1] in modalities]


def _layer(sets, layer):
  return ({m: s.features[layer] for m, s in sets.items()},
          {m: s.labels for m, s in sets.items()})


def _row(columns, values):
  return {c: values.get(c) for c in columns}


def retrieval_rows(val_sets, *, layers, num_queries=None, seed=0):
  """Tables 1-3 of a network whose {modality: FeatureSet} are `val_sets`.

  Returns (rows {"table1": row, "table2": row, "table3": row},
           scores {layer: {(query, target): {"map", "p@10", "num_queries"}}}).
  """
  pairs = available_pairs(RETRIEVAL_PAIRS, val_sets)
  if not pairs:
    raise ValueError(f"retrieval needs two modalities; the features hold {sorted(val_sets)}")
  scores, layer_means = {}, {}
  for layer in dict.fromkeys(tuple(layers) + (FC7,)):
    features, labels = _layer(val_sets, layer)
    scores[layer] = retrieval.cross_modal_retrieval(features, labels, pairs=pairs,
                                                    num_queries=num_queries, seed=seed, k=K)
    if len(pairs) == len(RETRIEVAL_PAIRS):
      layer_means[layer] = float(np.mean([s["map"] for s in scores[layer].values()]))
  rows = {
      "table1": _row(RETRIEVAL_PAIRS, metric_by_pair(scores[FC7], "map")),
      "table2": _row(RETRIEVAL_PAIRS, metric_by_pair(scores[FC7], PRECISION)),
      "table3": _row(tuple(layers), layer_means),
  }
  return rows, scores


def zero_shot_rows(val_sets, heldout_labels, *, num_queries=None, seed=0):
  """Tables 4 (from the logits, both protocols) and 5 (from fc7) of a network trained
  without the held-out categories outside NAT. Returns (rows {TABLE4_CONVENTIONAL,
  "table4", "table5"}, table-5 scores by pair)."""
  rows = _logit_zero_shot_rows(val_sets, heldout_labels)
  pairs = available_pairs(ZERO_SHOT_PAIRS, val_sets)
  scores = {}
  if pairs:
    features, labels = _layer({m: val_sets[m] for m in zero_shot.ZERO_SHOT_MODALITIES
                               if m in val_sets}, FC7)
    scores = zero_shot.zero_shot_retrieval(features, labels, heldout_labels, pairs=pairs,
                                           num_queries=num_queries, seed=seed, k=K)
  rows["table5"] = _row(ZERO_SHOT_PAIRS, metric_by_pair(scores, "map"))
  return rows, scores


def _logit_zero_shot_rows(val_sets, heldout_labels):
  """{Table 4 id: row} of both protocols from each zero-shot modality's logits."""
  rows = {}
  for protocol, table in TABLE4_BY_PROTOCOL.items():
    accuracy = {m: zero_shot.zero_shot_accuracy(val_sets[m].features[LOGITS], val_sets[m].labels,
                                                heldout_labels, protocol)
                for m in zero_shot.ZERO_SHOT_MODALITIES
                if m in val_sets and LOGITS in val_sets[m].features}
    rows[table] = _row(zero_shot.ZERO_SHOT_MODALITIES, accuracy)
  return rows


def components_for(n_components, *fit_sets):
  """The subspace size: `n_components`, capped by what PCA can take of every fitting set."""
  return int(min([n_components] + [min(np.shape(f)) for f in fit_sets]))


def _sa_retrieval(pairs, val, train, n_components, num_queries, seed):
  scores, used = {}, {}
  for query, target in pairs:
    d = components_for(n_components, train[query].features[FC7], train[target].features[FC7])
    similarity = subspace_alignment.sa_similarity(
        val[query].features[FC7], val[target].features[FC7], d,
        query_fit_feats=train[query].features[FC7], target_fit_feats=train[target].features[FC7],
        seed=seed)
    try:
      scores[(query, target)] = retrieval.similarity_scores(
          similarity, val[query].labels, val[target].labels, num_queries=num_queries, seed=seed,
          k=K)
    except ValueError as e:
      raise ValueError(f"subspace alignment {query}->{target}: {e}") from e
    used[(query, target)] = d
  return scores, used


def without_heldout(train_sets, heldout_labels):
  """Training sets as a zero-shot run saw them: held-out categories dropped except in NAT."""
  return {m: s if m == mod_lib.NAT else s.select(~np.isin(s.labels, heldout_labels))
          for m, s in train_sets.items()}


def sa_retrieval_rows(val_sets, train_sets, *, n_components, num_queries=None, seed=0):
  """Tables 1 and 2 rows of subspace alignment on fc7: each ordered pair's query domain is
  aligned to its target domain with subspaces fitted on the training sets.

  Returns (rows {"table1", "table2"}, scores by pair, subspace size by pair).
  """
  pairs = available_pairs(RETRIEVAL_PAIRS, set(val_sets) & set(train_sets))
  scores, used = _sa_retrieval(pairs, val_sets, train_sets, n_components, num_queries, seed)
  rows = {"table1": _row(RETRIEVAL_PAIRS, metric_by_pair(scores, "map")),
          "table2": _row(RETRIEVAL_PAIRS, metric_by_pair(scores, PRECISION))}
  return rows, scores, used


def sa_zero_shot_rows(val_sets, train_sets, heldout_labels, *, n_components, num_queries=None,
                      seed=0):
  """Tables 4 and 5 rows of subspace alignment on fc7 in the zero-shot setting.

  `train_sets` hold every category; the held-out ones are dropped here from every modality
  but NAT before fitting. Table 4: a linear SVM trained on aligned NAT training features
  classifies each modality's validation set (`subspace_alignment.sa_zero_shot`). Table 5:
  retrieval among the held-out categories, as `sa_retrieval_rows` but restricted.
  Returns (rows {"table4", "table5"}, table-5 scores by pair, subspace size by key).
  """
  train = without_heldout(train_sets, heldout_labels)
  accuracy = {protocol: {} for protocol in TABLE4_BY_PROTOCOL}
  used = {}
  if mod_lib.NAT in train:
    nat = train[mod_lib.NAT]
    for modality in zero_shot.ZERO_SHOT_MODALITIES:
      if modality not in val_sets or modality not in train:
        continue
      d = components_for(n_components, nat.features[FC7], train[modality].features[FC7])
      for protocol in TABLE4_BY_PROTOCOL:
        predicted = subspace_alignment.sa_zero_shot(
            nat.features[FC7], nat.labels, val_sets[modality].features[FC7], d,
            target_fit_feats=train[modality].features[FC7], seed=seed,
            restrict_to=heldout_labels if protocol == zero_shot.CONVENTIONAL else None)
        accuracy[protocol][modality] = zero_shot.heldout_accuracy(
            predicted, val_sets[modality].labels, heldout_labels)
      used[modality] = d
  pairs = available_pairs(ZERO_SHOT_PAIRS, set(val_sets) & set(train))
  heldout_val = {m: val_sets[m].select(np.isin(val_sets[m].labels, heldout_labels))
                 for m in {m for p in pairs for m in p}}
  scores, pair_used = _sa_retrieval(pairs, heldout_val, train, n_components, num_queries, seed)
  used.update(pair_used)
  rows = {table: _row(zero_shot.ZERO_SHOT_MODALITIES, accuracy[protocol])
          for protocol, table in TABLE4_BY_PROTOCOL.items()}
  rows["table5"] = _row(ZERO_SHOT_PAIRS, metric_by_pair(scores, "map"))
  return rows, scores, used


def source_zero_shot_rows(val_sets, heldout_labels):
  """{Table 4 id: BL-PlacesNet row} of both protocols: the source network's own classifier
  on each visual modality (read through its NAT branch); DSC has no such row."""
  return _logit_zero_shot_rows(val_sets, heldout_labels)


def chance_levels(val_sets, *, num_classes, heldout_labels=None):
  """{table id: chance fraction} of the tables these validation sets define.

  mAP chance (Tables 1, 3, 5) is the expected AP of a random ranking (`random_ranking_ap`)
  averaged over queries and pairs; precision@10 chance (Table 2) the share of relevant
  targets; classification chance 1 / the number of classes of the protocol.
  """
  labels = {m: s.labels for m, s in val_sets.items()}
  pairs = available_pairs(RETRIEVAL_PAIRS, labels)
  chance = {}
  if pairs:
    chance["table1"] = chance["table3"] = mean_chance_map(labels, pairs)
    chance["table2"] = mean_chance_map(labels, pairs, chance=chance_precision)
  if heldout_labels is not None:
    chance["table4"] = 1.0 / num_classes
    chance[TABLE4_CONVENTIONAL] = 1.0 / len(heldout_labels)
    held = {m: labels[m][np.isin(labels[m], heldout_labels)] for m in labels}
    zs_pairs = [p for p in available_pairs(ZERO_SHOT_PAIRS, labels)
                if held[p[0]].size and held[p[1]].size]
    if zs_pairs:
      chance["table5"] = mean_chance_map(held, zs_pairs)
  return chance


def pair_key(pair):
  """The JSON key of a (query, target) pair: "nat->clp"."""
  return f"{pair[0]}->{pair[1]}"


def _relevant_counts(query_labels, target_labels):
  query_labels = np.asarray(query_labels)
  target_labels = np.asarray(target_labels)
  if query_labels.ndim != 1 or query_labels.size == 0:
    raise ValueError(f"query_labels: expected a non-empty 1-D array, got {query_labels.shape}")
  if target_labels.ndim != 1 or target_labels.size == 0:
    raise ValueError(f"target_labels: expected a non-empty 1-D array, got {target_labels.shape}")
  values, counts = np.unique(target_labels, return_counts=True)
  per_label = dict(zip(values.tolist(), counts.tolist()))
  return np.array([per_label.get(label, 0) for label in query_labels.tolist()]), target_labels.size


def chance_map(query_labels, target_labels):
  """Chance mAP of one pair: the mean over queries of a random ranking's expected AP."""
  relevant, num_targets = _relevant_counts(query_labels, target_labels)
  return float(np.mean(retrieval.random_ranking_ap(relevant, num_targets)))


def chance_precision(query_labels, target_labels):
  """Chance precision@k of one pair (k <= the targets): the mean over queries of the share
  of relevant targets."""
  relevant, num_targets = _relevant_counts(query_labels, target_labels)
  return float(np.mean(relevant / num_targets))


def mean_chance_map(labels, pairs, chance=chance_map):
  """A pair's `chance` (chance_map or chance_precision) averaged over (query, target)
  pairs, as the tables average; `labels` is {modality: [N]}."""
  pairs = [tuple(p) for p in pairs]
  if not pairs:
    raise ValueError("pairs: no (query, target) pair")
  missing = sorted({m for p in pairs for m in p if m not in labels})
  if missing:
    raise ValueError(f"labels: no labels for modalities {missing}")
  return float(np.mean([chance(labels[q], labels[t]) for q, t in pairs]))


def metric_by_pair(scores, metric="map"):
  """{(query, target): fraction} of one metric from `cross_modal_retrieval`'s output."""
  try:
    return {pair: float(s[metric]) for pair, s in scores.items()}
  except KeyError as e:
    raise ValueError(f"scores: no metric {metric!r} (have {sorted(next(iter(scores.values())))})"
                     ) from e
