"""Modality invariance: the modality probe, t-SNE and its pictures on constructed features."""

import os

import numpy as np
import pytest
from PIL import Image

from cmp_tf import modalities as mod_lib
from cmp_tf.analysis import invariance
from cmp_tf.analysis.activations import Activations

MODALITIES = mod_lib.ALL_MODALITIES


def _features(offset, n=40, dim=16, seed=0, scales=None):
  """{modality: [n, dim]} around 3 category centres; modality m shifted by offset * e_m."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(3, dim))
  labels = np.arange(n) % 3
  out = {}
  for i, m in enumerate(MODALITIES):
    x = centres[labels] + 0.5 * rng.normal(size=(n, dim))
    x[:, i] += offset
    out[m] = x * (scales[i] if scales else 1.0)
  return out, labels


def test_probe_separates_shifted_modalities_and_not_mixed_ones():
  shifted, _ = _features(offset=4.0)
  mixed, _ = _features(offset=0.0)
  high = invariance.modality_probe(shifted, seed=0)
  low = invariance.modality_probe(mixed, seed=0)
  assert high["accuracy"] > 0.95
  assert low["accuracy"] < 0.4
  assert high["chance"] == pytest.approx(0.2) and high["folds"] == 5
  assert len(high["fold_accuracies"]) == 5 and high["examples"] == {m: 40 for m in MODALITIES}
  assert invariance.modality_probe(mixed, seed=0) == low  # seeded folds


def test_probe_ignores_scale_because_features_are_l2_normalised():
  scaled, _ = _features(offset=0.0, scales=[1.0, 3.0, 10.0, 0.1, 0.5])
  assert invariance.modality_probe(scaled)["accuracy"] < 0.4
  x = np.array([[3.0, 4.0], [0.0, 0.0]])
  assert invariance.l2_normalise(x).tolist() == [[0.6, 0.8], [0.0, 0.0]]


def test_probe_chance_is_the_largest_modality_and_folds_are_capped():
  features, _ = _features(offset=0.0)
  features[mod_lib.NAT] = np.concatenate([features[mod_lib.NAT]] * 2)
  features[mod_lib.DSC] = features[mod_lib.DSC][:3]
  result = invariance.modality_probe(features)
  assert result["chance"] == pytest.approx(80 / 203) and result["folds"] == 3


def test_probe_refuses_what_it_cannot_fit():
  features, _ = _features(offset=0.0)
  with pytest.raises(ValueError, match="two or more modalities"):
    invariance.modality_probe({mod_lib.NAT: features[mod_lib.NAT]})
  with pytest.raises(ValueError, match="different widths"):
    invariance.modality_probe({**features, mod_lib.CLP: features[mod_lib.CLP][:, :3]})
  with pytest.raises(ValueError, match=">= 2 examples per modality"):
    invariance.modality_probe({**features, mod_lib.CLP: features[mod_lib.CLP][:1]})


def test_tsne_is_seeded_and_keeps_categories_together():
  features, labels = _features(offset=0.0, n=30)
  x = np.concatenate(list(features.values()))
  labels = np.tile(labels, len(features))
  points = invariance.tsne_embedding(x, seed=1)
  assert points.shape == (150, 2) and np.all(np.isfinite(points))
  assert np.array_equal(points, invariance.tsne_embedding(x, seed=1))
  centroids = np.stack([points[labels == c].mean(0) for c in range(3)])
  within = np.mean([np.linalg.norm(points[labels == c] - centroids[c], axis=1).mean()
                    for c in range(3)])
  between = np.mean([np.linalg.norm(centroids[a] - centroids[b]) for a in range(3)
                     for b in range(a + 1, 3)])
  assert between > 2 * within


def _activations(modality, features, labels):
  n, dim = features.shape
  f = features.astype(np.float32)
  return Activations(modality=modality, pool5_maps=f.reshape(n, 1, 1, dim), pool5=f, fc6=f,
                     fc7=f, labels=labels, categories=np.array([f"c{c}" for c in labels]),
                     example_ids=np.array([f"{modality}/{i}" for i in range(n)]),
                     object_names=[()] * n, object_boxes=[np.zeros((0, 4))] * n,
                     texts=[""] * n)


def test_run_invariance_writes_both_pictures(tmp_path):
  features, labels = _features(offset=2.0, n=20)
  acts = {m: _activations(m, x, labels) for m, x in features.items()}
  result = invariance.run_invariance(acts, str(tmp_path), categories=["c0", "c1", "c2"],
                                     seed=0, title="constructed")
  assert sorted(os.listdir(tmp_path)) == ["tsne_category.png", "tsne_modality.png"]
  for name in result["pictures"].values():
    with Image.open(tmp_path / name) as image:
      assert image.format == "PNG" and min(image.size) > 200
  assert set(result["probe"]) == {"pool5", "fc6", "fc7"}
  assert result["probe"]["fc7"]["accuracy"] > 0.9 and result["tsne_layer"] == "fc7"
