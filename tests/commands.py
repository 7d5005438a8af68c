"""Helpers of tests that run a command or read a data flagfile as the commands do."""

import os
import subprocess
import sys

from cmp_tf import cli
from cmp_tf.data.build_config import BuildConfig


def run_command(module, *args, timeout=600):
  """`python -m <module> <args>` in a subprocess: its CompletedProcess (text output)."""
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True,
                        text=True, timeout=timeout,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def flagfile_config(flagfile, **overrides):
  """The validated BuildConfig of a configs/data_*.flags file, with field overrides."""
  return cli.config_from_flagfile(BuildConfig, flagfile, **overrides).validated()
