"""Stages another run already trained, taken instead of trained again.

Methods share stages: A: Tune's frozen stage is the first stage of A: Tune (Free), C, the
alignment methods and ours, so a reproduction, a sweep or a grid would train it again for
each of them. When a new run's first k stages would be trained exactly as a finished run's
were (the same settings apart from those that shape only later stages, which the recipes'
stage descriptions compare instead; the same dataset; the same kernels, threads and CPU),
the run takes that run's stage weights and results and trains on from stage k, as a run
resumed after its stage k-1 does: its weights are those of the run trained whole (a resumed
run's are; `tests/training`). run.json marks such a stage `reused_from` (the donor run) and
keeps the donor's wall time for it; the stage's TensorBoard curves stay in the donor's logs.
"""

import os
import shutil

from cmp_tf import cpu, fileio
from cmp_tf.finished_run import REUSED_FROM, RUN_JSON
from cmp_tf.training import config as config_lib

# Settings that reach the training only through the recipe's stages (compared as stages).
STAGE_SETTINGS = ("method", "lambda_pool5", "lambda_fc6", "lambda_fc7", "lambda_coral",
                  "lambda_mmd", "lambda_dann", "lambda_cdann", "lambda_supcon",
                  "supcon_temperature", "lambda_proxy", "proxy_temperature", "alignment_layer")


def stage_weights_name(index):
  return f"stage_{index}.weights.h5"


def candidate_runs(donors):
  """Run directories named by `donors`: each entry a run directory (with run.json) or a
  directory of them."""
  found = []
  for entry in donors:
    entry = os.path.abspath(os.path.expanduser(entry))
    if os.path.isfile(os.path.join(entry, RUN_JSON)):
      found.append(entry)
    elif os.path.isdir(entry):
      found += [os.path.join(entry, name) for name in sorted(os.listdir(entry))
                if os.path.isfile(os.path.join(entry, name, RUN_JSON))]
  return list(dict.fromkeys(found))


def _same_runtime(donor, runtime):
  first = donor.get("runtime")
  if not first or not runtime or donor.get("resumed_with_other_runtime"):
    return False
  return not cpu.arithmetic_changes(first, runtime)


def shared_stages(donor, *, config, recipe, fingerprint, runtime, ignored=()):
  """How many leading stages of the run (`config`, `recipe`) the donor's run.json `donor`
  trained exactly as this run would: 0 unless dataset, kernels and every setting but
  STAGE_SETTINGS and `ignored` (where files are, how often to log) agree."""
  if donor.get("manifest_fingerprint") != fingerprint or not _same_runtime(donor, runtime):
    return 0
  skip = set(STAGE_SETTINGS) | set(ignored)
  ours = {k: v for k, v in config.to_dict().items() if k not in skip}
  theirs = {k: v for k, v in donor.get("config", {}).items() if k not in skip}
  if config_lib.settings_diff(theirs, ours):
    return 0
  wanted = recipe.to_dict()["stages"]
  theirs = donor.get("recipe", {}).get("stages", [])
  results = donor.get("stages", [])
  shared = 0
  for index, stage in enumerate(wanted):
    if (index >= len(theirs) or index >= len(results) or theirs[index] != stage
        or results[index].get("status") != "complete"):
      break
    shared = index + 1
  return shared


def find_donor(donors, run_dir, *, config, recipe, fingerprint, runtime, ignored=()):
  """(donor directory, stages shared) of the candidate sharing the most stages whose weights
  are all there, or (None, 0)."""
  best, best_shared = None, 0
  run_dir = os.path.abspath(run_dir)
  for candidate in candidate_runs(donors):
    if candidate == run_dir:
      continue
    state = fileio.read_json(os.path.join(candidate, RUN_JSON)) or {}
    shared = shared_stages(state, config=config, recipe=recipe, fingerprint=fingerprint,
                           runtime=runtime, ignored=ignored)
    while shared and not all(os.path.isfile(os.path.join(candidate, stage_weights_name(i)))
                             for i in range(shared)):
      shared -= 1
    if shared > best_shared:
      best, best_shared = candidate, shared
  return best, best_shared


def adopt(state, run_dir, donor_dir, shared):
  """Copies the donor's first `shared` stage weights into `run_dir` and their results into
  `state` (run.json, written here); returns the adopted results."""
  donor = fileio.read_json(os.path.join(donor_dir, RUN_JSON))
  adopted = []
  for index in range(shared):
    name = stage_weights_name(index)
    with fileio.atomic_path(os.path.join(run_dir, name)) as tmp:
      shutil.copyfile(os.path.join(donor_dir, name), tmp)
    result = dict(donor["stages"][index])
    result[REUSED_FROM] = result.get(REUSED_FROM) or donor_dir
    adopted.append(result)
  state["stages"] = adopted
  fileio.write_json_atomic(os.path.join(run_dir, RUN_JSON), state)
  return adopted
