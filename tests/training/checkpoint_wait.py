"""Waiting for a running training's checkpoint without racing it.

A checkpoint is the one a rerun resumes from only once TensorFlow has rewritten the
directory's `checkpoint` state file (atomically, after the checkpoint's own files), so
tests wait on that file's content, never on a checkpoint file appearing or on a clock.
"""

import time

import tensorflow as tf


def latest_checkpoint_step(directory):
  """The step of the checkpoint a rerun would resume from, or 0 when there is none."""
  latest = tf.train.latest_checkpoint(str(directory))
  return int(latest.rsplit("-", 1)[1]) if latest else 0


def wait_for_latest_checkpoint(directory, step, process):
  """Blocks until the latest checkpoint in `directory` has reached `step`; returns its
  step. Fails when `process` ends first (it would never get there)."""
  while True:
    latest = latest_checkpoint_step(directory) if directory.exists() else 0
    if latest >= step:
      return latest
    assert process.poll() is None, f"the run ended before its checkpoint at step {step}"
    time.sleep(0.02)
