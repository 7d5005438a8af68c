"""Trains one method of the paper end to end.

  python -m cmp_tf.train --flagfile=configs/c.flags [--run_dir=DIR] [--data_dir=DIR]

Builds the default dataset if it is missing, trains (or loads) and caches the
source network and its activation priors, runs every stage of the method's
recipe with checkpoints (run the same command again to resume after an
interruption), then evaluates and exports the run (--noevaluate, --noexport skip them). Every flag is a field of
cmp_tf.training.config.TrainConfig; `--helpfull` lists them.
"""

import os
import sys

from absl import app, flags, logging

from cmp_tf import cli
from cmp_tf.training import config as config_lib

FLAGS = flags.FLAGS


def define_flags(flag_values=FLAGS):
  """Defines one flag per TrainConfig field on `flag_values`; returns it."""
  return cli.define_flags(config_lib.TrainConfig, flag_values)


define_flags()


def config_from_flags(flag_values=FLAGS):
  """TrainConfig of the parsed flags (not yet validated)."""
  return cli.config_from_flags(config_lib.TrainConfig, flag_values)


def data_build_config(config):
  """The BuildConfig of --data_config when the run uses the default dataset, else None."""
  if not config.data_is_default:
    return None
  from cmp_tf.data.build_config import BuildConfig
  path = config.resolved_data_config()
  try:
    return cli.config_from_flagfile(BuildConfig, path).validated()
  except ValueError as e:
    message = str(e).removeprefix(f"{path}: ")
    raise config_lib.ConfigError("data_config", f"{path}: {message}") from None


def effective_flags(config):
  """The flags of `config` as a flagfile: paths resolved, so rerunning it resumes the run."""
  lines = ["# Effective flags of this run. Resume or repeat it with",
           "#   python -m cmp_tf.train --flagfile=<this file>"]
  values = config.to_dict()
  values["run_dir"] = str(config.resolved_run_dir())
  if config.data_dir:
    values["data_dir"] = str(config.resolved_data_dir())
  for name, value in values.items():
    if isinstance(value, bool):
      lines.append(f"--{name}" if value else f"--no{name}")
    elif isinstance(value, (list, tuple)):
      lines.append(f"--{name}={','.join(str(v) for v in value)}")
    else:
      lines.append(f"--{name}={value}")
  return "\n".join(lines) + "\n"


def run_post_hooks(run_dir, *, evaluate=True, export=True):
  """Evaluation and export of the finished run; on the chief only in a multi-worker run
  (the run directory is the chief's; other workers would race to write the same files)."""
  from cmp_tf.eval import evaluation
  from cmp_tf.serving import export as export_lib
  from cmp_tf.training import strategy
  done = {}
  if not strategy.is_chief():
    return done
  for enabled, function in ((evaluate, evaluation.evaluate_run),
                            (export, export_lib.export_run)):
    if not enabled:
      continue
    name = f"{function.__module__}.{function.__name__}"
    try:
      done[name] = function(run_dir)
    except Exception:
      print(f"cmp_tf.train: the run in {run_dir} is trained and saved, but {name} failed:",
            file=sys.stderr, flush=True)
      raise
  return done


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # TensorFlow's INFO lines hide the progress
  config = config_from_flags().validate()  # a ConfigError names the flag (cmp_tf.cli)
  data_build = data_build_config(config)  # a bad --data_config fails before any work
  from cmp_tf.training import runner, trainer  # TensorFlow is imported only now

  runner.check_run_paths(config)
  try:
    with runner.run_lock(config.resolved_run_dir()):  # evaluation and export included
      run_dir = runner.run_training(config, data_build=data_build,
                                     flags_text=effective_flags(config))
      run_post_hooks(run_dir, evaluate=config.evaluate, export=config.export)
  except trainer.NonFiniteLossError as e:
    print(f"cmp_tf.train: training diverged: {e}", file=sys.stderr)
    return 3
  print(f"run finished: {run_dir}", flush=True)
  if config.evaluate:
    from cmp_tf.eval import evaluation, page
    print(f"its page: {os.path.join(run_dir, evaluation.EVAL_DIR, page.PAGE_NAME)}", flush=True)
  return 0


if __name__ == "__main__":
  cli.run("cmp_tf.train", main)
