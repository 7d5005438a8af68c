"""The one training loop: runs any stage of any recipe under a tf.distribute strategy.

Per step and replica the loss is

  sum_m CE_m / global_batch                         (tf.nn.compute_average_loss)
  + sum_layers lambda * mean NLL / num_replicas     (the priors' add_loss, per-replica means)
  + other model losses / num_replicas
  + weight_decay / 2 * sum ||kernel||^2 / num_replicas   (Caffe-style L2, counted once)

so the gradients the optimizer sums over replicas equal those of one replica seeing
the global batch. Frozen layers are simply absent from the variable list, so their
weights stay bit-identical. The input is one stream per stage whose batch at step s
depends only on the stage's seed and s (`make_dataset(start_step)`): a run killed at
any time and resumed from its newest checkpoint sees exactly the batches it would
have seen, whatever `checkpoint_every` is.

A stage stops where its stop rule says (`stage.stop`). Under the convergence rule
(`plateau.PlateauRule`) it is evaluated on the dev split every `rule.every` steps, stops
when no modality's dev loss still falls beyond its noise (or at the rule's cap), and
ends with the weights of its best evaluation (kept as best-<step>.weights.h5 beside the
checkpoints; the rule's history is saved inside every checkpoint).
"""

import dataclasses
import glob
import os
import sys
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from cmp_tf.training import checkpoints, recipes
from cmp_tf.training import plateau as plateau_lib


class NonFiniteLossError(FloatingPointError):
  """The loss or its gradient became NaN/inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class StageJob:
  """One stage of a recipe (`stage`: what trains, how long, with which SGD settings) and
  what the loop needs to run it here (`cmp_tf.training.stages.stage_job` builds it)."""
  index: int
  stage: recipes.Stage
  model: keras.Model
  trainable_variables: Sequence  # frozen layers' variables are not in here
  per_replica_batch: int
  make_dataset: Optional[Callable[[int], object]]  # start step -> distributed dataset
  checkpoint_dir: str
  checkpoint_every: int
  keep_checkpoints: int = 2
  prior_weights: dict = dataclasses.field(default_factory=dict)  # {layer: lambda}, in order
  global_step_offset: int = 0  # steps of earlier stages, for TensorBoard's x axis
  log_every: int = 20
  jit_compile: bool = False
  summary_writer: Optional[object] = None
  progress: bool = True
  # model -> {modality: plateau.DevScores}
  evaluate_dev: Optional[Callable[[keras.Model], dict]] = None
  # (outputs, labels) -> {term: weighted alignment term on the global batch}
  alignment_loss: Optional[Callable[[dict, dict], dict]] = None
  extra_variables: Sequence = ()  # trained beside the model (discriminators): checkpointed

  @property
  def name(self):
    return self.stage.name

  @property
  def modalities(self):
    return self.stage.modalities

  @property
  def steps(self):
    """The most steps the stage trains (its stop rule's cap)."""
    return self.stage.steps

  @property
  def plateau(self):
    """The stage's convergence rule, or None (it trains exactly `steps`)."""
    return self.stage.plateau

  @property
  def prior_layers(self):
    """The layers whose ActivationPrior losses are the stage's prior terms."""
    return tuple(self.prior_weights)


def decayed_kernels(variables):
  """The variables weight decay applies to: kernels, not biases (Caffe's AlexNet)."""
  return [v for v in variables if v.path.split("/")[-1] in ("kernel", "embeddings")]


def make_optimizer(learning_rate, momentum):
  return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)


