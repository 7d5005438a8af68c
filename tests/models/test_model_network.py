"""The cross-modal network: shared upper layers, freezing, features, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from model_fixtures import random_inputs, tiny_spec

from cmp_tf.models.cross_modal import (
  CrossModalModel,
  branch_layers,
  build_cross_modal_model,
  feature_model,
  upper_layers,
)
from cmp_tf.priors import fit_gaussian, fit_gmm


def sgd_step_on(model, modality, x, lr=0.5):
  """One plain SGD step on `modality`'s cross-entropy only."""
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  with tf.GradientTape() as tape:
    logits = model(x, training=True)[modality]
    loss = loss_fn(np.arange(len(logits)) % 4, logits)
  variables = model.trainable_variables
  for var, grad in zip(variables, tape.gradient(loss, variables)):
    if grad is not None:
      var.assign_sub(lr * grad)


def test_inputs_outputs_and_names():
  spec = tiny_spec(modalities=("nat", "clp", "spt", "ldr", "dsc"))
  model = build_cross_modal_model(spec)
  assert isinstance(model, CrossModalModel) and model.spec is spec
  assert sorted(model.input) == sorted(spec.modalities)
  out = model(random_inputs(spec))
  assert sorted(out) == sorted(spec.modalities)
  assert all(out[m].shape == (6, 4) for m in spec.modalities)
  names = {layer.name for layer in model.layers}
  assert {"nat_conv1", "clp_conv5", "ldr_norm2", "dsc_mlp1", "dsc_pool5", "fc6", "fc7",
          "classifier", "nat_logits", "dsc_logits"} <= names
  assert not any(name.endswith("_fc6") for name in names)


def test_shared_upper_is_one_set_of_weights():
  spec = tiny_spec()
  model = build_cross_modal_model(spec)
  assert [layer.name for layer in upper_layers(model)] == ["fc6", "fc7", "classifier"]
  kernels = [feature_model(model, m).get_layer("fc6").kernel for m in spec.modalities]
  assert all(k is model.get_layer("fc6").kernel for k in kernels)
  # A step through NAT alone changes what CLP computes, although no CLP weight moved.
  x = random_inputs(spec)
  clp = feature_model(model, "clp")
  clp_lower = [w.numpy().copy() for layer in branch_layers(model, "clp") for w in layer.weights]
  before = clp(x["clp"])
  sgd_step_on(model, "nat", x)
  after = clp(x["clp"])
  for old, layer_w in zip(clp_lower, [w for layer in branch_layers(model, "clp")
                                      for w in layer.weights]):
    np.testing.assert_array_equal(old, layer_w.numpy())
  np.testing.assert_array_equal(before["pool5"], after["pool5"])
  assert np.abs(before["logits"] - after["logits"]).max() > 1e-4


def test_unshared_upper_gives_every_modality_its_own_copy():
  spec = tiny_spec(share_upper=False)
  model = build_cross_modal_model(spec)
  names = [layer.name for layer in upper_layers(model)]
  assert names == [f"{m}_{layer}" for m in spec.modalities
                   for layer in ("fc6", "fc7", "classifier")]
  kernels = [model.get_layer(f"{m}_fc6").kernel for m in spec.modalities]
  assert len({id(k) for k in kernels}) == len(kernels)
  x = random_inputs(spec)
  clp = feature_model(model, "clp")
  before = clp(x["clp"])["logits"]
  sgd_step_on(model, "nat", x)
  np.testing.assert_array_equal(before, clp(x["clp"])["logits"])


