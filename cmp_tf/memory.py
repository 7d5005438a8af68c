"""Keep TensorFlow's large step buffers in the process instead of returning them to the
kernel after every step.

glibc serves allocations above its mmap threshold (128 KiB, raised as it sees larger frees)
with fresh mappings, and trims the heap's top back to the kernel on free: every training
step then faults its buffers in again (measured on a 2-core EPYC: 37 % of the process's CPU
time in the kernel, 410 million minor faults for configs/c.flags). Raising the mmap
threshold to its maximum, the trim threshold out of reach and padding the heap keeps the
memory mapped. Only how memory is obtained changes: the trained weights do not.
CMP_TF_MALLOC=system leaves the C library's defaults (e.g. under an LD_PRELOADed allocator).
"""

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (malloc.h) and values.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {"mmap_threshold": 32 << 20,  # glibc's maximum on 64-bit machines
            "trim_threshold": (1 << 31) - 1,  # the largest int: never trim
            "top_pad": 256 << 20}
_applied = None


def keep_freed_memory():
  """Applies SETTINGS through glibc's mallopt once per process; returns what was done (a
  short string, also when nothing was: another C library, or CMP_TF_MALLOC=system)."""
  global _applied
  if _applied is not None:
    return _applied
  if os.environ.get("CMP_TF_MALLOC", "").strip().lower() == "system":
    _applied = "system allocator defaults (CMP_TF_MALLOC=system)"
  elif not sys.platform.startswith("linux"):
    _applied = f"system allocator defaults ({sys.platform})"
  else:
    _applied = _glibc_mallopt()
  return _applied


def _glibc_mallopt():
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return "system allocator defaults (no glibc mallopt)"
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  done = all(mallopt(param, value) == 1 for param, value in (
      (_M_MMAP_THRESHOLD, SETTINGS["mmap_threshold"]),
      (_M_TRIM_THRESHOLD, SETTINGS["trim_threshold"]),
      (_M_TOP_PAD, SETTINGS["top_pad"])))
  if not done:
    return "system allocator defaults (mallopt refused the settings)"
  return ("glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB, top pad 256 MiB")
