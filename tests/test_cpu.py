"""oneDNN's kernels on every CPU kind unless told otherwise; what a run records of its CPU."""

import os
import platform
import subprocess
import sys

import pytest

_SHOW = ("import {first}; import tensorflow; from cmp_tf import cpu; "
         "print(cpu.onednn_enabled(), cpu.os.environ.get(cpu.ONEDNN_ENV))")
_X86 = platform.machine().lower() in ("x86_64", "amd64")


def _fresh(first, **env):
  """(oneDNN on?, TF_ENABLE_ONEDNN_OPTS) in a new process that imports `first` first."""
  environ = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  result = subprocess.run([sys.executable, "-c", _SHOW.format(first=first)],
                          capture_output=True, text=True, env={**environ, **env}, timeout=300)
  assert result.returncode == 0, result.stderr
  return result.stdout.split()[-2:]


@pytest.mark.skipif(not _X86, reason="TensorFlow's oneDNN kernels are its x86 ones")
def test_importing_cmp_tf_turns_onednn_on_and_an_explicit_setting_wins():
  assert _fresh("cmp_tf") == ["True", "1"]
  assert _fresh("cmp_tf", TF_ENABLE_ONEDNN_OPTS="0") == ["False", "0"]


def test_after_tensorflow_it_changes_nothing():
  import tensorflow  # noqa: F401

  from cmp_tf import cpu
  before = dict(os.environ)
  assert cpu.prefer_onednn() is False
  assert dict(os.environ) == before


def test_describe_names_what_sets_the_arithmetic():
  from cmp_tf import cpu
  info = cpu.describe()
  assert {"cpu", "cpu_flags", "cpu_count", "onednn", "intra_op_threads", "inter_op_threads",
          "tensorflow"} <= set(info)
  assert info["cpu"] and isinstance(info["onednn"], bool)