def build_train_step(job, strategy, optimizer):
  """tf.function running one step on every replica; returns global metrics."""
  model = job.model
  variables = list(job.trainable_variables)
  decayed = decayed_kernels(variables)
  num_replicas = strategy.num_replicas_in_sync
  global_batch = job.per_replica_batch * num_replicas
  prior_layers = [model.get_layer(f"{layer}_prior") for layer in job.prior_layers]

  def forward_backward(inputs, labels):
    with tf.GradientTape() as tape:
      outputs = model(inputs, training=True)
      metrics = {}
      loss = tf.constant(0.0)
      for m in job.modalities:
        logits = tf.cast(outputs[m], tf.float32)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels[m], logits)
        ce = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        metrics[f"loss/{m}"] = ce
        correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels[m])
        metrics[f"correct/{m}"] = tf.reduce_sum(tf.cast(correct, tf.float32))
        loss += ce
      all_losses = list(model.losses)
      prior_total = tf.constant(0.0)
      for name, layer in zip(job.prior_layers, prior_layers):
        term = tf.add_n(layer.losses) / num_replicas if layer.losses else tf.constant(0.0)
        metrics[f"prior_loss/{name}"] = term
        prior_total += term
      other = (tf.add_n(all_losses) / num_replicas - prior_total) if all_losses else 0.0
      alignment_total = tf.constant(0.0)
      if job.alignment_loss is not None:
        # Each replica computes the term on the gathered global batch (stage_terms).
        for name, value in job.alignment_loss(outputs, labels).items():
          term = value / num_replicas
          metrics[f"alignment_loss/{name}"] = term
          alignment_total += term
      l2 = tf.constant(0.0)
      if job.stage.weight_decay and decayed:
        l2 = 0.5 * job.stage.weight_decay * tf.add_n(
            [tf.reduce_sum(tf.square(v)) for v in decayed]) / num_replicas
      metrics["loss/weight_decay"] = l2
      objective = loss + prior_total + other + alignment_total
      metrics["loss/objective"] = objective  # eq. 1 of the paper, without weight decay
      loss = objective + l2
      metrics["loss/total"] = loss
    grads = tape.gradient(loss, variables)
    # Sum over replicas of each replica's squared gradient norm: only its finiteness is used.
    metrics["grad_sq"] = tf.add_n([tf.reduce_sum(tf.square(g)) for g in grads if g is not None])
    return grads, metrics

  if job.alignment_loss is not None:
    # An alignment term gathers the batch across replicas (a merge_call), which a nested
    # tf.function cannot hold: its forward and backward run inline in the step function.
    if job.jit_compile and num_replicas > 1:
      raise ValueError(f"stage {job.name}: its alignment term gathers the global batch "
                       "across replicas, which cannot be compiled with XLA; use "
                       "--nojit_compile")
    compiled = (tf.function(forward_backward, jit_compile=True) if job.jit_compile
                else forward_backward)
  else:
    compiled = tf.function(forward_backward, jit_compile=job.jit_compile)

  def replica_step(inputs, labels):
    grads, metrics = compiled(inputs, labels)
    optimizer.apply_gradients(
        [(g, v) for g, v in zip(grads, variables) if g is not None])
    return metrics

  @tf.function
  def train_step(iterator):
    inputs, labels = next(iterator)
    per_replica = strategy.run(replica_step, args=(inputs, labels))
    return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()}

  return train_step, global_batch


class _Accumulator:
  """Means of the step metrics over a logging interval."""

  def __init__(self):
    self.sums, self.count = {}, 0

  def add(self, values):
    for k, v in values.items():
      self.sums[k] = self.sums.get(k, 0.0) + float(v)
    self.count += 1

  def means(self):
    return {k: v / max(1, self.count) for k, v in self.sums.items()}


def _summaries(job, metrics, global_batch, num_replicas):
  """Step metrics -> readable scalars: per-modality loss and accuracy, prior NLL."""
  out = {k: metrics[k] for k in ("loss/total", "loss/objective", "loss/weight_decay")}
  for m in job.modalities:
    out[f"loss/{m}"] = metrics[f"loss/{m}"]
    out[f"accuracy/{m}"] = metrics[f"correct/{m}"] / global_batch
  out.update({k: v for k, v in metrics.items() if k.startswith("alignment_loss/")})
  for layer in job.prior_layers:
    term = metrics[f"prior_loss/{layer}"]
    out[f"prior_loss/{layer}"] = term
    weight = job.prior_weights.get(layer, 0.0)
    if weight > 0:
      # The loss is weight * sum over branches of the mean NLL of each branch's batch.
      out[f"prior_nll/{layer}"] = term / weight / len(job.modalities)
  return out


def _best_path(job, step):
  return os.path.join(job.checkpoint_dir, f"best-{int(step)}.weights.h5")


