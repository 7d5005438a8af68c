"""What every benchmark shares: the machine's state, interleaved timing, results files.

The machine is shared and noisy, so timings are taken in interleaved rounds (each
configuration once per round) and reported as the best and the median round, with
the process CPU time beside the wall time; ratios are only ever taken between
figures of one run. Every results file carries the load average when it was measured.
"""

import datetime
import os
import platform
import statistics
import sys
import time

from cmp_tf import fileio, paths

RESULTS_DIR = paths.REPO_ROOT / "benchmarks" / "results"


def default_out(name):
  """benchmarks/results/<name>.json in the checkout."""
  return str(RESULTS_DIR / f"{name}.json")


def load_average():
  """The 1, 5 and 15 minute load averages, rounded."""
  return [round(v, 2) for v in os.getloadavg()]


def process_usage(who="self"):
  """CPU seconds in user and kernel mode, the kernel's share, and minor page faults of this
  process ("self") or of its finished children ("children")."""
  import resource
  usage = resource.getrusage(resource.RUSAGE_SELF if who == "self" else
                             resource.RUSAGE_CHILDREN)
  total = usage.ru_utime + usage.ru_stime
  return {"user_s": round(usage.ru_utime, 2), "system_s": round(usage.ru_stime, 2),
          "system_share": round(usage.ru_stime / total, 4) if total else None,
          "minor_faults": int(usage.ru_minflt)}


def quiet_tensorflow():
  """Only errors from TensorFlow's Python logger (e.g. no retracing notes per built step)."""
  import tensorflow as tf
  tf.get_logger().setLevel("ERROR")


def machine():
  """Where and when a figure was measured: CPUs, load, versions."""
  from cmp_tf import cpu, memory
  info = {"cpu": cpu.model(), "cpu_flags": cpu.vector_flags(), "cpu_count": os.cpu_count(),
          "allocator": memory.keep_freed_memory(), "load_average": load_average(),
          "python": platform.python_version(), "time": datetime.datetime.now().isoformat(
              timespec="seconds")}
  if "tensorflow" in sys.modules:
    tf = sys.modules["tensorflow"]
    info["tensorflow"] = tf.__version__
    info["devices"] = [d.name for d in tf.config.list_logical_devices()]
    info["onednn"] = cpu.onednn_enabled()
  return info


def write_results(path, name, results, argv=None):
  """Writes {"benchmark", "machine", "argv", "results"} atomically; returns the path."""
  payload = {"benchmark": name, "machine": machine(), "argv": list(argv or sys.argv),
             "results": _plain(results)}
  fileio.write_json_atomic(path, payload)
  print(f"results written to {path}", flush=True)
  return path


def _plain(value):
  """`value` with NumPy scalars and tuples made JSON types."""
  if isinstance(value, dict):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  if hasattr(value, "item") and callable(value.item):  # NumPy scalar
    return value.item()
  return value


class Timing:
  """Per-round seconds of one configuration; `per` divides them (e.g. steps per round)."""

  def __init__(self, per=1):
    self.per = per
    self.wall, self.cpu = [], []

  def add(self, wall, cpu):
    self.wall.append(wall / self.per)
    self.cpu.append(cpu / self.per)

  def summary(self, scale=1.0):
    """{"best", "median", "cpu_best", "cpu_median", "rounds"} times `scale` (e.g. 1e3 for ms)."""
    return {"best": min(self.wall) * scale, "median": statistics.median(self.wall) * scale,
            "cpu_best": min(self.cpu) * scale, "cpu_median": statistics.median(self.cpu) * scale,
            "rounds": len(self.wall)}


def interleaved(functions, rounds, per=1):
  """Runs every function of {name: fn} once per round, in turn; returns {name: Timing}.

  `per` (an int, or {name: int}) divides each function's times, e.g. its steps per call.

  Interleaving spreads a neighbour's burst of load over every configuration instead
  of one, so ratios of the best (or median) rounds stay meaningful on a shared machine.
  """
  timings = {name: Timing(per[name] if isinstance(per, dict) else per) for name in functions}
  for _ in range(rounds):
    for name, fn in functions.items():
      timings[name].add(*time_once(fn))
  return timings


def time_once(fn):
  """(wall seconds, process CPU seconds) of one call of `fn()`."""
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - wall, time.process_time() - cpu


class MatmulReference:
  """Chained float32 [size, size] matmuls in TensorFlow on `device`: the reference rate.

  A large matmul is about the best rate any op reaches on a device, so a model's
  achieved FLOP/s divided by this rate, both measured in one run, is its utilisation.
  Each product feeds the next, so nothing can be skipped or merged. On a GPU
  TensorFlow's default TF32 math applies to this matmul as to the model's.
  """

  def __init__(self, size=2048, chain=4, device=None):
    import tensorflow as tf

    self.device = device or ("/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0")
    self.size, self.chain = int(size), int(chain)
    self.flops = 2.0 * self.size ** 3 * self.chain
    with tf.device(self.device):
      self._a = tf.random.normal((self.size, self.size), seed=1) / (self.size ** 0.5)
      self._x = tf.random.normal((self.size, self.size), seed=2) / (self.size ** 0.5)

    @tf.function
    def chained(a, x):
      for _ in range(self.chain):
        x = tf.matmul(a, x)
      return tf.reduce_sum(x)

    self._fn = chained
    self.run()  # trace and warm up

  def run(self):
    self._fn(self._a, self._x).numpy()

  def describe(self, seconds):
    """JSON-ready description with the rate achieved in `seconds` per run."""
    return {"device": self.device, "size": self.size, "chain": self.chain,
            "flops_per_s": self.flops / seconds}


class CoreMatmulReference:
  """A float32 [size, size] NumPy matmul on one BLAS thread: one core's matmul rate.

  On a CPU shared with other work a multi-threaded matmul waits for its slowest
  thread, so the machine's rate is taken as the larger of TensorFlow's all-thread
  rate and this per-core rate times the cores this process may use.
  """

  def __init__(self, size=2048):
    import numpy as np
    from threadpoolctl import ThreadpoolController

    self.size = int(size)
    self.flops = 2.0 * self.size ** 3
    rng = np.random.default_rng(0)
    self._a = rng.random((self.size, self.size), dtype=np.float32)
    self._b = rng.random((self.size, self.size), dtype=np.float32)
    # One controller: threadpool_limits() scans the loaded libraries on every call (~4 ms
    # with TensorFlow loaded), its limit() does not.
    self._controller = ThreadpoolController()
    self.run()

  def run(self):
    with self._controller.limit(limits=1, user_api="blas"):
      self._a @ self._b


def usable_cores():
  """CPUs this process may run on."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def fmt_rate(flops_per_s):
  """FLOP/s as a short string (e.g. '84.1 GFLOP/s')."""
  for unit, scale in (("TFLOP/s", 1e12), ("GFLOP/s", 1e9), ("MFLOP/s", 1e6)):
    if flops_per_s >= scale:
      return f"{flops_per_s / scale:.1f} {unit}"
  return f"{flops_per_s:.0f} FLOP/s"
