"""The GMM prior's matmul NLL and gradient against MixtureSameFamily in float64.

Tolerances: relative 1e-5 on the NLL, 1e-4 on the gradient (its norm per example),
on random data, adversarial inputs and a trained network's real activations. The NLL
is a sum of D per-unit terms and can cross zero, where no float32 sum is relatively
close; there the bound is absolute, 1e-5 nats per unit (D * 1e-5 in all).
"""

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf.priors import ActivationPrior, PriorParams, activation_prior

FLOOR = 1e-4
NLL_RTOL, GRAD_RTOL = 1e-5, 1e-4


def reference(params, h, floor=FLOOR):
  """(NLL, gradient) of the tfp mixture in float64: the definition."""
  a = {k: tf.constant(np.asarray(v, np.float64)) for k, v in params.arrays.items()}
  distribution = activation_prior.gmm_distribution(a["logits"], a["means"], a["variances"],
                                                   tf.constant(floor, tf.float64))
  h = tf.constant(np.asarray(h, np.float64))
  with tf.GradientTape() as tape:
    tape.watch(h)
    nll = -distribution.log_prob(h)
  return nll.numpy(), tape.gradient(nll, h).numpy()


def assert_exact(params, h, jit=True):
  layer = ActivationPrior("gmm", params.dim, num_components=params.num_components,
                          variance_floor=FLOOR, jit_compile=jit)
  layer.set_params(params)
  h32 = tf.constant(np.asarray(h, np.float32))
  with tf.GradientTape() as tape:
    tape.watch(h32)
    nll = layer.negative_log_likelihood(h32)
  grad = tape.gradient(nll, h32).numpy()
  want_nll, want_grad = reference(params, h32.numpy())
  np.testing.assert_allclose(nll.numpy(), want_nll, rtol=NLL_RTOL,
                             atol=NLL_RTOL * params.dim)
  error = np.linalg.norm(grad - want_grad, axis=1) / np.linalg.norm(want_grad, axis=1)
  assert error.max() < GRAD_RTOL, error.max()


def gmm(k=12, dim=64, seed=0, spread=0.5, low=1e-4, high=0.5):
  rng = np.random.default_rng(seed)
  means = np.clip(rng.normal(0.5, spread, (k, dim)), 0, None)
  variances = rng.uniform(low, high, (k, dim))
  return PriorParams("gmm", "fc7", {"logits": rng.normal(0, 1, k), "means": means,
                                    "variances": variances})


def inputs(dim=64, n=16, seed=1):
  return np.clip(np.random.default_rng(seed).normal(0.5, 0.5, (n, dim)), 0, None)


@pytest.mark.parametrize("jit", [True, False])
def test_random_data(jit):
  assert_exact(gmm(), inputs(), jit)


@pytest.mark.parametrize("case", ["x100_scale", "variances_at_floor", "weight_near_zero",
                                  "one_dimension_far", "close_to_a_far_component"])
def test_adversarial_inputs(case):
  params, h = gmm(), inputs()
  rng = np.random.default_rng(2)
  if case == "x100_scale":
    h = h * 100
  elif case == "variances_at_floor":
    params.arrays["variances"][:, :40] = FLOOR / 10  # below the floor: raised to it
  elif case == "weight_near_zero":
    params.arrays["logits"][3] = -40.0
    h[:4] = params.arrays["means"][3] + rng.normal(0, 0.01, (4, h.shape[1]))
  elif case == "one_dimension_far":
    h[:, 5] = 1e3
  elif case == "close_to_a_far_component":
    # Where the plain expansion cancels: near a component mean that lies far from the
    # mixture's centre, variances at the floor (float32 alone: ~3e-4 relative error).
    params.arrays["means"][0] += 50.0
    params.arrays["variances"][0] = FLOOR
    h = params.arrays["means"][0] + rng.normal(0, 0.005, h.shape)
  assert_exact(params, h)


def test_two_near_identical_components_around_the_input():
  params = gmm(k=6)
  params.arrays["means"][1] = params.arrays["means"][0] + 1e-3
  params.arrays["variances"][:2] = FLOOR
  h = params.arrays["means"][0] + np.random.default_rng(3).normal(0, 1e-3, (8, 64))
  assert_exact(params, h)


@pytest.mark.slow
def test_real_activations_of_a_trained_source_network(tiny_data_dir, tmp_path):
  from cmp_tf import priors
  from cmp_tf.data import manifest as manifest_lib
  from cmp_tf.training import source as source_lib
  from cmp_tf.training import stages
  manifest = manifest_lib.read_manifest(tiny_data_dir)
  settings = source_lib.SourceSettings(
      image_variant="alexnet_tiny", image_size=32, dropout=0.0, steps=60, learning_rate=0.01,
      momentum=0.9, weight_decay=5e-4, batch_size=16, seed=0)
  source = source_lib.ensure_source(
      data_dir=tiny_data_dir, manifest=manifest, settings=settings, cache_dir=tmp_path,
      strategy=tf.distribute.get_strategy(),
      loop=stages.LoopSettings(checkpoint_every=60, progress=False))
  acts = source_lib.source_activations(source, tiny_data_dir, layers=("pool5", "fc6", "fc7"),
                                       num_samples=120, image_size=32, seed=0)
  for layer, values in acts.items():
    params = priors.fit_gmm(values[:80], layer=layer, num_components=8, max_iter=30)
    assert_exact(params, values[80:])
