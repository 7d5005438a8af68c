"""Cross-modal retrieval metrics: cosine similarity, average precision, precision@k.

Definitions used everywhere in cmp_tf (the paper's section 5.1):
- Similarity is cosine similarity, computed in float32 by default; a zero vector has similarity
  0 to everything (never NaN).
- Average precision is the non-interpolated AP of scikit-learn's `average_precision_score`
  applied to one query's row: the mean, over the relevant targets, of the precision at each
  relevant target's rank. A target is relevant when its label equals the query's label.
- Ties are broken pessimistically: among targets with equal similarity, the non-relevant ones
  rank first. (scikit-learn instead treats a tie group as one threshold, which lies between the
  pessimistic and the optimistic order.) A tie can only lower a score, so a constant similarity
  never looks better than chance. Float32 similarities of 2,000 targets do tie now and then
  (rounding); pass dtype=np.float64 where even that matters.
- precision@k counts relevant targets among the first k ranks, pessimistically, and divides by
  k even when fewer than k targets exist (as trec_eval does).
- A query whose label no target shares has no defined AP: a ValueError names those labels.

Ranking needs no argsort: each relevant target's pessimistic rank is its hit number plus the
count of non-relevant targets scoring at least as high, read from a value sort of each row (a
fraction of an argsort's cost) by a vectorised binary search; ties cost nothing extra. Queries
are processed in chunks so memory stays bounded whatever the number of queries.
"""

import numpy as np

# Elements per chunk of the [queries, targets] similarity and its sorted copy.
_CHUNK_ELEMENTS = 1 << 22
# The largest [queries, targets] similarity kept whole so that the reverse pair of
# cross_modal_retrieval ranks its transpose instead of computing it again (256 MB in float32).
_REUSE_ELEMENTS = 1 << 26


def check_features(features, name):
  """Returns `features` as a non-empty, finite [N, D] array; `name` is named in errors."""
  features = np.asarray(features)
  if features.ndim != 2:
    raise ValueError(f"{name}: expected a 2-D array [N, D], got shape {features.shape}")
  if features.shape[0] == 0 or features.shape[1] == 0:
    raise ValueError(f"{name}: empty array of shape {features.shape}")
  if not np.issubdtype(features.dtype, np.number) or np.issubdtype(features.dtype,
                                                                    np.complexfloating):
    raise ValueError(f"{name}: expected real numbers, got dtype {features.dtype}")
  if not np.all(np.isfinite(features)):
    bad = np.flatnonzero(~np.all(np.isfinite(features), axis=1))
    raise ValueError(f"{name}: {bad.size} rows hold NaN or infinite values (first row {bad[0]})")
  return features


def check_labels(labels, length, name, length_name):
  """Returns `labels` as [length] integers; errors name `name` and what they should match."""
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{name}: expected a 1-D array of labels, got shape {labels.shape}")
  if labels.size == 0:
    raise ValueError(f"{name}: no labels")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
  if labels.shape[0] != length:
    raise ValueError(f"{name}: {labels.shape[0]} labels for {length} rows of {length_name}")
  return labels


def _check_k(k):
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k: expected a positive integer, got {k!r}")
  return int(k)


def _check_every_query_has_a_match(query_labels, target_labels, name="query_labels"):
  missing = np.setdiff1d(query_labels, target_labels)
  if missing.size:
    count = int(np.isin(query_labels, missing).sum())
    shown = ", ".join(str(v) for v in missing[:10]) + (" ..." if missing.size > 10 else "")
    raise ValueError(
        f"{name}: {count} queries have labels that no target has ({shown}); "
        "their average precision is undefined")


def cosine_similarity(queries, targets, dtype=np.float32):
  """Returns the [Q, T] cosine similarities of two feature sets, in `dtype` (float32 default).

  Rows of zeros have similarity 0 to everything.
  """
  queries = check_features(queries, "queries")
  targets = check_features(targets, "targets")
  if queries.shape[1] != targets.shape[1]:
    raise ValueError(
        f"targets: feature size {targets.shape[1]} differs from queries' {queries.shape[1]}")
  return _normalize(queries, dtype) @ _normalize(targets, dtype).T


def _normalize(features, dtype):
  features = np.asarray(features, dtype=dtype)
  norms = np.linalg.norm(features, axis=1, keepdims=True)
  return features / np.where(norms > 0, norms, 1).astype(dtype)


