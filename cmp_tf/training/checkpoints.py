"""Per-stage checkpoints that make kill -9 + rerun land on the same weights.

A stage checkpoint holds every model variable (weights and the dropout seed
generators' states), every optimizer variable (momentum, iteration count) and the
stage's step, and the stage's convergence-rule state (a JSON string), so a resumed stage
decides when to stop exactly as an uninterrupted one. Variables are listed explicitly: tf.train.Checkpoint does not follow
the layers of a Keras 3 functional model on its own.
"""

import os

import tensorflow as tf

from cmp_tf import fileio


def save_weights_atomic(model, path):
  """model.save_weights to `path` (must end in .weights.h5), atomically."""
  path = os.fspath(path)
  if not path.endswith(".weights.h5"):
    raise ValueError(f"{path}: a Keras weights file must end in .weights.h5")
  with fileio.atomic_path(path) as tmp:
    model.save_weights(tmp, overwrite=True)


class StageCheckpoint:
  """tf.train.CheckpointManager over a model, its optimizer and the step of one stage."""

  def __init__(self, directory, model, optimizer, *, max_to_keep=2, extra_variables=()):
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage_step")
    self._state = tf.Variable("", dtype=tf.string, trainable=False, name="stage_state")
    # What trains beside the model (an alignment term's discriminator), only when present:
    # the checkpoints of every other stage keep their layout.
    extra = {"extra_variables": list(extra_variables)} if extra_variables else {}
    self._checkpoint = tf.train.Checkpoint(
        model_variables=list(model.variables),
        optimizer_variables=list(optimizer.variables),
        step=self.step, state=self._state, **extra)
    self._manager = tf.train.CheckpointManager(
        self._checkpoint, os.fspath(directory), max_to_keep=max_to_keep)

  @property
  def latest(self):
    return self._manager.latest_checkpoint

  def restore_latest(self):
    """Restores the newest checkpoint if there is one; returns the step it reached."""
    latest = self._manager.latest_checkpoint
    if latest is None:
      return 0
    self._checkpoint.restore(latest).assert_consumed()
    return int(self.step.numpy())

  @property
  def state(self):
    """The state string of the restored (or last saved) checkpoint; "" when none."""
    return self._state.numpy().decode("utf-8")

  def save(self, step, state=""):
    self.step.assign(step)
    self._state.assign(state)
    return self._manager.save(checkpoint_number=step)
