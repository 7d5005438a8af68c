"""The CPU a run computes on, and the kernels TensorFlow runs there.

TensorFlow's x86 wheels turn oneDNN's kernels on by default only on CPUs with AVX-512 VNNI,
BF16 or AMX; elsewhere (an AVX2 EPYC, say) convolutions and their gradients run in Eigen's
kernels at about 0.6x oneDNN's speed (benchmarks/BENCHMARKS.md, 2c). `prefer_onednn()` runs
when cmp_tf is imported, so every command, test and child process gets the same kernels on
every CPU kind; it has to run before TensorFlow is imported, and an explicit
TF_ENABLE_ONEDNN_OPTS (0 for Eigen) wins. Kernels, thread counts and CPU set a run's float
arithmetic, so a run records them (`describe`).
"""

import os
import platform
import sys

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
_VECTOR_FLAGS = {"avx2": "AVX2", "fma": "FMA", "avx512f": "AVX-512F",
                 "avx512_bf16": "AVX-512 BF16", "avx512_vnni": "AVX-512 VNNI",
                 "amx_tile": "AMX"}


def prefer_onednn():
  """Asks for oneDNN's kernels unless TF_ENABLE_ONEDNN_OPTS is set or TensorFlow is
  already imported (then it is too late to change); returns whether it asked."""
  if ONEDNN_ENV in os.environ or "tensorflow" in sys.modules:
    return False
  os.environ[ONEDNN_ENV] = "1"
  return True


def onednn_enabled():
  """Whether this process's TensorFlow runs oneDNN's kernels (imports TensorFlow)."""
  from tensorflow.python.util import _pywrap_util_port
  return bool(_pywrap_util_port.IsMklEnabled())


def _cpuinfo_field(name):
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith(name):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return None


def model():
  """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ...")."""
  return _cpuinfo_field("model name") or platform.processor() or "unknown"


def vector_flags():
  """The vector extensions the CPU has that set its matmul rate (AVX2, AVX-512, AMX)."""
  have = set((_cpuinfo_field("flags") or "").split())
  return [name for flag, name in _VECTOR_FLAGS.items() if flag in have]


def arithmetic_changes(first, now):
  """The keys of describe() in which `now` differs from `first`, the allocator (speed only)
  left out: what makes a run's float arithmetic differ from another's."""
  return sorted(k for k in now if k != "allocator" and first.get(k) != now[k])


def describe():
  """What sets this process's arithmetic and speed: CPU, kernels, threads, allocator (for
  run.json and benchmark results; imports TensorFlow)."""
  import tensorflow as tf

  from cmp_tf import memory
  threading = tf.config.threading
  return {"cpu": model(), "cpu_flags": vector_flags(), "cpu_count": os.cpu_count(),
          "onednn": onednn_enabled(),
          "intra_op_threads": threading.get_intra_op_parallelism_threads(),
          "inter_op_threads": threading.get_inter_op_parallelism_threads(),
          "allocator": memory.keep_freed_memory(), "tensorflow": tf.__version__}
