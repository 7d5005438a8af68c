"""Run records: what a reproduction or sweep keeps of a finished run, without its weights, so
that the work continues on another machine instead of training the run again.

A records directory holds `<run name>.json` per run: the run's configuration without its
paths, its run.json, and (reproduction) its evaluation results, alignment diagnostic and
analysis row; plus `source_<key>.json`, the source network's evaluation. Commit the
directory beside a report; a later `--records=DIR` on any machine takes a run from its
record when the run directory has no finished run and the record's configuration equals the
one the planned command gives (method, flagfiles, seed, every setting). The record says which
machine trained the run (run.json's runtime); the report names it.
"""

import contextlib
import dataclasses
import os

from absl import flags

from cmp_tf import cli, fileio, paths

RECORD_FORMAT = 1
# Where a run was written and what its command did after training: not part of the experiment.
# The dataset is compared by its manifest fingerprint instead of its path.
PATH_FIELDS = ("run_dir", "cache_dir", "data_dir", "evaluate", "export", "stage_donors")
SOURCE_PREFIX = "source_"


def comparable_config(config):
  """A TrainConfig dict without the fields that only say where things are."""
  return {k: v for k, v in config.items() if k not in PATH_FIELDS}


def planned_config(train_args):
  """The comparable TrainConfig that `python -m cmp_tf.train <train_args>` would run.

  Parsed from the checkout, as the training process is (a flagfile names configs/base.flags
  relative to it)."""
  from cmp_tf.training import config as config_lib
  flag_values = cli.define_flags(config_lib.TrainConfig, flags.FlagValues())
  with contextlib.chdir(paths.REPO_ROOT):
    flag_values(["cmp_tf", *train_args])
  config = cli.config_from_flags(config_lib.TrainConfig, flag_values)
  return comparable_config(dataclasses.asdict(config))


def same_config(recorded, wanted):
  """Whether a recorded configuration is the wanted one (`TrainConfig` settings added since
  the record was written match at their defaults)."""
  from cmp_tf.training import config as config_lib
  return not config_lib.settings_diff(recorded, wanted)


def record_path(records_dir, name):
  return os.path.join(records_dir, f"{name}.json")


def write_run_record(records_dir, name, state, **parts):
  """Writes records_dir/<name>.json from a finished (or diverged) run's run.json `state`
  and the reproduction's `parts` (results, diagnostic, analysis)."""
  record = {"format_version": RECORD_FORMAT, "run": name,
            "config": comparable_config(state.get("config", {})), "run_json": state, **parts}
  os.makedirs(records_dir, exist_ok=True)
  fileio.write_json_atomic(record_path(records_dir, name), record)
  return record


def find_run_record(records_dir, name, train_args):
  """The record of a run trained as `train_args` would train it: `name`'s, else any run's
  of the same configuration (a sweep's run at a method's chosen rate is its reproduction
  run); None when there is none.

  A record of another configuration (a flagfile changed since) is not used: the run is
  trained again and its record replaced."""
  if not records_dir or not os.path.isdir(records_dir):
    return None
  wanted = planned_config(train_args)
  first = record_path(records_dir, name)
  others = sorted(os.path.join(records_dir, f) for f in os.listdir(records_dir)
                  if f.endswith(".json") and not f.startswith(SOURCE_PREFIX))
  for path in [first] + [p for p in others if p != first]:
    if not os.path.isfile(path):
      continue
    record = fileio.read_json(path)
    if record.get("format_version") == RECORD_FORMAT and same_config(
        record.get("config", {}), wanted):
      return record
  return None


def trained_on(record):
  """"trained on <CPU>" from the record's run.json runtime, for the report."""
  runtime = record.get("run_json", {}).get("runtime") or {}
  return f"record, trained on {runtime.get('cpu', 'an unnamed machine')}"


def write_source_record(records_dir, source_dir, results, info):
  """Records the source network's evaluation (its directory's name is the key of its
  settings and dataset, `cmp_tf.training.source`)."""
  name = SOURCE_PREFIX + os.path.basename(os.path.normpath(source_dir))
  os.makedirs(records_dir, exist_ok=True)
  fileio.write_json_atomic(record_path(records_dir, name),
                           {"format_version": RECORD_FORMAT, "source": os.path.basename(
                               os.path.normpath(source_dir)), "results": results,
                            "source_json": info})


def find_source_record(records_dir, source_dir):
  """The recorded evaluation of the source network `source_dir`, or None."""
  if not records_dir:
    return None
  path = record_path(records_dir,
                     SOURCE_PREFIX + os.path.basename(os.path.normpath(source_dir)))
  if not os.path.isfile(path):
    return None
  record = fileio.read_json(path)
  return record if record.get("format_version") == RECORD_FORMAT else None
