"""The tf.distribute strategy of a run, and the CPU split used to test distribution.

Logical CPU devices can only be configured before TensorFlow runs its first op, so
`configure_cpu_replicas` must be the first thing a process does with TensorFlow.
"""

import json
import os

import tensorflow as tf


def configure_cpu_replicas(count):
  """Splits the first CPU into `count` logical devices (0 or 1: leave it whole)."""
  if count <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  current = tf.config.get_logical_device_configuration(cpus[0])
  if current and len(current) == count:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
  except RuntimeError as e:
    raise RuntimeError(
        f"--cpu_replicas={count}: TensorFlow is already initialised in this process; the "
        "CPU must be split before any TensorFlow op runs") from e


def _local_devices():
  """GPUs if there are any, else every logical CPU."""
  gpus = tf.config.list_logical_devices("GPU")
  if gpus:
    return [d.name for d in gpus]
  return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name, cpu_replicas=0):
  """mirrored: MirroredStrategy over all local devices; default: the default strategy
  (one device); multiworker: MultiWorkerMirroredStrategy configured from TF_CONFIG."""
  configure_cpu_replicas(cpu_replicas)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(_local_devices())
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "multiworker":
    if not os.environ.get("TF_CONFIG"):
      raise ValueError("--strategy=multiworker needs the TF_CONFIG environment variable "
                       "(cluster and task of this worker)")
    try:
      json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as e:
      raise ValueError(f"--strategy=multiworker: TF_CONFIG is not valid JSON: {e}") from e
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"--strategy: unknown strategy {name!r}")


def is_chief():
  """True on the worker that writes run files (always true without TF_CONFIG)."""
  config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
  task = config.get("task", {})
  if not task:
    return True
  return task.get("type") == "chief" or (
      task.get("type") == "worker" and int(task.get("index", 0)) == 0
      and "chief" not in config.get("cluster", {}))


def worker_path(path):
  """`path` on the chief; beside it, per worker, on the other workers of a multi-worker run
  (every worker saves its checkpoints, only the chief's are the run's)."""
  if is_chief():
    return path
  task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
  return f"{path}.worker{task.get('type', 'worker')}{task.get('index', 0)}"


def is_multiworker(strategy):
  return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
