"""Training steps of any method's stages, built with the trainer's own step function.

The step timed here is `cmp_tf.training.trainer.build_train_step`, the one every run
uses (forward, losses, priors, backward, SGD update, metrics fetched every step), on
a model built as the runner builds it. Priors are unfitted layouts (zero means, unit
variances): the NLL costs the same whatever the values.
"""

import dataclasses

import numpy as np

from cmp_tf import modalities as mod_lib
from cmp_tf.models import flops as flops_lib
from cmp_tf.models import spec as spec_lib
from cmp_tf.priors import PriorParams
from cmp_tf.training import config as config_lib
from cmp_tf.training import recipes, stages, trainer


@dataclasses.dataclass(frozen=True)
class Size:
  """A model size to benchmark: image variant and resolution, classes, batch, GMM K."""
  variant: str
  image_size: int
  num_classes: int
  batch_size: int  # per modality per replica
  gmm_components: int
  source_batch_size: int  # NAT examples per replica of the source network's steps
  text_dim: int = 512


SIZES = {
    # The CPU default of configs/c.flags: alexnet_small at 64x64, 30 categories.
    "default": Size("alexnet_small", 64, 30, 32, 100, 64),
    # The paper's network: AlexNet at 227x227, Places205's 205 categories.
    "full": Size("alexnet", 227, 205, 32, 100, 64),
    # For smoke tests: alexnet_tiny at 32x32.
    "tiny": Size("alexnet_tiny", 32, 8, 4, 4, 8),
}


def get_size(name, batch_size=0):
  """SIZES[name]; `batch_size` > 0 replaces its batch and (doubled) its source batch."""
  if name not in SIZES:
    raise ValueError(f"--size: unknown size {name!r}; expected one of {', '.join(SIZES)}")
  size = SIZES[name]
  if batch_size > 0:
    size = dataclasses.replace(size, batch_size=batch_size, source_batch_size=2 * batch_size)
  return size


def method_stages(method, modalities=mod_lib.ALL_MODALITIES, prior_weight=1e-4):
  """[(stage name, recipes.Stage)] of `method` ("source": the source network's stage)."""
  if method == "source":
    defaults = config_lib.TrainConfig()
    return [("source", recipes.source_stage(
        steps=1, learning_rate=defaults.source_learning_rate, momentum=defaults.momentum,
        weight_decay=defaults.weight_decay))]
  settings = config_lib.TrainConfig(
      modalities=list(modalities), frozen_steps=1, steps=1, lambda_pool5=prior_weight,
      lambda_fc6=prior_weight, lambda_fc7=prior_weight).recipe_settings()
  return [(stage.name, stage) for stage in recipes.build_recipe(method, settings).stages]


def stage_spec(stage, size, *, priors=True, dropout=0.5):
  """The CrossModalSpec a stage trains, with unfitted priors of the stage's kinds."""
  spec = spec_lib.CrossModalSpec(
      modalities=tuple(stage.modalities), num_classes=size.num_classes,
      image_variant=size.variant, image_size=size.image_size, text_dim=size.text_dim,
      share_upper=stage.share_upper, dropout=dropout, exposed_layers=stage.aligned_layers)
  if not (priors and stage.priors):
    return spec
  layouts = {}
  for use in stage.priors:
    components = size.gmm_components if use.kind == recipes.GMM else None
    layouts[use.layer] = (PriorParams.unfitted(use.kind, use.layer, spec.layer_dim(use.layer),
                                               components), use.weight)
  return dataclasses.replace(spec, priors=layouts)


def train_flops_per_example(spec):
  """{modality: training FLOPs per example}: 3x the analytic forward count (forward,
  backward to the activations, backward to the weights)."""
  return {m: 3 * flops_lib.count_flops(spec, m) for m in spec.modalities}


def random_batch(spec, batch_size, seed=0):
  """({modality: x}, {modality: labels}) of random inputs in the dataset's value ranges."""
  rng = np.random.default_rng(seed)
  inputs, labels = {}, {}
  for m in spec.modalities:
    if mod_lib.is_image(m):
      shape = (batch_size, spec.image_size, spec.image_size, 3)
      inputs[m] = rng.random(shape, dtype=np.float32)
    else:
      vectors = rng.standard_normal((batch_size, spec.text_dim)).astype(np.float32)
      inputs[m] = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    labels[m] = rng.integers(0, spec.num_classes, batch_size).astype(np.int32)
  return inputs, labels


def synthetic_input(strategy, spec, batch_size):
  """An iterator repeating one random batch per replica: the input costs nothing."""
  import tensorflow as tf

  batch = random_batch(spec, batch_size)

  def dataset_fn(context):
    del context
    return tf.data.Dataset.from_tensors(batch).repeat()

  return iter(strategy.distribute_datasets_from_function(dataset_fn))


@dataclasses.dataclass
class StageStep:
  """One stage's training step, ready to time."""
  name: str
  spec: spec_lib.CrossModalSpec
  run: object  # () -> None: one step, metrics fetched as the trainer does
  examples_per_step: int
  flops_per_step: float
  trainable_variables: int


def build_stage_step(name, stage, size, strategy, *, batch_size=None, input_iterator=None,
                     priors=True, jit_compile=False, seed=0):
  """A StageStep of `stage` at `size` (its batch replaced by `batch_size`) under `strategy`;
  random input unless given an iterator."""
  if batch_size:
    size = dataclasses.replace(size, batch_size=batch_size)
  spec = stage_spec(stage, size, priors=priors)
  model = stages.build_model(spec, strategy, seed)
  with_priors = [u for u in stage.priors if spec.priors and u.layer in spec.priors]
  job = stages.stage_job(
      stage, model, index=0, per_replica_batch=size.batch_size, make_dataset=None,
      checkpoint_dir="", prior_weights={u.layer: u.weight for u in with_priors},
      loop=stages.LoopSettings(checkpoint_every=1, jit_compile=jit_compile, progress=False),
      discriminators=stages.build_discriminators(stage, model, strategy, seed))
  variables = job.trainable_variables
  with strategy.scope():
    optimizer = trainer.make_optimizer(stage.learning_rate, stage.momentum)
    optimizer.build(variables)
  train_step, global_batch = trainer.build_train_step(job, strategy, optimizer)
  iterator = input_iterator if input_iterator is not None else synthetic_input(
      strategy, spec, size.batch_size)

  def run():
    metrics = train_step(iterator)
    values = {k: v.numpy() for k, v in metrics.items()}  # the trainer reads every step
    if not np.isfinite(values["loss/total"]):
      raise FloatingPointError(f"{name}: non-finite loss in the benchmark step")

  flops = train_flops_per_example(spec)
  return StageStep(name=name, spec=spec, run=run,
                   examples_per_step=global_batch * len(spec.modalities),
                   flops_per_step=float(sum(flops.values())) * global_batch,
                   trainable_variables=len(variables))


def run_steps(step, count):
  """A callable running `count` steps of `step` (for common.interleaved)."""

  def run():
    for _ in range(count):
      step.run()

  return run
