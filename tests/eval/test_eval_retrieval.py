"""Retrieval metrics against hand-computed cases, scikit-learn and a brute-force ranking."""

import re
import warnings

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cmp_tf.eval import retrieval

# Four queries against eight targets. Rows 0 and 1 have no ties; row 2 is constant (all tied);
# row 3 has three tie groups. Expected values are worked out by hand in the comments.
TARGET_LABELS = np.array([0, 1, 0, 2, 1, 0, 2, 1])
QUERY_LABELS = np.array([0, 1, 2, 1])
SIMILARITY = np.array([
    [0.9, 0.8, 0.1, 0.7, 0.3, 0.5, 0.2, 0.4],  # relevant t0, t5, t2 at ranks 1, 4, 8
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8],  # relevant t7, t4, t1 at ranks 1, 4, 7
    [0.5] * 8,  # all tied: the 6 non-relevant first, relevant t3, t6 at ranks 7, 8
    [0.9, 0.9, 0.5, 0.5, 0.5, 0.1, 0.1, 0.9],  # {t0, t1+, t7+}, {t2, t3, t4+}, {t5, t6}
])
EXPECTED_AP = np.array([
    (1 / 1 + 2 / 4 + 3 / 8) / 3,
    (1 / 1 + 2 / 4 + 3 / 7) / 3,
    (1 / 7 + 2 / 8) / 2,
    (1 / 2 + 2 / 3 + 3 / 6) / 3,  # pessimistic: relevant at ranks 2, 3, 6
])


def _brute_force(similarity, query_labels, target_labels, k):
  """Pessimistic ranking spelled out: sort by (-score, relevance), then the definitions."""
  aps, pks = [], []
  for row, label in zip(similarity, query_labels):
    relevant = (target_labels == label).astype(int)
    order = np.lexsort((relevant, -row))
    ranked = relevant[order]
    hits = np.cumsum(ranked)
    ranks = np.arange(1, len(row) + 1)
    aps.append(np.sum(ranked * hits / ranks) / ranked.sum())
    pks.append(ranked[:k].sum() / k)
  return np.array(aps), np.array(pks)


def test_average_precision_hand_computed():
  np.testing.assert_allclose(
      retrieval.average_precision(SIMILARITY, QUERY_LABELS, TARGET_LABELS), EXPECTED_AP,
      rtol=0, atol=1e-12)


@pytest.mark.parametrize("k, expected", [
    (1, [1, 1, 0, 0]),
    (2, [1 / 2, 1 / 2, 0, 1 / 2]),  # row 3: top group {t0, t1+, t7+} cut at 2 -> t0, one hit
    (4, [2 / 4, 2 / 4, 0, 2 / 4]),
    (6, [2 / 6, 2 / 6, 0, 3 / 6]),
    (8, [3 / 8, 3 / 8, 2 / 8, 3 / 8]),
    (10, [3 / 10, 3 / 10, 2 / 10, 3 / 10]),  # fewer targets than k: still divided by k
])
def test_precision_at_k_hand_computed(k, expected):
  np.testing.assert_allclose(
      retrieval.precision_at_k(SIMILARITY, QUERY_LABELS, TARGET_LABELS, k=k), expected,
      rtol=0, atol=1e-12)


def test_ties_are_pessimistic_not_sklearn():
  # scikit-learn scores the tied row 3 as one threshold per group: 2/3 * 2/3 + 1/3 * 1/2.
  sklearn_ap = average_precision_score(TARGET_LABELS == 1, SIMILARITY[3])
  assert sklearn_ap == pytest.approx(2 / 3 * 2 / 3 + 1 / 3 * 1 / 2)
  ours = retrieval.average_precision(SIMILARITY[3:], QUERY_LABELS[3:], TARGET_LABELS)[0]
  assert ours == pytest.approx(EXPECTED_AP[3])
  assert ours < sklearn_ap


