"""Freed memory kept in the process: glibc's mallopt set once, or left alone on request."""

import os
import subprocess
import sys

import pytest

_SHOW = "from cmp_tf import memory; print(memory.keep_freed_memory())"


def _fresh(env):
  """What keep_freed_memory says in a new process with `env` added."""
  result = subprocess.run([sys.executable, "-c", _SHOW], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120)
  assert result.returncode == 0, result.stderr
  return result.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_keeps_freed_memory_unless_told_not_to():
  assert _fresh({"CMP_TF_MALLOC": ""}).startswith("glibc mallopt: mmap threshold 32 MiB")
  assert _fresh({"CMP_TF_MALLOC": "system"}).startswith("system allocator defaults")


def test_it_is_applied_once_per_process():
  from cmp_tf import memory
  first = memory.keep_freed_memory()
  assert memory.keep_freed_memory() is first
