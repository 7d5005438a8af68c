"""Within-modality retrieval and the alignment diagnostic."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from cmp_tf.eval import diagnostics, retrieval
from cmp_tf.eval import rows as rows_lib


def _sklearn_leave_one_out(features, labels):
  x = features / np.linalg.norm(features, axis=1, keepdims=True)
  sim = x @ x.T
  aps = []
  for i in range(len(x)):
    keep = np.arange(len(x)) != i
    aps.append(average_precision_score(labels[keep] == labels[i], sim[i, keep]))
  return np.array(aps)


def test_leave_one_out_ap_agrees_with_scikit_learn():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 5, size=60)
  features = rng.normal(size=(60, 8)) + 2.0 * np.eye(8)[labels]
  ours = diagnostics.within_modality_ap(features, labels, dtype=np.float64)
  np.testing.assert_allclose(ours, _sklearn_leave_one_out(features, labels), atol=1e-6)


def test_hand_computed_case():
  # Query 0 (label 0): others ranked 1 (label 0, sim 1), 2 (label 1, sim 0), 3 (label 0, sim -1).
  features = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
  labels = np.array([0, 0, 1, 1])
  ap = diagnostics.within_modality_ap(features, labels, dtype=np.float64)
  assert ap[0] == pytest.approx(1.0)   # its one relevant target first
  assert ap[2] == pytest.approx(1 / 3)  # query 2's relevant target (3) is last of three


def test_a_label_seen_once_is_an_error():
  with pytest.raises(ValueError, match="occur once"):
    diagnostics.within_modality_ap(np.ones((3, 2)), np.array([0, 0, 1]))


def test_perfectly_aligned_modalities_score_one_and_shuffled_ones_less():
  rng = np.random.default_rng(1)
  labels = np.repeat(np.arange(4), 10)
  centres = rng.normal(size=(4, 16)) * 3
  a = centres[labels] + rng.normal(size=(40, 16))
  b = centres[labels] + rng.normal(size=(40, 16))
  features, label_map = {"nat": a, "clp": b}, {"nat": labels, "clp": labels}
  aligned = diagnostics.alignment_diagnostic(
      features, label_map, retrieval.cross_modal_retrieval(features, label_map))
  assert aligned["clp"]["alignment"] == pytest.approx(1.0, abs=0.1)
  moved = {"nat": a, "clp": centres[(labels + 1) % 4] + rng.normal(size=(40, 16))}
  shuffled = diagnostics.alignment_diagnostic(
      moved, label_map, retrieval.cross_modal_retrieval(moved, label_map))
  assert shuffled["clp"]["within"] == pytest.approx(aligned["clp"]["within"], abs=0.1)
  assert shuffled["clp"]["alignment"] < 0.5
  # the premise ratio: CLP's queries find little of what they find among CLP itself
  assert aligned["clp"]["premise"] == pytest.approx(1.0, abs=0.1)
  assert shuffled["clp"]["premise"] < 0.5
  # above chance: 1 for as much as within, about 0 for queries that carry nothing
  assert aligned["clp"]["premise_above_chance"] == pytest.approx(1.0, abs=0.1)
  noise = {"nat": a, "clp": rng.normal(size=(40, 16))}
  blind = diagnostics.alignment_diagnostic(
      noise, label_map, retrieval.cross_modal_retrieval(noise, label_map))
  assert blind["nat"]["premise_above_chance"] == pytest.approx(0.0, abs=0.15)
  assert blind["nat"]["as_query_chance"] == pytest.approx(
      rows_lib.chance_map(labels, labels))


def test_a_modality_without_leave_one_out_gets_none():
  features = {"nat": np.eye(3), "clp": np.eye(3)}
  labels = {"nat": np.array([0, 1, 2]), "clp": np.array([0, 1, 2])}
  out = diagnostics.alignment_diagnostic(
      features, labels, retrieval.cross_modal_retrieval(features, labels))
  assert out["nat"]["within"] is None and out["nat"]["alignment"] is None
  assert out["nat"]["premise"] is None
  assert out["nat"]["as_target"] == pytest.approx(1.0)
