"""What a stage needs around the loop: its model, its frozen set, its input, its validation.

Models of successive stages are separate Keras models whose layers have the same
names, so a stage starts from the source network or from the previous stage by
copying weights by name (`cmp_tf.models.transfer.transfer_weights`).
"""

import dataclasses

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.data import input_pipeline
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.layer_names import CLASSIFIER, UPPER_LAYERS
from cmp_tf.models import cross_modal, transfer
from cmp_tf.models import spec as spec_lib
from cmp_tf.seeds import derive_seed
from cmp_tf.training import plateau as plateau_lib
from cmp_tf.training import trainer

EVAL_BATCH = 128


def model_spec(*, manifest, modalities, image_variant, image_size, dropout, share_upper,
               priors=None, exposed_layers=()):
  """The CrossModalSpec of a model over `modalities` for the dataset of `manifest`
  (`exposed_layers`: what a stage's alignment terms read)."""
  return spec_lib.CrossModalSpec(
      modalities=tuple(modalities), num_classes=len(manifest["categories"]),
      image_variant=image_variant, image_size=int(image_size),
      text_dim=int(manifest["vector_dim"]), share_upper=bool(share_upper),
      dropout=float(dropout), priors=priors or None, exposed_layers=tuple(exposed_layers))


def build_discriminators(stage, model, strategy, seed):
  """The modality discriminators of the stage's adversarial alignment terms ({} when it
  has none), built under `strategy`'s scope and seeded from `seed`."""
  if not stage.alignment:
    return {}
  from cmp_tf.domain_alignment import stage_terms
  spec = model.spec
  with strategy.scope():
    return stage_terms.build_discriminators(
        stage, dims={layer: spec.layer_dim(layer) for layer in stage.aligned_layers},
        num_classes=spec.num_classes, seed=seed)


def alignment_loss(stage, model, discriminators):
  """(outputs, labels) -> {term: weight * term on the global batch}, or None when the stage
  has no alignment term. The class-proxy term reads the shared classifier's kernel."""
  if not stage.alignment:
    return None
  from cmp_tf.domain_alignment import stage_terms
  classifier = model.get_layer(CLASSIFIER)

  def loss(outputs, labels):
    return {use.term: use.weight * stage_terms.alignment_term(
        use, outputs, labels, stage.modalities, discriminators=discriminators,
        num_classes=model.spec.num_classes, proxies=classifier.kernel)
        for use in stage.alignment}

  return loss


def without_priors(spec):
  """The same spec with no prior layers and nothing exposed: what is saved and evaluated."""
  return dataclasses.replace(spec, priors=None, exposed_layers=())


def build_model(spec, strategy, seed):
  """A freshly initialised model under `strategy`, its weights a function of `seed`."""
  with strategy.scope():
    return cross_modal.build_cross_modal_model(spec, seed=seed)


def copy_weights(src, dst, *, from_source, modalities, fresh_upper=()):
  """Copies `src` into `dst` by layer name; every trainable layer of dst must get weights,
  except DSC's MLP when starting from the (NAT-only) source: it keeps its N(0, 0.1) init,
  and the own upper copies of the modalities in `fresh_upper` (see transfer_weights)."""
  fresh_upper = tuple(fresh_upper) if from_source else ()
  copied = set(transfer.transfer_weights(src, dst, from_source=from_source,
                                       fresh_upper=fresh_upper))
  exempt = set()
  if from_source and mod_lib.DSC in modalities:
    exempt = {layer.name for layer in cross_modal.branch_layers(dst, mod_lib.DSC)}
  exempt |= {f"{m}_{layer}" for m in fresh_upper for layer in UPPER_LAYERS}
  missing = [layer.name for layer in dst.layers
             if layer.trainable_weights and layer.name not in copied | exempt]
  if missing:
    origin = "the source network" if from_source else "the previous stage"
    raise ValueError(f"initialising from {origin}: no weights for layers {missing}")
  return sorted(copied)


def prior_weights(stage, fitted, *, per_dimension):
  """{layer: lambda} of a stage's priors; `per_dimension` divides each by the width D of
  the fitted prior (`fitted`: {(kind, layer): PriorParams}), so the loss weighs the mean
  NLL per unit rather than the NLL summed over units."""
  return {u.layer: u.weight / (fitted[(u.kind, u.layer)].dim if per_dimension else 1)
          for u in stage.priors}


def trainable_variables(model, *, freeze_upper):
  """The model's trainable variables, without the shared upper's when it is frozen."""
  variables = list(model.trainable_variables)
  if not freeze_upper:
    return variables
  frozen = {id(v) for layer in cross_modal.upper_layers(model) for v in layer.trainable_weights}
  if not frozen:
    raise ValueError("freeze_upper: the model has no upper layers to freeze")
  return [v for v in variables if id(v) not in frozen]


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """How the loop runs a stage, whatever the stage: none of these changes the weights
  (jit_compile aside, which needs --nodeterministic)."""
  checkpoint_every: int
  keep_checkpoints: int = 2
  log_every: int = 20
  jit_compile: bool = False
  progress: bool = True


