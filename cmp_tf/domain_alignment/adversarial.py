"""Adversarial alignment over M modalities: DANN and its class-conditional form CDANN.

DANN (Ganin et al., 2016): an M-way modality discriminator (a small MLP) reads the shared
features through a gradient-reversal layer, so one SGD step trains the discriminator to tell
the modalities apart and the network to make them indistinguishable. CDANN (Li et al., 2018):
the discriminator also gets the category (a learned class embedding added to the features),
so it is the class-conditional feature distributions that are aligned, and each example's
discriminator loss is weighted so that every category counts the same (DomainBed's class
balance).
"""

import keras
import tensorflow as tf

DISCRIMINATOR_WIDTH = 256
DISCRIMINATOR_DEPTH = 2  # hidden layers


def gradient_reversal(x, scale=1.0):
  """Identity forward; the gradient multiplied by -scale backward."""
  scale = float(scale)

  @tf.custom_gradient
  def reverse(value):
    def grad(upstream):
      return -scale * upstream
    return tf.identity(value), grad

  return reverse(x)


class ModalityDiscriminator(keras.layers.Layer):
  """Logits [N, M] of which modality each feature vector came from, read through gradient
  reversal (scale `reversal_scale`); with `num_classes`, conditioned on the category."""

  def __init__(self, num_modalities, *, width=DISCRIMINATOR_WIDTH, depth=DISCRIMINATOR_DEPTH,
               num_classes=None, reversal_scale=1.0, seed=0, **kwargs):
    super().__init__(**kwargs)
    if num_modalities < 2:
      raise ValueError(f"a modality discriminator needs >= 2 modalities, got {num_modalities}")
    self.num_modalities = int(num_modalities)
    self.width, self.depth = int(width), int(depth)
    self.num_classes = None if num_classes is None else int(num_classes)
    self.reversal_scale = float(reversal_scale)
    self.seed = int(seed)
    init = lambda i: keras.initializers.GlorotUniform(seed=self.seed + i)  # noqa: E731
    self.hidden = [keras.layers.Dense(self.width, activation="relu", kernel_initializer=init(i),
                                      name=f"disc_hidden{i}") for i in range(self.depth)]
    self.out = keras.layers.Dense(self.num_modalities, kernel_initializer=init(self.depth),
                                  name="disc_logits")
    self.class_embedding = None

  def build(self, input_shape):
    if self.num_classes is not None:
      self.class_embedding = keras.layers.Embedding(
          self.num_classes, int(input_shape[-1]),
          embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01,
                                                                 seed=self.seed + 100),
          name="disc_class_embedding")
      self.class_embedding.build((None,))
    width = int(input_shape[-1])
    for layer in self.hidden:
      layer.build((None, width))
      width = self.width
    self.out.build((None, width))

  def call(self, features, labels=None):
    h = gradient_reversal(features, self.reversal_scale)
    if self.class_embedding is not None:
      if labels is None:
        raise ValueError("a class-conditional discriminator needs the labels")
      h = h + self.class_embedding(tf.reshape(labels, [-1]))
    for layer in self.hidden:
      h = layer(h)
    return self.out(h)

  def get_config(self):
    return {**super().get_config(), "num_modalities": self.num_modalities, "width": self.width,
            "depth": self.depth, "num_classes": self.num_classes,
            "reversal_scale": self.reversal_scale, "seed": self.seed}


def dann_loss(logits, modality_ids):
  """Mean cross-entropy of the discriminator's modality logits."""
  return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(modality_ids, [-1]), logits=logits))


def cdann_loss(logits, modality_ids, labels, num_classes):
  """Class-balanced cross-entropy: example i weighs 1 / (count of its class in the batch *
  number of classes), so every class present counts the same (DomainBed's CDANN)."""
  labels = tf.reshape(labels, [-1])
  counts = tf.math.bincount(tf.cast(labels, tf.int32), minlength=num_classes,
                            maxlength=num_classes, dtype=logits.dtype)
  weights = 1.0 / (tf.gather(counts, labels) * float(num_classes))
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(modality_ids, [-1]), logits=logits)
  return tf.reduce_sum(weights * losses)
