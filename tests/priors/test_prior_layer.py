"""ActivationPrior: NLL against SciPy, add_loss, gradients at extremes, config, XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy import special, stats

from cmp_tf.priors import ActivationPrior, PriorParams


def random_gaussian(dim, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.standard_normal((dim, dim))
  cov = a @ a.T / dim + 0.5 * np.eye(dim)
  mean = rng.standard_normal(dim)
  return mean, cov, PriorParams("gaussian", "fc6", {"mean": mean,
                                                    "scale_tril": np.linalg.cholesky(cov)})


def random_gmm(k, dim, seed=0, layer="fc7"):
  rng = np.random.default_rng(seed)
  logits = rng.standard_normal(k)
  means = rng.standard_normal((k, dim)) * 2
  variances = rng.uniform(0.2, 2.0, (k, dim))
  return PriorParams("gmm", layer, {"logits": logits, "means": means, "variances": variances})


def gmm_nll_reference(params, h):
  a = {k: v.astype(np.float64) for k, v in params.arrays.items()}
  log_w = a["logits"] - special.logsumexp(a["logits"])
  comp = np.stack([
      stats.multivariate_normal.logpdf(h, mean=a["means"][k], cov=np.diag(a["variances"][k]))
      for k in range(len(log_w))], axis=-1)
  return -special.logsumexp(log_w + comp, axis=-1)


def make_layer(params, weight=1.0, **kwargs):
  layer = ActivationPrior(params.kind, params.dim, num_components=params.num_components,
                          weight=weight, **kwargs)
  layer.set_params(params)
  return layer


@pytest.mark.parametrize("jit", [True, False])
def test_gaussian_nll_matches_scipy(jit):
  _, _, params = random_gaussian(7)
  h = np.random.default_rng(1).standard_normal((5, 7)) * 2
  layer = make_layer(params, jit_compile=jit)
  got = layer.negative_log_likelihood(tf.constant(h, tf.float32)).numpy()
  # The reference uses the float32 values the layer holds, in float64 arithmetic.
  tril = params.arrays["scale_tril"].astype(np.float64)
  want = -stats.multivariate_normal.logpdf(
      h, mean=params.arrays["mean"].astype(np.float64), cov=tril @ tril.T)
  np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("jit", [True, False])
def test_gmm_nll_matches_scipy_logsumexp(jit):
  params = random_gmm(k=6, dim=5)
  h = np.random.default_rng(2).standard_normal((9, 5)) * 3
  layer = make_layer(params, jit_compile=jit)
  got = layer.negative_log_likelihood(tf.constant(h, tf.float32)).numpy()
  np.testing.assert_allclose(got, gmm_nll_reference(params, h), rtol=1e-4)


def test_gmm_variance_floor_applies():
  params = random_gmm(k=2, dim=3)
  params.arrays["variances"][0, 0] = 1e-9
  layer = make_layer(params, variance_floor=0.05)
  floored = PriorParams("gmm", "fc7", dict(params.arrays))
  floored.arrays["variances"] = np.maximum(floored.arrays["variances"], 0.05)
  h = np.random.default_rng(3).standard_normal((4, 3))
  np.testing.assert_allclose(layer.negative_log_likelihood(tf.constant(h, tf.float32)),
                             gmm_nll_reference(floored, h), rtol=1e-4)


@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
def test_add_loss_is_weight_times_mean_nll(kind):
  params = random_gaussian(6)[2] if kind == "gaussian" else random_gmm(4, 6, layer="fc6")
  inputs = keras.Input((6,))
  layer = make_layer(params, weight=0.25, name="fc6_prior")
  model = keras.Model(inputs, layer(inputs))
  h = np.random.default_rng(4).standard_normal((8, 6)).astype(np.float32)
  out = model(h)
  np.testing.assert_array_equal(out, h)
  assert len(model.losses) == 1
  nll = layer.negative_log_likelihood(tf.constant(h)).numpy()
  np.testing.assert_allclose(float(model.losses[0]), 0.25 * nll.mean(), rtol=1e-5)


def test_zero_weight_adds_no_loss():
  params = random_gmm(3, 4)
  layer = make_layer(params, weight=0.0)
  inputs = keras.Input((4,))
  model = keras.Model(inputs, layer(inputs))
  model(np.zeros((2, 4), np.float32))
  assert model.losses == []


@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
def test_compiled_gradient_equals_autodiff(kind):
  params = random_gaussian(6)[2] if kind == "gaussian" else random_gmm(4, 6)
  h = tf.constant(np.random.default_rng(6).standard_normal((5, 6)) * 2, tf.float32)
  upstream = tf.constant(np.arange(1.0, 6.0), tf.float32)
  grads = []
  for jit in (True, False):
    layer = make_layer(params, jit_compile=jit)
    with tf.GradientTape() as tape:
      tape.watch(h)
      loss = tf.reduce_sum(upstream * layer.negative_log_likelihood(h))
    grads.append(tape.gradient(loss, h).numpy())
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
@pytest.mark.parametrize("jit", [False, True])
def test_gradients_finite_at_extreme_activations(kind, jit):
  dim = 16
  if kind == "gaussian":
    params = random_gaussian(dim)[2]
  else:
    params = random_gmm(5, dim)
    params.arrays["variances"][:, :4] = 1e-12  # dead units: the floor must take over
  layer = make_layer(params, weight=1.0, variance_floor=1e-4, jit_compile=jit)
  pattern = np.resize([1e4, 0.0, -1e4], dim)
  h = tf.constant(np.stack([np.full(dim, 1e4), np.zeros(dim), np.full(dim, -1e4), pattern]),
                  tf.float32)

  @tf.function(jit_compile=jit)  # the whole step under XLA, or only the prior
  def loss_and_grad(h):
    with tf.GradientTape() as tape:
      tape.watch(h)
      loss = tf.reduce_mean(layer.negative_log_likelihood(h))
    return loss, tape.gradient(loss, h)

  for batch in (h, h[:1], h[2:]):
    loss, grad = loss_and_grad(batch)
    assert np.isfinite(loss.numpy())
    assert np.all(np.isfinite(grad.numpy()))


@pytest.mark.parametrize("kind", ["gaussian", "gmm"])
def test_get_config_round_trip(kind):
  params = random_gaussian(5)[2] if kind == "gaussian" else random_gmm(3, 5, layer="fc6")
  layer = make_layer(params, weight=0.5, variance_floor=1e-3, jit_compile=False,
                     name="fc6_prior")
  config = layer.get_config()
  clone = ActivationPrior.from_config(config)
  assert clone.get_config() == config
  assert (clone.kind, clone.dim, clone.num_components, clone.weight, clone.variance_floor,
          clone.jit_compile) == (kind, 5, params.num_components, 0.5, 1e-3, False)
  clone.set_weights(layer.get_weights())
  h = tf.random.normal((3, 5))
  np.testing.assert_allclose(clone.negative_log_likelihood(h), layer.negative_log_likelihood(h))
  # The keras serialisation registry finds the class by name.
  restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
  assert isinstance(restored, ActivationPrior) and restored.get_config() == config


def test_get_params_round_trip():
  params = random_gmm(3, 4)
  back = make_layer(params).get_params("fc7")
  for name, value in params.arrays.items():
    np.testing.assert_array_equal(back.arrays[name], value)
  params = random_gaussian(6)[2]  # the layer holds the inverse factor
  back = make_layer(params).get_params("fc6")
  np.testing.assert_array_equal(back.arrays["mean"], params.arrays["mean"])
  np.testing.assert_allclose(back.arrays["scale_tril"], params.arrays["scale_tril"],
                             rtol=1e-5, atol=1e-6)


def test_bad_arguments_fail_clearly():
  with pytest.raises(ValueError, match="unknown prior kind"):
    ActivationPrior("laplace", 4)
  with pytest.raises(ValueError, match="num_components"):
    ActivationPrior("gmm", 4)
  with pytest.raises(ValueError, match="weight"):
    ActivationPrior("gaussian", 4, weight=-1.0)
  layer = ActivationPrior("gmm", 4, num_components=3)
  with pytest.raises(ValueError, match="expects dim 4"):
    layer.set_params(random_gmm(3, 5))
  with pytest.raises(ValueError, match="cannot load a gaussian"):
    layer.set_params(random_gaussian(4)[2])
  with pytest.raises(ValueError, match="dim 4"):
    layer(tf.zeros((2, 6)))


def test_prior_trains_inside_jit_compiled_fit():
  """Gradients flow through the prior into the layer before it, under XLA."""
  params = random_gmm(4, 3, layer="fc6")
  inputs = keras.Input((5,))
  dense = keras.layers.Dense(3, name="fc6")
  prior = make_layer(params, weight=1.0, name="fc6_prior")
  model = keras.Model(inputs, keras.layers.Dense(2)(prior(dense(inputs))))
  model.compile(optimizer=keras.optimizers.SGD(0.01), jit_compile=True,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  x = np.random.default_rng(5).standard_normal((16, 5)).astype(np.float32)
  y = np.zeros(16, np.int64)
  before = [w.numpy().copy() for w in prior.weights]
  history = model.fit(x, y, epochs=5, batch_size=16, verbose=0).history["loss"]
  assert np.all(np.isfinite(history)) and history[-1] < history[0]
  for old, new in zip(before, prior.weights):
    np.testing.assert_array_equal(old, new.numpy())  # fitted values never train