def _remove_other_best(job, keep_step):
  """Removes best-<step> files other than `keep_step`'s (left by a superseded best or
  by an evaluation after the checkpoint a resumed stage restarted from)."""
  keep = _best_path(job, keep_step) if keep_step is not None else None
  for path in glob.glob(os.path.join(job.checkpoint_dir, "best-*.weights.h5")):
    if path != keep:
      os.remove(path)


def run_stage(job, strategy):
  """Trains one stage to `job.steps` (or until its convergence rule stops it), resuming
  from its newest checkpoint.

  Returns {"steps", "resumed_from", "trained_steps", "wall_time_s", "examples_per_s",
  "final", "stop_reason"}, with the rule: "best_step", "dev_accuracy" (of the best
  evaluation), "dev_history". The model ends with the weights of the best evaluation.
  Raises NonFiniteLossError naming the stage and step when the loss goes non-finite.
  """
  if job.plateau is not None and job.evaluate_dev is None:
    raise ValueError(f"stage {job.name}: a convergence rule needs evaluate_dev")
  with strategy.scope():
    optimizer = make_optimizer(job.stage.learning_rate, job.stage.momentum)
    optimizer.build(list(job.trainable_variables))
  checkpoint = checkpoints.StageCheckpoint(job.checkpoint_dir, job.model, optimizer,
                                           max_to_keep=job.keep_checkpoints,
                                           extra_variables=job.extra_variables)
  start = checkpoint.restore_latest()
  rule_state = None
  if job.plateau is not None:
    rule_state = plateau_lib.PlateauState.from_json(job.plateau, checkpoint.state)
    rule_state = rule_state.truncated(start)  # a checkpoint holds its own step's evaluation
    best = rule_state.best
    _remove_other_best(job, best["step"] if best else None)
  train_step, global_batch = build_train_step(job, strategy, optimizer)
  num_replicas = strategy.num_replicas_in_sync
  examples_per_step = global_batch * len(job.modalities)

  def done(step):
    return step >= job.steps or (rule_state is not None and rule_state.stop_reason)

  progress = _Progress(job, start) if job.progress else None
  if progress is not None:
    rule = (f"; stops after {job.plateau.patience} evaluations (one every "
            f"{job.plateau.every} steps) in which no modality's dev loss fell by more than "
            f"{job.plateau.z:g} standard errors" if job.plateau else "")
    print(f"stage {job.index} ({job.name}): steps {start}..{job.steps}{rule}, "
          f"{len(job.trainable_variables)} trainable variables, global batch "
          f"{global_batch} x {len(job.modalities)} modalities, {num_replicas} replica(s)",
          flush=True)

  step = start
  window = _Accumulator()
  last = {}
  started = time.perf_counter()
  trained_steps = 0
  iterator = iter(job.make_dataset(start)) if not done(start) else None
  while not done(step):
    raw = {k: v.numpy() for k, v in train_step(iterator).items()}
    if not (np.isfinite(raw["loss/total"]) and np.isfinite(raw["grad_sq"])):
      raise NonFiniteLossError(
          f"stage {job.index} ({job.name}): non-finite loss {raw['loss/total']} or "
          f"gradient at step {step + 1} of {job.steps}; stopped without saving, the last "
          f"good checkpoint is {checkpoint.latest or 'none (the stage had not saved yet)'}; "
          "lower the learning rate or the prior weights")
    step += 1
    trained_steps += 1
    values = _summaries(job, raw, global_batch, num_replicas)
    window.add(values)
    if progress is not None:
      progress.update(step, values)
    evaluated = improved = False
    if rule_state is not None and job.plateau.is_evaluation_step(step):
      dev = job.evaluate_dev(job.model)
      improved, evaluated = rule_state.add(step, dev), True
      if improved:
        checkpoints.save_weights_atomic(job.model, _best_path(job, step))
      _write_dev_summaries(job, rule_state.history[-1], step)
      if progress is not None:
        progress.dev(step, rule_state)
    finished = done(step)
    if step % job.log_every == 0 or finished:
      last = window.means()
      _write_summaries(job, last, step, time.perf_counter() - started, trained_steps,
                       examples_per_step)
      window = _Accumulator()
    if step % job.checkpoint_every == 0 or finished or evaluated:
      checkpoint.save(step, rule_state.to_json() if rule_state is not None else "")
      if improved:
        _remove_other_best(job, step)
  wall = time.perf_counter() - started
  result = {
      "steps": step,
      "max_steps": job.steps,
      "resumed_from": start,
      "trained_steps": trained_steps,
      "wall_time_s": round(wall, 2),
      "examples_per_s": round(trained_steps * examples_per_step / wall, 1) if wall > 0 else None,
      "final": {k: round(float(v), 5) for k, v in last.items()},
      "stop_reason": plateau_lib.STOPPED_FIXED,
  }
  if rule_state is not None:
    best = rule_state.best
    job.model.load_weights(_best_path(job, best["step"]))
    result.update(stop_reason=rule_state.stop_reason, best_step=best["step"],
                  dev_accuracy=best["dev_accuracy"], dev_history=rule_state.history)
  return result


