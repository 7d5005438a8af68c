"""Zero-shot accuracy and the held-out restriction for Tables 4 and 5."""

import numpy as np
import pytest

from cmp_tf.eval import retrieval, zero_shot


def test_zero_shot_accuracy_argmax_over_all_classes():
  labels = np.array([0, 2, 3, 2, 3, 1])
  scores = np.array([
      [9, 0, 0, 0],  # label 0: not held out, ignored
      [0, 0, 5, 1],  # label 2 -> 2, right
      [0, 0, 1, 4],  # label 3 -> 3, right
      [7, 0, 6, 0],  # label 2 -> 0 (a seen class wins the argmax over all classes), wrong
      [0, 0, 3, 2],  # label 3 -> 2, wrong
      [0, 0, 0, 8],  # label 1: not held out, ignored
  ], dtype=float)
  assert zero_shot.zero_shot_accuracy(scores, labels, [2, 3]) == pytest.approx(2 / 4)
  assert zero_shot.zero_shot_accuracy(scores, labels, {3}) == pytest.approx(1 / 2)
  assert zero_shot.heldout_accuracy([0, 2, 3, 2, 2, 1], labels, [2, 3]) == pytest.approx(3 / 4)


def test_the_two_protocols_on_hand_made_logits():
  labels = np.array([2, 2, 3, 3, 0])
  scores = np.array([
      [9, 0, 5, 1],  # label 2: seen class 0 wins over all; 2 wins among the held-out {2, 3}
      [0, 0, 5, 1],  # label 2: right in both
      [0, 8, 1, 4],  # label 3: seen class 1 wins over all; 3 wins among the held-out
      [0, 0, 6, 2],  # label 3: 2 wins in both, wrong
      [9, 0, 0, 0],  # label 0: not held out, ignored
  ], dtype=float)
  generalized = zero_shot.zero_shot_accuracy(scores, labels, [2, 3], zero_shot.GENERALIZED)
  conventional = zero_shot.zero_shot_accuracy(scores, labels, [2, 3], zero_shot.CONVENTIONAL)
  assert generalized == pytest.approx(1 / 4) and conventional == pytest.approx(3 / 4)
  assert zero_shot.zero_shot_accuracy(scores, labels, [2, 3]) == generalized  # the default
  with pytest.raises(ValueError, match="protocol"):
    zero_shot.zero_shot_accuracy(scores, labels, [2, 3], "open-set")
  assert zero_shot.restricted_argmax(scores[:1], [10, 11, 12, 13], [12, 13]).tolist() == [12]


def test_heldout_label_indices():
  categories = ["kitchen", "beach", "office", "forest"]
  np.testing.assert_array_equal(
      zero_shot.heldout_label_indices(categories, ["forest", "beach"]), [1, 3])
  with pytest.raises(ValueError, match=r"heldout_categories: \['castle'\] not among the 4"):
    zero_shot.heldout_label_indices(categories, ["castle"])


def test_zero_shot_pairs_are_the_twelve_of_table_5():
  pairs = zero_shot.zero_shot_pairs()
  assert len(pairs) == 12
  assert pairs[:3] == [("clp", "spt"), ("clp", "ldr"), ("clp", "dsc")]
  assert all("nat" not in pair for pair in pairs)


def test_restrict_and_zero_shot_retrieval():
  rng = np.random.default_rng(0)
  modalities = ("nat", "clp", "spt", "ldr", "dsc")
  features = {m: rng.standard_normal((20, 6)) for m in modalities}
  labels = {m: np.arange(20) % 5 for m in modalities}
  kept_features, kept_labels = zero_shot.restrict_to_labels(features, labels, [1, 4])
  assert set(kept_labels["clp"].tolist()) == {1, 4}
  assert len(kept_features["clp"]) == 8
  np.testing.assert_array_equal(kept_features["spt"], features["spt"][[1, 4, 6, 9, 11, 14, 16, 19]])
  results = zero_shot.zero_shot_retrieval(features, labels, [1, 4])
  assert list(results) == zero_shot.zero_shot_pairs()
  assert results[("dsc", "ldr")] == retrieval.retrieval_scores(
      kept_features["dsc"], kept_labels["dsc"], kept_features["ldr"], kept_labels["ldr"])


@pytest.mark.parametrize("call, message", [
    (lambda: zero_shot.zero_shot_accuracy(np.ones((2, 3)), [0, 1], [2]),
     "labels: no example has a held-out label"),
    (lambda: zero_shot.zero_shot_accuracy(np.ones((2, 3)), [0, 5], [2]),
     r"labels: values outside \[0, 3\)"),
    (lambda: zero_shot.zero_shot_accuracy(np.ones((2, 3)), [0], [0]), "labels: shape"),
    (lambda: zero_shot.zero_shot_accuracy(np.full((1, 3), np.nan), [0], [0]), "scores: holds NaN"),
    (lambda: zero_shot.zero_shot_accuracy(np.ones(3), [0], [0]), "scores: expected"),
    (lambda: zero_shot.zero_shot_accuracy(np.ones((1, 3)), [0], []), "heldout_labels: expected"),
    (lambda: zero_shot.heldout_accuracy([0, 1], [0], [0]), "predicted_labels: shape"),
    (lambda: zero_shot.restrict_to_labels({"clp": np.ones((2, 1))}, {"clp": [0, 0]}, [1]),
     r"features\['clp'\]: no example"),
    (lambda: zero_shot.restrict_to_labels({"clp": np.ones((2, 1))}, {}, [1]),
     "labels: no labels for modality 'clp'"),
    (lambda: zero_shot.zero_shot_retrieval({"clp": np.ones((2, 1))}, {"clp": [0, 0]}, [0],
                                           pairs=[("clp", "spt")]),
     r"features: no features for modalities \['spt'\]"),
])
def test_degenerate_inputs_raise_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