def _relevant_pairs(query_labels, target_labels):
  """(rows, cols, counts): every (query, relevant target) pair, row by row, and the count per row.

  Costs O(Q + T log T + pairs) rather than a [Q, T] comparison: targets are grouped by label once.
  """
  by_label = np.argsort(target_labels, kind="stable")
  sorted_labels = target_labels[by_label]
  first = np.searchsorted(sorted_labels, query_labels, side="left")
  counts = np.searchsorted(sorted_labels, query_labels, side="right") - first
  starts = np.cumsum(counts) - counts
  rows = np.repeat(np.arange(len(query_labels)), counts)
  within = np.arange(rows.size) - np.repeat(starts, counts)
  return rows, by_label[np.repeat(first, counts) + within], counts


def _count_at_least(sorted_rows, rows, values):
  """For each (row, value): how many entries of the ascending `sorted_rows[row]` are >= value.

  A binary search (lower bound) run for all pairs at once, log2(T) vectorised steps.
  """
  num_columns = sorted_rows.shape[1]
  flat = sorted_rows.reshape(-1)
  base = rows * num_columns
  low = np.zeros(rows.size, dtype=np.int64)
  high = np.full(rows.size, num_columns, dtype=np.int64)
  for _ in range(num_columns.bit_length()):
    active = low < high
    middle = (low + high) // 2
    below = flat[base + np.minimum(middle, num_columns - 1)] < values
    low = np.where(active & below, middle + 1, low)
    high = np.where(active & ~below, middle, high)
  return num_columns - low


def _rank_scores(similarity, query_labels, target_labels, k, owned=False):
  """Per-row AP and precision@k of a [Q, T] similarity chunk, ties broken pessimistically.

  With ties broken pessimistically, a query's relevant targets taken by decreasing score
  (h = 1, 2, ...) sit at ranks h + (non-relevant targets scoring at least as high): every
  non-relevant target in a tie group ranks before the group's relevant ones. Those counts
  come from each row sorted by value with its relevant targets pushed to the bottom (-inf),
  searched for all relevant scores at once: a value sort instead of an argsort, and no
  [Q, T] gathers. `owned`: the chunk is a temporary that may be overwritten.
  """
  rows, cols, counts = _relevant_pairs(query_labels, target_labels)
  scores = similarity[rows, cols]
  others = similarity if owned else similarity.copy()
  others[rows, cols] = -np.inf
  others.sort(axis=1)
  order = np.lexsort((-scores, rows))  # by row, then by decreasing score
  rows, scores = rows[order], scores[order]
  hit = np.arange(1, rows.size + 1) - np.repeat(np.cumsum(counts) - counts, counts)
  rank = hit + _count_at_least(others, rows, scores)
  num_queries = similarity.shape[0]
  with np.errstate(divide="ignore", invalid="ignore"):  # a query without relevant targets
    ap = np.bincount(rows, hit / rank, minlength=num_queries) / counts
  pk = np.bincount(rows, rank <= k, minlength=num_queries) / k
  return ap, pk


