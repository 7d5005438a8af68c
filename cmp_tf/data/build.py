"""Builds a dataset directory: sharded TFRecords per modality and split, then manifest.json.

  python -m cmp_tf.build_data --flagfile=configs/data_default.flags --data_dir=DIR [--seed=S]

`build_dataset` checks everything first (`BuildConfig.validated`, then the plan: paths,
category names, every CMPlaces label file or folder and the files it lists); only then are
records rendered or decoded, by the Beam pipeline of `cmp_tf.data.build_pipeline` (local
worker processes, or the runner --beam_options names). The shards are written into a
staging directory inside DIR and moved
into place when every modality succeeded; manifest.json is written last, so a directory
without one is an incomplete build, and a failed build leaves nothing behind. The same
seed gives byte-identical TFRecords, whatever the runner and the number of workers.
"""

import dataclasses
import os
import shutil
import time

from cmp_tf import fileio, pipelines
from cmp_tf import modalities as mod_lib
from cmp_tf.data import build_pipeline
from cmp_tf.data import manifest as manifest_lib
from cmp_tf.data import plan as plan_lib
from cmp_tf.data.build_config import BuildConfig
from cmp_tf.errors import DataError

_STAGING_PREFIX = ".staging-"
# How a dataset is written, not what it holds: a cached dataset built with other values
# of these is still the same dataset.
_HOW_BUILT = ("overwrite", "workers", "beam_options")


def ensure_dataset(data_dir, config, *, origin, progress=True):
  """The manifest of the cached dataset `data_dir`, (re)built from `config` (a BuildConfig
  read from `origin`, named in messages) when it is missing or was built with other
  settings (e.g. by a version without a dev split)."""
  config = config.validated()
  if os.path.isfile(manifest_lib.manifest_path(data_dir)):
    manifest = manifest_lib.read_manifest(data_dir)
    if _same_build(manifest.get("build", {}).get("config"), _config_json(config)):
      return manifest
    print(f"The dataset in {data_dir} was built with other settings than {origin}; "
          "rebuilding it.", flush=True)
    config = dataclasses.replace(config, overwrite=True)
  else:
    print(f"No dataset in {data_dir}; building it from {origin}.", flush=True)
  return build_dataset(data_dir, config, progress=progress)


def build_dataset(data_dir, config, *, progress=True, argv=None):
  """Builds the dataset `config` (a BuildConfig) into `data_dir`.

  Returns the manifest. Raises ValueError (naming the flag) or DataError (naming
  the file and line) before any expensive work when something is wrong.
  """
  start = time.time()
  config = config.validated()
  data_dir = _check_data_dir(data_dir, config.overwrite)
  plan = plan_lib.make_plan(config)
  os.makedirs(data_dir, exist_ok=True)
  say = print if progress else (lambda *a, **k: None)
  say(f"{len(plan.categories)} categories, {len(plan.heldout)} held out for zero-shot "
      f"({plan.heldout_rule}).")

  staging = os.path.join(data_dir, f"{_STAGING_PREFIX}{os.getpid()}")
  _remove_dead_staging(data_dir)
  runner = pipelines.describe_runner(config.workers, config.beam_options)
  try:
    os.makedirs(staging)
    splits, skipped = _write_all(plan, staging, config, runner, say)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  _commit(data_dir, staging, config.modalities)

  encoder_name = plan.encoder.name if plan.encoder is not None else config.sentence_encoder
  wall = time.time() - start
  manifest = {
      "format_version": manifest_lib.FORMAT_VERSION,
      "source": config.source,
      "categories": list(plan.categories),
      "heldout_categories": list(plan.heldout),
      "heldout_rule": plan.heldout_rule,
      "seed": int(config.seed),
      "image_size": int(config.image_size),
      "sentence_encoder": {"name": encoder_name, "dim": int(plan.vector_dim)},
      "vector_dim": int(plan.vector_dim),
      "modalities": splits,
      "dev_split": plan_lib.dev_split_json(config),
      "skipped": skipped,
      "build": {"wall_time_s": round(wall, 2),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "runner": runner,
                "argv": list(argv) if argv is not None else [],
                "config": _config_json(config),
                **_source_json(plan)},
  }
  manifest_lib.write_manifest(data_dir, manifest)
  say(f"Built {data_dir} in {wall:.1f} s (train+dev+val): " + ", ".join(
      f"{m} {s['train']['count']}+{s.get('dev', {}).get('count', 0)}+{s['val']['count']}"
      for m, s in splits.items()))
  if config.report:
    from cmp_tf.data import difficulty  # scikit-learn only when asked for
    result = difficulty.difficulty_report(data_dir, seed=config.seed)
    difficulty.write_report(data_dir, result)
    say(difficulty.format_report(result))
  return manifest



def _config_json(config):
  out = dataclasses.asdict(config)
  out["categories"] = list(config.categories)
  out["modalities"] = list(config.modalities)
  out.pop("overwrite")  # how it was written, not what was built
  if config.source == "synthcmp":
    from cmp_tf.data import synthcmp
    out["generator_version"] = synthcmp.GENERATOR_VERSION  # a newer generator rebuilds caches
  return out