def stage_job(stage, model, *, index, per_replica_batch, make_dataset, checkpoint_dir,
              loop, prior_weights=None, global_step_offset=0, summary_writer=None,
              evaluate_dev=None, discriminators=None):
  """The trainer's job for `stage` (a recipes.Stage) on `model`: its trainable variables
  (the shared upper's left out when the stage freezes it; the `discriminators` of its
  adversarial terms added), its alignment loss, and where the loop saves and reports;
  `loop` is a LoopSettings. The one place a StageJob is put together."""
  discriminators = dict(discriminators or {})
  extra = [v for d in discriminators.values() for v in d.trainable_weights]
  return trainer.StageJob(
      index=index, stage=stage, model=model,
      trainable_variables=trainable_variables(model, freeze_upper=stage.freeze_upper) + extra,
      alignment_loss=alignment_loss(stage, model, discriminators),
      extra_variables=[v for d in discriminators.values() for v in d.variables],
      per_replica_batch=per_replica_batch, make_dataset=make_dataset,
      checkpoint_dir=checkpoint_dir, checkpoint_every=loop.checkpoint_every,
      keep_checkpoints=loop.keep_checkpoints, prior_weights=dict(prior_weights or {}),
      global_step_offset=global_step_offset, log_every=loop.log_every,
      jit_compile=loop.jit_compile, summary_writer=summary_writer, progress=loop.progress,
      evaluate_dev=evaluate_dev)


def dataset_factory(strategy, *, data_dir, modalities, per_replica_batch, image_size,
                    exclude_categories, seed, stage_key):
  """start step -> distributed joint dataset from that step on. The stream is one
  function of (seed, stage) and the step, so where a run stops and resumes (and how
  often it checkpoints) never changes the batches it sees."""
  global_batch = per_replica_batch * strategy.num_replicas_in_sync
  stage_seed = derive_seed(seed, stage_key)

  def make(start_step):
    def dataset_fn(input_context):
      return input_pipeline.joint_dataset(
          data_dir, modalities, batch_size=global_batch, image_size=image_size,
          exclude_categories=exclude_categories, seed=stage_seed, start_step=start_step,
          input_context=input_context)

    return strategy.distribute_datasets_from_function(dataset_fn)

  return make


def dev_evaluator(data_dir, modalities, *, image_size, exclude_categories=()):
  """model -> {modality: plateau.DevScores on the dev split}, the split model selection
  reads (never val). The dev examples are read once, in a fixed order; `exclude_categories`
  is left out of every modality but NAT, as in the stage's training data (the zero-shot
  protocol)."""
  data = {}
  for m in modalities:
    ds = input_pipeline.modality_dataset(
        data_dir, m, "dev", batch_size=EVAL_BATCH, training=False, image_size=image_size,
        exclude_categories=() if m == mod_lib.NAT else exclude_categories)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    data[m] = [x for x, _ in batches], np.concatenate([y for _, y in batches])
  encoders = {}

  def evaluate(model):
    out = {}
    for m, (xs, labels) in data.items():
      key = (id(model), m)
      if key not in encoders:
        encoders[key] = cross_modal.feature_model(model, m)
      logits = np.concatenate([encoders[key](x, training=False)["logits"].numpy() for x in xs])
      out[m] = plateau_lib.DevScores.from_logits(logits, labels)
    return out

  return evaluate


def predict_logits(model, data_dir, modality, *, image_size, batch_size=EVAL_BATCH):
  """(logits [N, C], labels [N]) of the validation split of one modality, in inference mode."""
  encoder = cross_modal.feature_model(model, modality)
  ds = input_pipeline.modality_dataset(data_dir, modality, "val", batch_size=batch_size,
                                       training=False, image_size=image_size)
  logits, labels = [], []
  for x, y in ds:
    logits.append(encoder(x, training=False)["logits"].numpy())
    labels.append(y.numpy())
  return np.concatenate(logits), np.concatenate(labels)


def validation_accuracy(model, data_dir, modalities, *, image_size, heldout_categories=()):
  """{"val_accuracy": {m: acc}, "val_accuracy_heldout": {m: acc on held-out categories}}."""
  manifest = manifest_lib.read_manifest(data_dir, check_files=False)
  heldout = manifest_lib.label_ids(manifest, heldout_categories, where="heldout_categories")
  result = {"val_accuracy": {}, "val_accuracy_heldout": {}}
  for m in modalities:
    logits, labels = predict_logits(model, data_dir, m, image_size=image_size)
    correct = np.argmax(logits, axis=-1) == labels
    result["val_accuracy"][m] = round(float(np.mean(correct)), 4)
    mask = np.isin(labels, heldout)
    if heldout and mask.any():
      result["val_accuracy_heldout"][m] = round(float(np.mean(correct[mask])), 4)
  if not result["val_accuracy_heldout"]:
    del result["val_accuracy_heldout"]
  return result