def test_feature_model_matches_the_full_model():
  spec = tiny_spec(dropout=0.5)
  model = build_cross_modal_model(spec)
  x = random_inputs(spec)
  logits = model(x, training=False)
  for modality in spec.modalities:
    features = feature_model(model, modality)
    assert features.get_layer("fc6") is model.get_layer("fc6")
    out = {k: v.numpy() for k, v in features(x[modality]).items()}
    assert out["pool5"].shape == (6, spec.pool5_size)
    lower = keras.Model(model.input[modality], model.get_layer(f"{modality}_pool5").output)
    np.testing.assert_allclose(out["pool5"], lower(x[modality]).numpy().reshape(6, -1),
                               rtol=1e-6)
    for layer, source in (("fc6", "pool5"), ("fc7", "fc6")):
      kernel, bias = model.get_layer(layer).get_weights()
      np.testing.assert_allclose(out[layer], np.maximum(out[source] @ kernel + bias, 0),
                                 rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["logits"], logits[modality], rtol=1e-5, atol=1e-6)
    # No dropout inside: training mode gives the same features.
    np.testing.assert_allclose(features(x[modality], training=True)["fc7"], out["fc7"],
                               rtol=1e-6)


def test_branch_layers():
  model = build_cross_modal_model(tiny_spec())
  assert [layer.name for layer in branch_layers(model, "dsc")] == [
      "dsc_mlp1", "dsc_mlp2", "dsc_pool5_projection", "dsc_pool5"]
  nat = [layer.name for layer in branch_layers(model, "nat")]
  assert nat[1] == "nat_conv1" and nat[-1] == "nat_pool5" and len(nat) == 11
  with pytest.raises(ValueError, match="no 'spt' branch"):
    branch_layers(model, "spt")


def prior_spec():
  """Two branches only: every prior call costs a tfp trace."""
  rng = np.random.default_rng(0)
  base = tiny_spec(modalities=("nat", "dsc"))
  priors = {
      "pool5": (fit_gmm(rng.random((200, base.pool5_size)), layer="pool5",
                        num_components=3), 0.01),
      "fc6": (fit_gaussian(rng.random((200, base.fc_units)), layer="fc6"), 0.1),
      "fc7": (fit_gmm(rng.random((200, base.fc_units)), layer="fc7", num_components=2), 1.0),
  }
  return tiny_spec(modalities=("nat", "dsc"), priors=priors)


def test_priors_add_one_loss_per_layer_summed_over_branches():
  """One prior call per layer over every branch's batch: its loss is weight times the sum
  over branches of each batch's mean NLL."""
  spec = prior_spec()
  model = build_cross_modal_model(spec)
  x = random_inputs(spec)
  model(x)
  assert len(model.losses) == 3
  expected = {layer: 0.0 for layer in ("pool5", "fc6", "fc7")}
  for modality in spec.modalities:
    features = feature_model(model, modality)(x[modality])
    for layer in expected:
      prior = model.get_layer(f"{layer}_prior")
      expected[layer] += prior.weight * float(tf.reduce_mean(
          prior.negative_log_likelihood(features[layer])))
  for layer, value in expected.items():
    (loss,) = model.get_layer(f"{layer}_prior").losses
    np.testing.assert_allclose(float(loss), value, rtol=1e-5)


def test_save_and_load_keras_file_with_priors(tmp_path):
  spec = prior_spec()
  model = build_cross_modal_model(spec)
  x = random_inputs(spec)
  feature_model(model, "nat")  # extra calls on shared layers must not disturb saving
  model.save(tmp_path / "model.keras")
  loaded = keras.models.load_model(tmp_path / "model.keras")
  assert isinstance(loaded, CrossModalModel)
  assert loaded.spec.to_config() == spec.to_config()
  want, got = model(x), loaded(x)
  for modality in spec.modalities:
    np.testing.assert_array_equal(want[modality], got[modality])
  for layer in ("pool5_prior", "fc6_prior", "fc7_prior"):
    for a, b in zip(model.get_layer(layer).weights, loaded.get_layer(layer).weights):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_allclose(sorted(float(v) for v in loaded.losses),
                             sorted(float(v) for v in model.losses), rtol=1e-6)


def test_tiny_model_is_tiny():
  model = build_cross_modal_model(tiny_spec(modalities=("nat", "clp", "spt", "ldr", "dsc")))
  assert max(w.numpy().size for w in model.weights) < 5000