def _same_build(built, wanted):
  """Whether a dataset built with config JSON `built` holds what `wanted` asks for: the
  settings of _HOW_BUILT aside, and settings added since taken at their defaults."""
  if not isinstance(built, dict):
    return False
  defaults = _config_json(BuildConfig())
  keys = (set(built) | set(wanted)) - set(_HOW_BUILT)
  return all(built.get(k, defaults.get(k)) == wanted.get(k, defaults.get(k)) for k in keys)


def _source_json(plan):
  """Where a CMPlaces or folders build read from."""
  config = plan.config
  if config.source == "folders":
    return {"folders": {"root": os.path.abspath(config.folders_root)}}
  if config.source != "cmplaces":
    return {}
  return {"cmplaces": {"root": os.path.abspath(config.cmplaces_root),
          "files_root": os.path.abspath(config.cmplaces_files_root)
                        if config.cmplaces_files_root else None,
          "places205_root": os.path.abspath(config.places205_root)
                            if config.places205_root else None,
          "label_files": {f"{m}/{split}": scan.label_file
                          for (m, split), scan in sorted(plan.scans.items())}}}



def _check_data_dir(data_dir, overwrite):
  if not data_dir:
    raise ValueError("--data_dir: required (the directory to build the dataset in)")
  data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
  if os.path.exists(data_dir) and not os.path.isdir(data_dir):
    raise ValueError(f"--data_dir: {data_dir} exists and is not a directory")
  if os.path.isfile(manifest_lib.manifest_path(data_dir)) and not overwrite:
    raise ValueError(f"--data_dir: {data_dir} already holds a dataset (manifest.json); "
                     "pass --overwrite to replace it")
  return data_dir



# --- Rendering and writing ---------------------------------------------------------------

def _write_all(plan, staging, config, runner, say):
  """Writes every modality and split under `staging` in one pipeline run by `runner`
  (`pipelines.describe_runner`): (manifest splits, skipped entries by split)."""
  source = _source(plan)
  renderer = build_pipeline.Renderer(source)
  splits = []
  for modality in config.modalities:
    for split, items in plan_lib.split_items(plan, modality).items():
      if not items:
        raise DataError(f"no {modality}/{split} examples to write")
      num_shards = build_pipeline.probe_num_shards(renderer, modality, split, items)
      splits.append(build_pipeline.Split(modality, split, tuple(items), num_shards))
  say(f"Rendering {sum(len(s.items) for s in splits)} examples in "
      f"{sum(s.num_shards for s in splits)} shards ({pipelines.runner_text(runner)}).",
      flush=True)
  options = pipelines.pipeline_options(config.workers, config.beam_options)
  build_pipeline.run(splits, source, staging, len(plan.categories), options)
  out, skipped = {}, {}
  for split in splits:
    out.setdefault(split.modality, {})
    written, split_skipped = build_pipeline.merge_summaries(staging, split)
    if written["count"] == 0:
      raise DataError(f"no {split.modality}/{split.split} examples left to write (all "
                      f"skipped: {split_skipped})")
    out[split.modality][split.split] = written
    if config.source != "synthcmp":
      scanned = plan.scans.get((split.modality, split.split), None)
      for reason, n in (scanned.skipped.items() if scanned is not None else ()):
        split_skipped[reason] = split_skipped.get(reason, 0) + n
      skipped[f"{split.modality}/{split.split}"] = split_skipped
  return out, skipped


def _source(plan):
  """What a worker needs of the plan to make records (no grammar, no encoder: each
  worker loads those once)."""
  config = plan.config
  if config.source == "synthcmp":
    return build_pipeline.Source(config, tuple(plan.categories), (), (), plan.vector_dim)
  relabel = tuple((plan.all_categories.index(c), i) for i, c in enumerate(plan.categories))
  label_files = () if config.source == "folders" else tuple(
      ((m, split), scan.label_file) for (m, split), scan in sorted(plan.scans.items()))
  return build_pipeline.Source(config, tuple(plan.all_categories), relabel, label_files,
                               plan.vector_dim)


def _commit(data_dir, staging, modalities):
  """Moves the staged modality directories into `data_dir`, replacing an older build."""
  for name in (manifest_lib.MANIFEST_NAME, "difficulty.json"):
    path = os.path.join(data_dir, name)
    if os.path.exists(path):
      os.remove(path)  # the directory is an incomplete build until the new manifest lands
  for modality in mod_lib.ALL_MODALITIES:
    target = os.path.join(data_dir, modality)
    if modality in modalities:
      fileio.replace_directory(os.path.join(staging, modality), target)
    elif os.path.isdir(target):
      shutil.rmtree(target)
  os.rmdir(staging)


def _remove_dead_staging(data_dir):
  """Removes staging directories of builds that were killed (their process is gone)."""
  for name in os.listdir(data_dir):
    if not name.startswith(_STAGING_PREFIX):
      continue
    try:
      pid = int(name[len(_STAGING_PREFIX):])
      os.kill(pid, 0)
      alive = pid != os.getpid()
    except (ValueError, ProcessLookupError):
      alive = False
    except PermissionError:
      alive = True
    if not alive:
      shutil.rmtree(os.path.join(data_dir, name), ignore_errors=True)
