"""A training stage's alignment terms (`cmp_tf.training.recipes.AlignmentUse`) on one
step's global batch.

Each term reads one layer's features of every modality, as the model outputs them when the
layer is exposed (`cross_modal.exposed_output`). Means, covariances, kernel sums, similarity
matrices and discriminator losses are computed over the **global** batch: inside a replica
the features and labels of all replicas are gathered first (`ReplicaContext.all_gather`,
differentiable), so every replica computes the same term, and with the trainer's division
by the number of replicas the summed gradients equal one replica's on the whole batch —
1 and 2 replicas train the same weights. Every term is permutation-invariant over the
examples of a modality, so the order in which replicas hold them does not matter.
"""

import tensorflow as tf

from cmp_tf.domain_alignment import adversarial, names, terms
from cmp_tf.models.cross_modal import exposed_output
from cmp_tf.seeds import derive_seed


def global_batch(outputs, labels, modalities, layer):
  """([features [n_m, D] per modality], [labels [n_m] per modality]) of the global batch."""
  features = [tf.cast(outputs[exposed_output(m, layer)], tf.float32) for m in modalities]
  ids = [tf.reshape(labels[m], [-1]) for m in modalities]
  context = tf.distribute.get_replica_context()
  if context is not None and context.num_replicas_in_sync > 1:
    features = [context.all_gather(f, axis=0) for f in features]
    ids = [context.all_gather(i, axis=0) for i in ids]
  return features, ids


def _stacked(features, ids):
  """[N, D] features, [N] labels and [N] modality indices of the groups, concatenated."""
  modality_ids = tf.concat([tf.fill(tf.shape(i), k) for k, i in enumerate(ids)], axis=0)
  return tf.concat(features, axis=0), tf.concat(ids, axis=0), modality_ids


def build_discriminators(stage, *, dims, num_classes, seed):
  """{term: adversarial.ModalityDiscriminator} for the stage's DANN / CDANN terms, built
  (call under the strategy's scope); `dims`: {layer: width}."""
  made = {}
  for use in stage.alignment:
    if use.term not in names.ADVERSARIAL_TERMS:
      continue
    discriminator = adversarial.ModalityDiscriminator(
        len(stage.modalities), seed=derive_seed(seed, f"{use.term}_discriminator"),
        num_classes=num_classes if use.term == names.CDANN else None,
        name=f"{use.term}_discriminator")
    discriminator.build((None, dims[use.layer]))
    made[use.term] = discriminator
  return made


def alignment_term(use, outputs, labels, modalities, *, discriminators, num_classes,
                   proxies=None):
  """The unweighted value of alignment term `use` on the global batch (float32 scalar);
  `proxies`: the shared classifier's kernel [D, C] (the class-proxy term)."""
  features, ids = global_batch(outputs, labels, modalities, use.layer)
  if use.term == names.CORAL:
    return terms.coral(features)
  if use.term == names.MMD:
    return terms.mmd(features)
  stacked, stacked_labels, modality_ids = _stacked(features, ids)
  if use.term == names.SUPCON:
    return terms.cross_modal_supcon(stacked, stacked_labels, modality_ids,
                                    temperature=use.temperature)
  if use.term == names.PROXY:
    return terms.class_proxy(stacked, stacked_labels, proxies, temperature=use.temperature)
  discriminator = discriminators[use.term]
  if use.term == names.DANN:
    return adversarial.dann_loss(discriminator(stacked), modality_ids)
  logits = discriminator(stacked, stacked_labels)
  return adversarial.cdann_loss(logits, modality_ids, stacked_labels, num_classes)
