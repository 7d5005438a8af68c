"""fit_gaussian / fit_gmm recover known distributions and regularise dead units."""

import numpy as np
import pytest

from cmp_tf.priors import fit_gaussian, fit_gmm


def test_fit_gaussian_recovers_mean_and_covariance():
  rng = np.random.default_rng(0)
  cov = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, -0.3], [0.0, -0.3, 0.5]])
  mean = np.array([1.0, -2.0, 0.5])
  x = rng.multivariate_normal(mean, cov, size=20000)
  params = fit_gaussian(x, layer="fc7", shrinkage=0.0, reg=0.0)
  assert (params.kind, params.layer, params.dim) == ("gaussian", "fc7", 3)
  tril = params.arrays["scale_tril"].astype(np.float64)
  np.testing.assert_allclose(params.arrays["mean"], mean, atol=0.03)
  np.testing.assert_allclose(tril @ tril.T, cov, atol=0.05)
  assert params.settings["n_samples"] == 20000 and params.settings["shrinkage_amount"] == 0.0


def test_fit_gaussian_handles_dead_units():
  rng = np.random.default_rng(1)
  x = np.maximum(rng.standard_normal((50, 8)), 0)
  x[:, 3] = 0.0  # a ReLU unit that never fires: zero variance
  params = fit_gaussian(x, layer="pool5")  # Ledoit-Wolf + reg keep it positive definite
  diag = np.diag(params.arrays["scale_tril"])
  assert np.all(diag > 0) and np.all(np.isfinite(params.arrays["scale_tril"]))
  assert 0.0 < params.settings["shrinkage_amount"] <= 1.0


def test_fit_gmm_finds_separated_clusters():
  rng = np.random.default_rng(2)
  centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
  x = np.concatenate([c + rng.standard_normal((400, 2)) * 0.5 for c in centres])
  params = fit_gmm(x, layer="fc6", num_components=3, seed=0)
  means = params.arrays["means"]
  distances = np.linalg.norm(centres[:, None] - means[None], axis=-1)  # [centre, component]
  assert sorted(distances.argmin(axis=1)) == [0, 1, 2]  # one component per cluster
  assert distances.min(axis=1).max() < 0.15
  np.testing.assert_allclose(np.exp(params.arrays["logits"]), [1 / 3] * 3, atol=0.02)
  floor = params.settings["variance_floor"]  # 1% of the per-unit variance, ~0.22 here
  np.testing.assert_allclose(params.arrays["variances"], 0.25 + floor, atol=0.06)
  assert params.settings["num_components"] == 3 and params.settings["n_samples"] == 1200


def test_fit_gmm_floors_variances_and_subsamples():
  rng = np.random.default_rng(3)
  x = np.maximum(rng.standard_normal((500, 6)), 0)
  x[:, 0] = 0.0  # a dead unit
  params = fit_gmm(x, layer="fc7", num_components=4, variance_floor=1e-3,
                   relative_variance_floor=0.0, max_samples=200)
  assert params.settings["variance_floor"] == 1e-3
  assert np.all(params.arrays["variances"] >= 1e-3 * 0.999)
  assert params.settings["n_samples"] == 200 and params.settings["n_available"] == 500
  # The relative floor follows the layer's scale: x100 activations, x1e4 floor.
  for scale in (1.0, 100.0):
    scaled = fit_gmm(x * scale, layer="fc7", num_components=4, variance_floor=1e-6,
                     relative_variance_floor=0.05)
    unit_variance = np.mean(np.var(x * scale, axis=0))
    np.testing.assert_allclose(scaled.settings["variance_floor"], 0.05 * unit_variance)
    assert np.all(scaled.arrays["variances"][:, 0] >= 0.05 * unit_variance * 0.999)


def test_fit_gmm_is_deterministic():
  x = np.random.default_rng(4).standard_normal((300, 4))
  a = fit_gmm(x, layer="fc6", num_components=5, seed=7)
  b = fit_gmm(x, layer="fc6", num_components=5, seed=7)
  for name in a.arrays:
    np.testing.assert_array_equal(a.arrays[name], b.arrays[name])


def test_bad_input_fails_clearly():
  x = np.zeros((10, 3))
  with pytest.raises(ValueError, match="need at least 20"):
    fit_gmm(x, layer="fc6", num_components=20)
  with pytest.raises(ValueError, match="num_components"):
    fit_gmm(x, layer="fc6", num_components=0)
  with pytest.raises(ValueError, match=r"\[N, D\]"):
    fit_gaussian(np.zeros(5), layer="fc6")
  with pytest.raises(ValueError, match="NaN"):
    fit_gaussian(np.full((4, 2), np.nan), layer="fc6")
  with pytest.raises(ValueError, match="priors apply to one of"):
    fit_gaussian(x, layer="conv3")
  with pytest.raises(ValueError, match="shrinkage"):
    fit_gaussian(x, layer="fc6", shrinkage=2.0)
