"""Subspace alignment (Fernando et al. 2013) on synthetic domains with a known shift."""

import numpy as np
import pytest
from sklearn.svm import LinearSVC

from cmp_tf.eval import retrieval
from cmp_tf.eval.subspace_alignment import SubspaceAlignment, sa_similarity, sa_zero_shot

DIM, NUM_CLASSES, SUBSPACE = 16, 4, 3
CENTERS = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) * 3.0


def _domains(seed, tilt_degrees=60.0):
  """Source and target with the same classes in a 3-d subspace of 16-d features.

  The target's subspace is tilted by `tilt_degrees` out of the source's (towards directions the
  source never uses), and each domain has its own large offset, so features compared as they
  are mismatch badly while the two PCA subspaces still correspond.
  """
  rng = np.random.default_rng(seed)
  basis, _ = np.linalg.qr(rng.standard_normal((DIM, 2 * SUBSPACE)))
  u, w = basis[:, :SUBSPACE], basis[:, SUBSPACE:]
  theta = np.deg2rad(tilt_degrees)
  tilt = (np.eye(DIM) + (np.cos(theta) - 1) * (u @ u.T + w @ w.T)
          + np.sin(theta) * (w @ u.T - u @ w.T))
  source_offset, target_offset = rng.standard_normal((2, DIM)) * 10

  def sample(n):
    labels = np.arange(n) % NUM_CLASSES
    points = CENTERS[labels] + 0.7 * rng.standard_normal((n, SUBSPACE))
    return points @ u.T + 0.2 * rng.standard_normal((n, DIM)), labels

  (s_train, s_train_y), (s_val, s_val_y) = sample(400), sample(200)
  (t_train, _), (t_val, t_val_y) = sample(400), sample(200)
  return (s_train + source_offset, s_train_y, s_val + source_offset, s_val_y,
          t_train @ tilt.T + target_offset, t_val @ tilt.T + target_offset, t_val_y)


@pytest.mark.parametrize("seed", [0, 1])
def test_alignment_recovers_classification_where_raw_features_fail(seed):
  s_train, s_train_y, _, _, t_train, t_val, t_val_y = _domains(seed)
  raw = np.mean(LinearSVC().fit(s_train, s_train_y).predict(t_val) == t_val_y)
  aligned = np.mean(sa_zero_shot(s_train, s_train_y, t_val, SUBSPACE, target_fit_feats=t_train)
                    == t_val_y)
  assert raw < 0.5
  assert aligned > 0.95


@pytest.mark.parametrize("seed", [0, 1])
def test_alignment_recovers_retrieval_where_raw_features_fail(seed):
  s_train, _, s_val, s_val_y, t_train, t_val, t_val_y = _domains(seed)
  raw = retrieval.similarity_scores(retrieval.cosine_similarity(s_val, t_val), s_val_y, t_val_y)
  aligned = retrieval.similarity_scores(
      sa_similarity(s_val, t_val, SUBSPACE, query_fit_feats=s_train, target_fit_feats=t_train),
      s_val_y, t_val_y)
  assert raw["map"] < 0.6  # chance is 0.25
  assert aligned["map"] > 0.9


def test_untilted_domains_align_to_the_identity():
  s_train, _, _, _, _, _, _ = _domains(0)
  sa = SubspaceAlignment(SUBSPACE).fit(s_train, s_train + 5.0)
  np.testing.assert_allclose(sa.alignment_, np.eye(SUBSPACE), atol=1e-8)
  np.testing.assert_allclose(sa.transform_source(s_train), sa.transform_target(s_train + 5.0),
                             atol=1e-8)
  assert sa.source_basis_.shape == (DIM, SUBSPACE)


@pytest.mark.parametrize("call, message", [
    (lambda: SubspaceAlignment(0), "n_components: expected a positive integer"),
    (lambda: SubspaceAlignment(5).fit(np.ones((4, 8)), np.ones((10, 8))),
     r"source: n_components=5 exceeds min\(examples, features\) = 4"),
    (lambda: SubspaceAlignment(2).fit(np.ones((4, 8)), np.ones((10, 7))),
     "target: feature size 7 differs from the fitted 8"),
    (lambda: SubspaceAlignment(2).transform_source(np.ones((4, 8))), "call fit"),
    (lambda: SubspaceAlignment(1).fit(np.eye(3), np.eye(3)).transform_target(np.ones((2, 4))),
     "features: feature size 4 differs"),
    (lambda: sa_zero_shot(np.eye(3), [0, 0, 0], np.eye(3), 1),
     "source_labels: a classifier needs at least two classes"),
    (lambda: sa_similarity(np.full((3, 3), np.nan), np.eye(3), 1), "source: 3 rows hold NaN"),
])
def test_degenerate_inputs_raise_clear_errors(call, message):
  with pytest.raises(ValueError, match=message):
    call()