def _write_dev_summaries(job, entry, step):
  """One evaluation of the convergence rule (a history entry) to TensorBoard."""
  if job.summary_writer is None:
    return
  with job.summary_writer.as_default(step=job.global_step_offset + step):
    for m, acc in entry["dev_accuracy"].items():
      tf.summary.scalar(f"dev_accuracy/{m}", acc)
      tf.summary.scalar(f"dev_loss/{m}", entry["dev_loss"][m])
    tf.summary.scalar("dev_accuracy/mean", entry["mean"])
  job.summary_writer.flush()


def time_left(seconds, *, at_most=False):
  """"12 min left" (or "at most ..." where a stop rule may end the stage before its cap)."""
  if seconds is None:
    return "time left unknown"
  text = f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
  return f"{'at most ' if at_most else ''}{text} left"


class _Progress:
  """A Keras progress bar on a terminal; one plain line per logging interval otherwise."""

  def __init__(self, job, start):
    self.job = job
    self.interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    self.started, self.start = time.perf_counter(), start
    self.bar = keras.utils.Progbar(job.steps) if self.interactive else None
    if self.bar is not None and start:
      self.bar.update(start)

  def update(self, step, values):
    accuracy = [(f"acc_{m}", values[f"accuracy/{m}"]) for m in self.job.modalities]
    if self.bar is not None:
      self.bar.update(step, values=[("loss", values["loss/objective"])] + accuracy)
    elif step % self.job.log_every == 0 or step == self.job.steps:
      rate = (step - self.start) / max(1e-9, time.perf_counter() - self.started)
      shown = " ".join(f"{k} {v:.3f}" for k, v in accuracy)
      left = time_left((self.job.steps - step) / rate if rate > 0 else None,
                       at_most=self.job.plateau is not None)
      print(f"  stage {self.job.index} step {step}/{self.job.steps}: loss "
            f"{values['loss/objective']:.4f} {shown} ({rate:.2f} steps/s, {left})",
            flush=True)

  def dev(self, step, state):
    entry, best = state.history[-1], state.best
    shown = " ".join(f"{m} {a:.3f}" for m, a in entry["dev_accuracy"].items())
    falls = " ".join(
        f"{m}{'*' if m in entry['gained'] else ''} {entry['gain'][m]:+.3f}/{entry['se'][m]:.3f}"
        for m in entry["gain"])
    line = (f"  stage {self.job.index} step {step}: dev accuracy {shown} (mean "
            f"{entry['mean']:.4f}; best {best['mean']:.4f} at step {best['step']}); "
            f"loss fall/se {falls or '(first)'}; "
            f"{state.evaluations_since_gain}/{self.job.plateau.patience} without a gain")
    if self.bar is not None:
      print(flush=True)
    print(line, flush=True)


def _write_summaries(job, values, step, elapsed, trained_steps, examples_per_step):
  if job.summary_writer is None:
    return
  global_step = job.global_step_offset + step
  with job.summary_writer.as_default(step=global_step):
    for k, v in values.items():
      tf.summary.scalar(k, v)
    tf.summary.scalar("learning_rate", job.stage.learning_rate)
    tf.summary.scalar("stage", job.index)
    if elapsed > 0:
      tf.summary.scalar("examples_per_s", trained_steps * examples_per_step / elapsed)
  job.summary_writer.flush()
