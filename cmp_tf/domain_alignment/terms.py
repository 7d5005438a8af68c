"""Multi-domain alignment terms on a shared representation, over M modalities at once.

The standard set of alignment over N labelled domains (as DomainBed runs it), each written
for a batch holding several modalities:

  coral          Deep CORAL (Sun & Saenko, 2016): per pair of modalities, the mean squared
                 difference of their feature means plus that of their covariances;
                 averaged over the M(M-1)/2 pairs.
  mmd            MMD with a multi-kernel Gaussian (Gretton et al., 2012; Li et al., 2018):
                 k(x, y) = sum_g exp(-g ||x - y||^2) over several bandwidths g; per pair
                 mean k(x, x') + mean k(y, y') - 2 mean k(x, y), averaged over the pairs.
  cross_modal_supcon
                 supervised contrastive (Khosla et al., 2020) across modalities: each
                 example's positives are the examples of its category in *other*
                 modalities; the denominator is every other example of the batch.

  class_proxy    ours: each example's normalised features scored against the normalised
                 columns of the shared classifier (one proxy per category) at a temperature,
                 cross-entropy with its category (a normalised softmax, as proxy losses
                 are): every modality is pulled to the same direction per category, which is
                 what cosine retrieval across modalities reads.

The adversarial terms (DANN, CDANN) are in `adversarial.py`. Every function takes the
features of one (global) batch as a list with one [n_m, D] tensor per modality, or as
[N, D] with per-example modality ids, and returns a scalar; float32 in, float32 out.
"""

import itertools

import tensorflow as tf

# DomainBed's MMD bandwidths: exp(-g d^2) for g over seven decades.
MMD_GAMMAS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
SUPCON_TEMPERATURE = 0.1


def _check_groups(groups, name):
  if len(groups) < 2:
    raise ValueError(f"{name}: needs the features of at least two modalities, got "
                     f"{len(groups)}")
  for i, x in enumerate(groups):
    if x.shape.rank != 2:
      raise ValueError(f"{name}: modality {i}'s features must be [n, D], got shape {x.shape}")


def _pairs(groups):
  return list(itertools.combinations(range(len(groups)), 2))


def covariance(x):
  """[D, D] unbiased covariance of the rows of x [n, D] (n >= 2)."""
  n = tf.cast(tf.shape(x)[0], x.dtype)
  centred = x - tf.reduce_mean(x, axis=0, keepdims=True)
  return tf.matmul(centred, centred, transpose_a=True) / (n - 1.0)


def coral(groups):
  """Deep CORAL over every pair of modalities: mean over pairs of
  mean_d (mu_i - mu_j)^2 + mean_{d,d'} (C_i - C_j)^2."""
  _check_groups(groups, "coral")
  means = [tf.reduce_mean(x, axis=0) for x in groups]
  covariances = [covariance(x) for x in groups]
  terms = [tf.reduce_mean(tf.square(means[i] - means[j]))
           + tf.reduce_mean(tf.square(covariances[i] - covariances[j]))
           for i, j in _pairs(groups)]
  return tf.add_n(terms) / float(len(terms))


def _squared_distances(x, y):
  """[n, m] ||x_i - y_j||^2, clipped at 0 against rounding."""
  xx = tf.reduce_sum(tf.square(x), axis=1, keepdims=True)
  yy = tf.reduce_sum(tf.square(y), axis=1, keepdims=True)
  return tf.maximum(xx - 2.0 * tf.matmul(x, y, transpose_b=True) + tf.transpose(yy), 0.0)


def gaussian_kernel(x, y, gammas=MMD_GAMMAS):
  """[n, m] sum_g exp(-g ||x_i - y_j||^2)."""
  d = _squared_distances(x, y)
  return tf.add_n([tf.exp(-g * d) for g in gammas])


def mmd(groups, gammas=MMD_GAMMAS):
  """Multi-kernel Gaussian MMD^2 (biased estimate, as DomainBed's) averaged over every pair
  of modalities."""
  _check_groups(groups, "mmd")
  if not gammas or any(not g > 0 for g in gammas):
    raise ValueError(f"mmd: bandwidths must be positive, got {gammas}")
  within = [tf.reduce_mean(gaussian_kernel(x, x, gammas)) for x in groups]
  terms = [within[i] + within[j]
           - 2.0 * tf.reduce_mean(gaussian_kernel(groups[i], groups[j], gammas))
           for i, j in _pairs(groups)]
  return tf.add_n(terms) / float(len(terms))


def cross_modal_supcon(features, labels, modality_ids, temperature=SUPCON_TEMPERATURE):
  """Supervised contrastive loss whose positives are in other modalities.

  For anchor i with positives P(i) = {p : label_p = label_i, modality_p != modality_i}:
  l_i = -1/|P(i)| sum_{p in P(i)} log(exp(s_ip / t) / sum_{a != i} exp(s_ia / t)), s the
  cosine similarity; the loss is the mean of l_i over anchors with a positive (0 when no
  anchor has one: a batch can hold no pair of one category across modalities).
  """
  if not temperature > 0:
    raise ValueError(f"cross_modal_supcon: temperature must be > 0, got {temperature}")
  z = tf.math.l2_normalize(features, axis=1)
  logits = tf.matmul(z, z, transpose_b=True) / temperature
  n = tf.shape(logits)[0]
  not_self = tf.logical_not(tf.eye(n, dtype=tf.bool))
  # log-softmax over every other example (the anchor itself left out of the denominator)
  masked = tf.where(not_self, logits, tf.fill(tf.shape(logits), logits.dtype.min))
  log_prob = logits - tf.reduce_logsumexp(masked, axis=1, keepdims=True)
  labels = tf.reshape(labels, [-1])
  modality_ids = tf.reshape(modality_ids, [-1])
  positive = tf.logical_and(tf.equal(labels[:, None], labels[None, :]),
                            tf.not_equal(modality_ids[:, None], modality_ids[None, :]))
  positive = tf.cast(positive, logits.dtype)
  count = tf.reduce_sum(positive, axis=1)
  per_anchor = -tf.reduce_sum(positive * log_prob, axis=1) / tf.maximum(count, 1.0)
  has_positive = tf.cast(count > 0, logits.dtype)
  return tf.math.divide_no_nan(tf.reduce_sum(per_anchor * has_positive),
                               tf.reduce_sum(has_positive))


def class_proxy(features, labels, proxies, temperature=SUPCON_TEMPERATURE):
  """Mean cross-entropy of softmax(cos(features_i, proxies[:, c]) / t) with each example's
  category (features [N, D], labels [N], proxies [D, C]: the shared classifier's kernel)."""
  if not temperature > 0:
    raise ValueError(f"class_proxy: temperature must be > 0, got {temperature}")
  z = tf.math.l2_normalize(features, axis=1)
  p = tf.math.l2_normalize(tf.cast(proxies, features.dtype), axis=0)
  logits = tf.matmul(z, p) / temperature
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(labels, [-1]), logits=logits))