def _chunks(num_rows, num_columns):
  size = max(1, _CHUNK_ELEMENTS // max(1, num_columns))
  for start in range(0, num_rows, size):
    yield slice(start, min(num_rows, start + size))


def _check_similarity(similarity, query_labels, target_labels):
  similarity = check_features(similarity, "similarity")
  if not np.issubdtype(similarity.dtype, np.floating):
    similarity = similarity.astype(np.float64)  # negating unsigned integers would wrap
  query_labels = check_labels(query_labels, similarity.shape[0], "query_labels",
                               "similarity")
  target_labels = check_labels(target_labels, similarity.shape[1], "target_labels",
                                "similarity's columns")
  return similarity, query_labels, target_labels


def average_precision(similarity, query_labels, target_labels):
  """Returns the [Q] non-interpolated average precision of each query's row (ties pessimistic)."""
  similarity, query_labels, target_labels = _check_similarity(similarity, query_labels,
                                                              target_labels)
  _check_every_query_has_a_match(query_labels, target_labels)
  return np.concatenate([
      _rank_scores(similarity[rows], query_labels[rows], target_labels, 1)[0]
      for rows in _chunks(*similarity.shape)
  ])


def precision_at_k(similarity, query_labels, target_labels, k=10):
  """Returns the [Q] fraction of relevant targets among each query's top k (ties pessimistic)."""
  similarity, query_labels, target_labels = _check_similarity(similarity, query_labels,
                                                              target_labels)
  k = _check_k(k)
  return np.concatenate([
      _rank_scores(similarity[rows], query_labels[rows], target_labels, k)[1]
      for rows in _chunks(*similarity.shape)
  ])


def _sample_queries(num_available, num_queries, seed):
  """All query indices, or `num_queries` drawn uniformly with replacement (seeded)."""
  if num_queries is None:
    return np.arange(num_available)
  if isinstance(num_queries, bool) or not isinstance(num_queries, (int, np.integer)):
    raise ValueError(f"num_queries: expected a positive integer or None, got {num_queries!r}")
  if num_queries < 1:
    raise ValueError(f"num_queries: expected a positive integer or None, got {num_queries}")
  return np.random.default_rng(seed).integers(0, num_available, size=int(num_queries))


def _scores_from_rows(row_similarity, query_labels, target_labels, k, owned=True):
  """Accumulates AP and P@k over chunks produced by `row_similarity(rows)`: a new array each
  time (sorted in place) when `owned`, else a view that is left as it is."""
  ap_sum = 0.0
  pk_sum = 0.0
  for rows in _chunks(len(query_labels), len(target_labels)):
    ap, pk = _rank_scores(row_similarity(rows), query_labels[rows], target_labels, k,
                           owned=owned)
    ap_sum += ap.sum()
    pk_sum += pk.sum()
  count = len(query_labels)
  return {"map": float(ap_sum / count), f"p@{k}": float(pk_sum / count), "num_queries": count}


def similarity_scores(similarity, query_labels, target_labels, *, num_queries=None, seed=0,
                      k=10):
  """mAP and precision@k of a precomputed [Q, T] similarity matrix.

  Exact over all queries by default; `num_queries=1000` follows the paper's protocol of
  queries drawn at random (uniformly, with replacement, from `seed`).
  Returns {"map": float, "p@<k>": float, "num_queries": int}, scores as fractions in [0, 1].
  """
  similarity, query_labels, target_labels = _check_similarity(similarity, query_labels,
                                                              target_labels)
  k = _check_k(k)
  chosen = _sample_queries(len(query_labels), num_queries, seed)
  query_labels = query_labels[chosen]
  _check_every_query_has_a_match(query_labels, target_labels)
  return _scores_from_rows(lambda rows: similarity[chosen[rows]], query_labels, target_labels,
                           k)


def retrieval_scores(query_feats, query_labels, target_feats, target_labels, *,
                     num_queries=None, seed=0, k=10, dtype=np.float32):
  """mAP and precision@k of retrieving `target_feats` with `query_feats` by cosine similarity.

  Exact over all queries by default; `num_queries=1000` follows the paper's protocol of
  queries drawn at random (uniformly, with replacement, from `seed`). Similarities are
  computed chunk by chunk, so memory stays bounded for any number of queries.
  Returns {"map": float, "p@<k>": float, "num_queries": int}, scores as fractions in [0, 1].
  """
  query_feats = check_features(query_feats, "query_feats")
  target_feats = check_features(target_feats, "target_feats")
  if query_feats.shape[1] != target_feats.shape[1]:
    raise ValueError(f"target_feats: feature size {target_feats.shape[1]} differs from "
                     f"query_feats' {query_feats.shape[1]}")
  query_labels = check_labels(query_labels, len(query_feats), "query_labels", "query_feats")
  target_labels = check_labels(target_labels, len(target_feats), "target_labels",
                                "target_feats")
  return _normalized_scores(_normalize(query_feats, dtype), query_labels,
                            _normalize(target_feats, dtype), target_labels,
                            num_queries=num_queries, seed=seed, k=_check_k(k))


def _normalized_scores(queries, query_labels, targets, target_labels, *, num_queries, seed, k):
  chosen = _sample_queries(len(query_labels), num_queries, seed)
  query_labels = query_labels[chosen]
  _check_every_query_has_a_match(query_labels, target_labels)
  targets_t = targets.T
  return _scores_from_rows(lambda rows: queries[chosen[rows]] @ targets_t, query_labels,
                           target_labels, k)


def default_pairs(modalities):
  """All ordered (query, target) pairs of distinct modalities, grouped by query."""
  return [(q, t) for q in modalities for t in modalities if q != t]


def cross_modal_retrieval(features, labels, *, pairs=None, num_queries=None, seed=0, k=10,
                          dtype=np.float32):
  """Retrieval scores for each (query, target) modality pair.

  Args:
    features: {modality: [N_m, D]} features of each modality (e.g. validation fc7).
    labels: {modality: [N_m]} integer scene labels, same keys as `features`.
    pairs: (query, target) modality pairs; default: every ordered pair of distinct modalities
      in `features`, in its key order (all 20 for the five modalities).
    num_queries, seed, k, dtype: as in `retrieval_scores`; each pair draws its queries from the
      same seed, so pairs sharing a query modality share the sampled queries.

  Returns:
    {(query, target): {"map": float, "p@<k>": float, "num_queries": int}}.

  Exact protocol: a pair and its reverse rank the rows and the columns of one similarity
  matrix, so each unordered pair costs one matmul. With NumPy's OpenBLAS the transpose is
  bitwise the matrix computed the other way round (other BLAS builds may differ in the last
  bit of a similarity).
  """
  # Each modality is checked and normalised once, however many pairs it takes part in.
  if not isinstance(features, dict) or not features:
    raise ValueError("features: expected a non-empty dict {modality: [N, D] array}")
  if not isinstance(labels, dict) or set(labels) != set(features):
    got = sorted(labels) if isinstance(labels, dict) else type(labels).__name__
    raise ValueError(f"labels: expected a dict with the same modalities as features "
                     f"({sorted(features)}), got {got}")
  pairs = default_pairs(list(features)) if pairs is None else [tuple(p) for p in pairs]
  if not pairs:
    raise ValueError("pairs: no (query, target) pair to evaluate")
  for pair in pairs:
    if len(pair) != 2 or any(m not in features for m in pair):
      raise ValueError(f"pairs: {pair!r} is not a (query, target) pair of modalities in "
                       f"features ({sorted(features)})")
  k = _check_k(k)
  used = [m for m in features if any(m in pair for pair in pairs)]
  normalized, checked_labels = {}, {}
  for m in used:
    feats = check_features(features[m], f"features[{m!r}]")
    checked_labels[m] = check_labels(labels[m], len(feats), f"labels[{m!r}]",
                                     f"features[{m!r}]")
    normalized[m] = _normalize(feats, dtype)
  sizes = {m: normalized[m].shape[1] for m in used}
  if len(set(sizes.values())) > 1:
    raise ValueError(f"features: modalities differ in feature size {sizes}")
  for query, target in pairs:  # every pair's labels, before any similarity is computed
    chosen = _sample_queries(len(checked_labels[query]), num_queries, seed)
    _in_pair(query, target, _check_every_query_has_a_match, checked_labels[query][chosen],
             checked_labels[target])
  results = {}
  wanted = set(pairs)
  for query, target in pairs:
    if (query, target) in results:
      continue
    queries, targets = normalized[query], normalized[target]
    if (num_queries is None and query != target and (target, query) in wanted
        and len(queries) * len(targets) <= _REUSE_ELEMENTS):
      # Cosine similarity is symmetric: the reverse pair ranks the transpose's rows.
      similarity = queries @ targets.T
      results[(query, target)] = _in_pair(query, target, _matrix_scores, similarity,
                                          checked_labels[query], checked_labels[target], k)
      results[(target, query)] = _in_pair(target, query, _matrix_scores, similarity.T,
                                          checked_labels[target], checked_labels[query], k)
    else:
      results[(query, target)] = _in_pair(
          query, target, _normalized_scores, queries, checked_labels[query], targets,
          checked_labels[target], num_queries=num_queries, seed=seed, k=k)
  return {pair: results[pair] for pair in pairs}


def _matrix_scores(similarity, query_labels, target_labels, k):
  """Scores of every row of a whole similarity matrix (or its transpose), left unchanged."""
  return _scores_from_rows(lambda rows: similarity[rows], query_labels, target_labels, k,
                           owned=False)


def _in_pair(query, target, function, *args, **kwargs):
  """function(*args, **kwargs), its ValueError naming the pair."""
  try:
    return function(*args, **kwargs)
  except ValueError as e:
    raise ValueError(f"retrieval {query}->{target}: {e}") from e


def random_ranking_ap(num_relevant, num_targets):
  """Expected average precision of a uniformly random ranking of `num_targets` targets of
  which `num_relevant` are relevant (arrays broadcast), exactly:

    E[AP] = (R - 1) / (N - 1) + H_N (N - R) / (N (N - 1)),   H_N = 1 + 1/2 + ... + 1/N,

  1 when every target is relevant, 0 when none is. Above the share of relevant targets
  R / N (precision's chance), because the first relevant target found lifts the AP."""
  relevant = np.asarray(num_relevant, np.float64)
  targets = np.asarray(num_targets, np.float64)
  if np.any(targets < 1) or np.any(relevant < 0) or np.any(relevant > targets):
    raise ValueError(f"need 0 <= num_relevant <= num_targets and num_targets >= 1, got "
                     f"{num_relevant} of {num_targets}")
  largest = int(np.max(targets))
  harmonic = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, largest + 1))])
  n = np.maximum(targets, 2.0)  # N == 1 leaves R == N (AP 1) or R == 0 (AP 0): no division
  h = harmonic[targets.astype(np.int64)]
  expected = (relevant - 1) / (n - 1) + h * (targets - relevant) / (n * (n - 1))
  expected = np.where(relevant == targets, 1.0, expected)
  expected = np.where(relevant == 0, 0.0, expected)
  return expected if expected.ndim else float(expected)