def test_constant_similarity_is_not_better_than_chance():
  labels = np.arange(20) % 4
  ap = retrieval.average_precision(np.zeros((20, 20)), labels, labels)
  # Relevant targets take the last 5 of 20 ranks: AP = mean_j j / (15 + j).
  np.testing.assert_allclose(ap, np.mean([j / (15 + j) for j in range(1, 6)]))
  assert np.all(ap < 0.25)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_without_ties(seed):
  rng = np.random.default_rng(seed)
  similarity = rng.standard_normal((30, 50))
  query_labels = rng.integers(0, 5, 30)
  target_labels = np.concatenate([np.arange(5), rng.integers(0, 5, 45)])
  expected = [average_precision_score(target_labels == label, row)
              for row, label in zip(similarity, query_labels)]
  np.testing.assert_allclose(
      retrieval.average_precision(similarity, query_labels, target_labels), expected,
      rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_ties_match_brute_force_pessimistic_ranking(seed):
  rng = np.random.default_rng(seed)
  similarity = rng.integers(0, 4, (40, 60)).astype(np.float32)  # many ties ...
  similarity[::3] = rng.random((14, 60))  # ... but not in every row
  query_labels = rng.integers(0, 6, 40)
  target_labels = np.concatenate([np.arange(6), rng.integers(0, 6, 54)])
  for k in (1, 5, 10, 60, 70):
    aps, pks = _brute_force(similarity, query_labels, target_labels, k)
    np.testing.assert_allclose(
        retrieval.average_precision(similarity, query_labels, target_labels), aps, atol=1e-12)
    np.testing.assert_allclose(
        retrieval.precision_at_k(similarity, query_labels, target_labels, k=k), pks, atol=1e-12)


def test_cosine_similarity_values_and_zero_vectors():
  queries = np.array([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
  targets = np.array([[2.0, 0.0], [0.0, -5.0], [0.0, 0.0]])
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    similarity = retrieval.cosine_similarity(queries, targets)
  assert similarity.dtype == np.float32
  np.testing.assert_allclose(similarity, [[1, 0, 0], [0, 0, 0], [0.6, -0.8, 0]], atol=1e-6)
  assert retrieval.cosine_similarity(queries, targets, dtype=np.float64).dtype == np.float64


def test_retrieval_scores_exact_equals_matrix_functions():
  rng = np.random.default_rng(0)
  queries, targets = rng.standard_normal((25, 8)), rng.standard_normal((40, 8))
  query_labels = rng.integers(0, 4, 25)
  target_labels = np.arange(40) % 4
  scores = retrieval.retrieval_scores(queries, query_labels, targets, target_labels)
  similarity = retrieval.cosine_similarity(queries, targets)
  assert scores["num_queries"] == 25
  assert scores["map"] == pytest.approx(
      retrieval.average_precision(similarity, query_labels, target_labels).mean())
  assert scores["p@10"] == pytest.approx(
      retrieval.precision_at_k(similarity, query_labels, target_labels).mean())
  assert retrieval.similarity_scores(similarity, query_labels, target_labels) == scores
  assert set(retrieval.retrieval_scores(queries, query_labels, targets, target_labels,
                                        k=5)) == {"map", "p@5", "num_queries"}


def test_chunking_does_not_change_results(monkeypatch):
  rng = np.random.default_rng(1)
  queries, targets = rng.standard_normal((37, 6)), rng.standard_normal((23, 6))
  query_labels, target_labels = rng.integers(0, 3, 37), np.arange(23) % 3
  whole = retrieval.retrieval_scores(queries, query_labels, targets, target_labels)
  whole_ap = retrieval.average_precision(retrieval.cosine_similarity(queries, targets),
                                         query_labels, target_labels)
  monkeypatch.setattr(retrieval, "_CHUNK_ELEMENTS", 50)  # two query rows per chunk
  chunked = retrieval.retrieval_scores(queries, query_labels, targets, target_labels)
  assert chunked["map"] == pytest.approx(whole["map"], abs=1e-12)
  assert chunked["p@10"] == pytest.approx(whole["p@10"], abs=1e-12)
  np.testing.assert_allclose(
      retrieval.average_precision(retrieval.cosine_similarity(queries, targets), query_labels,
                                  target_labels), whole_ap, atol=1e-12)


def test_sampled_protocol_is_seeded_and_with_replacement():
  rng = np.random.default_rng(2)
  queries, targets = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
  labels = np.arange(30) % 3
  first = retrieval.retrieval_scores(queries, labels, targets, labels, num_queries=1000, seed=7)
  again = retrieval.retrieval_scores(queries, labels, targets, labels, num_queries=1000, seed=7)
  other = retrieval.retrieval_scores(queries, labels, targets, labels, num_queries=1000, seed=8)
  assert first == again
  assert first["num_queries"] == 1000  # more than the 30 queries: drawn with replacement
  assert first["map"] != other["map"]
  exact = retrieval.retrieval_scores(queries, labels, targets, labels)
  per_query = retrieval.average_precision(retrieval.cosine_similarity(queries, targets), labels,
                                          labels)
  # 1000 draws: the sampled mean stays within 4 standard errors of the exact mean.
  assert abs(first["map"] - exact["map"]) < 4 * per_query.std() / np.sqrt(1000)


def test_cross_modal_retrieval_pairs():
  rng = np.random.default_rng(3)
  modalities = ("nat", "clp", "spt", "ldr", "dsc")
  features = {m: rng.standard_normal((12, 4)) for m in modalities}
  labels = {m: np.arange(12) % 3 for m in modalities}
  results = retrieval.cross_modal_retrieval(features, labels)
  assert list(results) == [(q, t) for q in modalities for t in modalities if q != t]
  assert len(results) == 20
  assert results[("dsc", "nat")] == retrieval.retrieval_scores(
      features["dsc"], labels["dsc"], features["nat"], labels["nat"])
  some = retrieval.cross_modal_retrieval(features, labels, pairs=[("clp", "nat")])
  assert list(some) == [("clp", "nat")]


@pytest.mark.parametrize("call, message", [
    (lambda: retrieval.cosine_similarity(np.zeros((0, 3)), np.ones((2, 3))), "queries: empty"),
    (lambda: retrieval.cosine_similarity(np.ones(3), np.ones((2, 3))), "queries: expected a 2-D"),
    (lambda: retrieval.cosine_similarity(np.ones((2, 3)), np.ones((2, 4))), "targets: feature size"),
    (lambda: retrieval.retrieval_scores([[np.nan, 1.0]], [0], [[1.0, 1.0]], [0]),
     "query_feats: 1 rows hold NaN"),
    (lambda: retrieval.retrieval_scores([[1.0]], [0], [[1.0], [np.inf]], [0, 0]),
     "target_feats: 1 rows hold NaN"),
    (lambda: retrieval.retrieval_scores([[1.0], [2.0]], [0], [[1.0]], [0]),
     "query_labels: 1 labels for 2 rows"),
    (lambda: retrieval.retrieval_scores([[1.0]], [0], [[1.0]], [0, 1]),
     "target_labels: 2 labels for 1 rows"),
    (lambda: retrieval.retrieval_scores([[1.0]], [0.5], [[1.0]], [0]),
     "query_labels: expected integer"),
    (lambda: retrieval.retrieval_scores([[1.0]], [3], [[1.0]], [0]),
     "query_labels: 1 queries have labels that no target has"),
    (lambda: retrieval.retrieval_scores([[1.0]], [0], [[1.0]], [0], k=0), "k: expected"),
    (lambda: retrieval.retrieval_scores([[1.0]], [0], [[1.0]], [0], num_queries=0),
     "num_queries"),
    (lambda: retrieval.average_precision(np.ones((2, 2)), [0, 1], [0, 0]),
     "query_labels: 1 queries have labels that no target has"),
    (lambda: retrieval.precision_at_k(np.ones((2, 2)), [0], [0, 0]),
     "query_labels: 1 labels for 2 rows"),
    (lambda: retrieval.cross_modal_retrieval({}, {}), "features: expected a non-empty dict"),
    (lambda: retrieval.cross_modal_retrieval({"nat": np.ones((1, 1))}, {"clp": [0]}),
     "labels: expected a dict with the same modalities"),
    (lambda: retrieval.cross_modal_retrieval(
        {"nat": np.ones((1, 1)), "clp": np.ones((1, 1))}, {"nat": [0], "clp": [0]},
        pairs=[("nat", "dsc")]), "pairs:"),
    (lambda: retrieval.cross_modal_retrieval(
        {"nat": np.ones((1, 1)), "clp": np.ones((1, 1))}, {"nat": [0], "clp": [1]}),
     "retrieval nat->clp: query_labels"),
    (lambda: retrieval.cross_modal_retrieval(
        {"nat": np.ones((1, 1)), "clp": np.full((2, 1), np.nan)}, {"nat": [0], "clp": [0, 0]}),
     "features['clp']: 2 rows hold NaN"),
    (lambda: retrieval.cross_modal_retrieval(
        {"nat": np.ones((1, 1)), "clp": np.ones((2, 1))}, {"nat": [0], "clp": [0]}),
     "labels['clp']: 1 labels for 2 rows of features['clp']"),
    (lambda: retrieval.cross_modal_retrieval(
        {"nat": np.ones((1, 1)), "clp": np.ones((1, 2))}, {"nat": [0], "clp": [0]}),
     "features: modalities differ in feature size"),
])
def test_degenerate_inputs_raise_clear_errors(call, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    call()


@pytest.mark.parametrize("relevant, targets", [(10, 300), (1, 7), (3, 12), (5, 5), (0, 4)])
def test_random_ranking_ap_is_the_mean_ap_of_shuffles(relevant, targets):
  from sklearn.metrics import average_precision_score
  rng = np.random.default_rng(relevant * 1000 + targets)
  expected = retrieval.random_ranking_ap(relevant, targets)
  if relevant == 0:
    assert expected == 0.0
    return
  truth = np.zeros(targets)
  truth[:relevant] = 1
  aps = np.array([average_precision_score(truth, rng.permutation(targets))
                  for _ in range(4000)])
  # Within 4 standard errors of the mean of 4,000 shuffles (0 when AP is always 1).
  assert abs(aps.mean() - expected) <= 4 * aps.std() / np.sqrt(len(aps)) + 1e-12
  assert expected >= relevant / targets  # never below precision's chance


def test_random_ranking_ap_closed_form_and_checks():
  # 10 relevant among 300: 5.04 %, against the 3.33 % share of relevant targets.
  assert retrieval.random_ranking_ap(10, 300) == pytest.approx(0.050412, abs=1e-6)
  assert retrieval.random_ranking_ap(1, 1) == 1.0
  harmonic = sum(1 / k for k in range(1, 9))
  np.testing.assert_allclose(retrieval.random_ranking_ap([1, 8], [8, 8]), [harmonic / 8, 1.0])
  with pytest.raises(ValueError, match="num_relevant <= num_targets"):
    retrieval.random_ranking_ap(5, 4)
