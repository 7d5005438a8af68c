"""The alignment terms against independent NumPy computations, and what they measure."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from cmp_tf.domain_alignment import adversarial, terms


def _groups(rng, sizes=(5, 7, 6), dim=4, shifts=(0.0, 1.0, -0.5)):
  return [(rng.normal(size=(n, dim)) + s).astype(np.float32) for n, s in zip(sizes, shifts)]


def _numpy_coral(groups):
  values = []
  for a, b in itertools.combinations(groups, 2):
    values.append(np.mean((a.mean(0) - b.mean(0)) ** 2)
                  + np.mean((np.cov(a, rowvar=False) - np.cov(b, rowvar=False)) ** 2))
  return np.mean(values)


def _numpy_mmd(groups, gammas=terms.MMD_GAMMAS):
  def k(x, y):
    return np.mean([[sum(np.exp(-g * np.sum((u - v) ** 2)) for g in gammas) for v in y]
                    for u in x])
  return np.mean([k(a, a) + k(b, b) - 2 * k(a, b)
                  for a, b in itertools.combinations(groups, 2)])


def test_coral_and_mmd_equal_their_definitions():
  groups = _groups(np.random.default_rng(0))
  tensors = [tf.constant(g) for g in groups]
  assert float(terms.coral(tensors)) == pytest.approx(_numpy_coral(groups), rel=1e-5)
  assert float(terms.mmd(tensors)) == pytest.approx(_numpy_mmd(groups), rel=1e-4, abs=1e-6)
  assert float(terms.mmd(tensors, gammas=(0.5,))) == pytest.approx(
      _numpy_mmd(groups, gammas=(0.5,)), rel=1e-4, abs=1e-6)


def test_coral_and_mmd_are_near_zero_for_one_distribution_and_clearly_above_otherwise():
  rng = np.random.default_rng(1)
  same = [tf.constant(rng.normal(size=(400, 3)).astype(np.float32)) for _ in range(3)]
  shifted = [tf.constant((rng.normal(size=(400, 3)) * s + m).astype(np.float32))
             for m, s in ((0, 1), (1.5, 1), (0, 2.5))]
  assert float(terms.coral(same)) < 0.05 < 1.0 < float(terms.coral(shifted))
  gammas = (0.1, 1.0)
  assert float(terms.mmd(same, gammas)) < 0.02 < 0.2 < float(terms.mmd(shifted, gammas))


def test_the_terms_refuse_one_modality_and_bad_settings():
  one = [tf.zeros((4, 2))]
  with pytest.raises(ValueError, match="at least two modalities"):
    terms.coral(one)
  with pytest.raises(ValueError, match="bandwidths"):
    terms.mmd([tf.zeros((4, 2))] * 2, gammas=(0.0,))
  with pytest.raises(ValueError, match="temperature"):
    terms.cross_modal_supcon(tf.zeros((4, 2)), [0, 0, 1, 1], [0, 1, 0, 1], temperature=0)


def _numpy_supcon(z, labels, modalities, t):
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  s = z @ z.T / t
  losses = []
  for i in range(len(z)):
    others = [a for a in range(len(z)) if a != i]
    positives = [p for p in others if labels[p] == labels[i] and modalities[p] != modalities[i]]
    if not positives:
      continue
    log_denominator = np.log(np.sum(np.exp(s[i, others])))
    losses.append(-np.mean([s[i, p] - log_denominator for p in positives]))
  return np.mean(losses) if losses else 0.0


def test_cross_modal_supcon_equals_its_definition_and_rewards_alignment():
  rng = np.random.default_rng(2)
  labels = np.array([0, 1, 2, 0, 1, 2, 0, 0])
  modalities = np.array([0, 0, 0, 1, 1, 1, 2, 2])  # the last two share modality 2 and class 0
  z = rng.normal(size=(8, 5)).astype(np.float32)
  got = float(terms.cross_modal_supcon(tf.constant(z), labels, modalities, temperature=0.5))
  assert got == pytest.approx(_numpy_supcon(z, labels, modalities, 0.5), rel=1e-5)
  # Categories aligned across modalities (each class one direction) cost less than a
  # layout where each modality has its own direction.
  by_class = np.eye(5, dtype=np.float32)[labels] + 0.01 * z
  by_modality = np.eye(5, dtype=np.float32)[modalities] + 0.01 * z
  aligned = float(terms.cross_modal_supcon(tf.constant(by_class), labels, modalities))
  split = float(terms.cross_modal_supcon(tf.constant(by_modality), labels, modalities))
  assert aligned < split
  # No anchor with a positive in another modality: 0, not NaN.
  assert float(terms.cross_modal_supcon(tf.constant(z[:3]), labels[:3], modalities[:3])) == 0.0


def test_gradient_reversal_flips_and_scales_the_gradient():
  x = tf.constant([[1.0, -2.0], [0.5, 3.0]])
  w = tf.constant([[2.0, 1.0], [-1.0, 4.0]])
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = tf.reduce_sum(adversarial.gradient_reversal(x, 0.3) * w)
  np.testing.assert_array_equal(adversarial.gradient_reversal(x, 0.3).numpy(), x.numpy())
  np.testing.assert_allclose(tape.gradient(y, x).numpy(), -0.3 * w.numpy(), rtol=1e-6)


def test_the_discriminator_and_its_losses():
  rng = np.random.default_rng(3)
  features = tf.constant(rng.normal(size=(6, 8)).astype(np.float32))
  modality_ids = np.array([0, 0, 1, 1, 2, 2])
  labels = np.array([0, 1, 1, 1, 0, 2])
  plain = adversarial.ModalityDiscriminator(3, width=16)
  logits = plain(features)
  assert logits.shape == (6, 3)
  expected = np.mean([-np.log(np.exp(row[m]) / np.exp(row).sum())
                      for row, m in zip(logits.numpy(), modality_ids)])
  assert float(adversarial.dann_loss(logits, modality_ids)) == pytest.approx(expected, rel=1e-5)

  conditional = adversarial.ModalityDiscriminator(3, width=16, num_classes=3)
  with pytest.raises(ValueError, match="needs the labels"):
    conditional(features)
  logits = conditional(features, labels).numpy()
  counts = np.bincount(labels, minlength=3)
  ce = [-np.log(np.exp(row[m]) / np.exp(row).sum()) for row, m in zip(logits, modality_ids)]
  expected = np.sum([c / (counts[y] * 3) for c, y in zip(ce, labels)])
  got = float(adversarial.cdann_loss(tf.constant(logits), modality_ids, labels, 3))
  assert got == pytest.approx(expected, rel=1e-5)
  assert adversarial.ModalityDiscriminator.from_config(conditional.get_config()).num_classes == 3
  with pytest.raises(ValueError, match=">= 2 modalities"):
    adversarial.ModalityDiscriminator(1)


def test_training_the_discriminator_through_reversal_pushes_features_together():
  """A step along the gradient the features get (reversed) raises the discriminator's loss:
  the network learns to make the modalities indistinguishable."""
  rng = np.random.default_rng(4)
  features = tf.Variable(np.concatenate([rng.normal(size=(8, 4)) + 2,
                                         rng.normal(size=(8, 4)) - 2]).astype(np.float32))
  modality_ids = np.repeat([0, 1], 8)
  disc = adversarial.ModalityDiscriminator(2, width=16)
  disc(features)
  with tf.GradientTape() as tape:
    loss = adversarial.dann_loss(disc(features), modality_ids)
  gradient = tape.gradient(loss, features)
  moved = adversarial.dann_loss(disc(features - 0.05 * gradient), modality_ids)
  assert float(moved) > float(loss)


def test_the_class_proxy_term_equals_its_definition_and_rewards_agreeing_directions():
  rng = np.random.default_rng(3)
  features = rng.normal(size=(12, 6)).astype(np.float32)
  labels = rng.integers(0, 4, size=12)
  proxies = rng.normal(size=(6, 4)).astype(np.float32)
  z = features / np.linalg.norm(features, axis=1, keepdims=True)
  p = proxies / np.linalg.norm(proxies, axis=0, keepdims=True)
  logits = z @ p / 0.5
  log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  expected = -np.mean(log_softmax[np.arange(12), labels])
  got = terms.class_proxy(tf.constant(features), tf.constant(labels), tf.constant(proxies), 0.5)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5)
  # Features on their category's proxy score far lower than features off it.
  on = tf.constant(3.0 * p.T[labels])
  off = tf.constant(3.0 * p.T[(labels + 1) % 4])
  assert float(terms.class_proxy(on, labels, proxies, 0.1)) < float(
      terms.class_proxy(off, labels, proxies, 0.1)) - 1.0
  with pytest.raises(ValueError, match="temperature"):
    terms.class_proxy(tf.constant(features), labels, proxies, 0.0)
